"""Teacher throughput against the peers on one simulated endpoint.

    python bench/sdg.py [--quick] [--capacity C] [--leaves L]

A simulated OpenAI-compatible server runs in its own process on 127.0.0.1 with a latency model:
time to first token + completion tokens / per-sequence rate, at most C sequences served at once
(a request with n choices holds n), the rest queued FIFO, 429 with Retry-After past a queue limit.
It answers each system's prompts in the format its parser expects and measures, per arm, the
busy slot-seconds (utilisation = busy slots / C over the arm's wall time) and the peak.

The same knowledge documents (Sprout's chunks of them) and the same requested samples (10 per
chunk) go through every arm, generation and a judge step included:
  sprout           Sprout's generate() judging each pair as it parses (as `sprout run` does; the
                   leaf's seed pairs too, work no other arm does) + the judge filter reading those
                   replies, at its default --teacher-concurrency (128)
  sprout@C         the same with the in-flight limit at the endpoint's capacity
  sprout-old       Sprout's first path: 8 threads per leaf, leaves one after the other, judged after
  asyncio@C        a plain asyncio client at C in flight, each pair judged as soon as it parses
  sdg-hub          SDG Hub's doc_direct_qa knowledge flow (LiteLLM) at its default (no limit)
  sdg-hub@C        the same with max_concurrency=C
instructlab-sdg is not measured: it requires torch via docling and would replace the venv's torch.
The last line is JSON with ratio_vs_best_peer (best peer wall / Sprout's best wall at equal
capacity), utilisation and every arm's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAIRS_PER_CHUNK = 10  # sprout: (3 short + 2 long pairs) x 2 samples; sdg-hub: 10 questions per chunk
WORDS = {"question": 12, "answer": 36, "explanation": 20}


# ---------------------------------------------------------------------------------------------
# The simulated endpoint (its own process)
# ---------------------------------------------------------------------------------------------
class Endpoint:
    def __init__(self, capacity: int, queue_limit: int, ttft: float, rate: float, prefill: float):
        self.capacity, self.queue_limit, self.ttft, self.rate, self.prefill = capacity, queue_limit, ttft, rate, prefill
        self.waiting: collections.deque = collections.deque()
        self.reset()

    def reset(self) -> None:
        self.busy = self.peak = 0
        self.area = 0.0
        self.start = self.last = time.monotonic()
        self.requests = self.rejected = self.tokens = 0

    def _account(self) -> None:
        now = time.monotonic()
        self.area += self.busy * (now - self.last)
        self.last = now

    async def hold(self, n: int, tokens_each: int, prompt_tokens: int = 0) -> bool:
        n = min(n, self.capacity)
        if self.waiting or self.busy + n > self.capacity:
            if len(self.waiting) >= self.queue_limit:
                self.rejected += 1
                return False
            fut = asyncio.get_running_loop().create_future()
            self.waiting.append((n, fut))
            await fut  # granted: the slots are already counted
        else:
            self._account()
            self.busy += n
            self.peak = max(self.peak, self.busy)
        try:
            await asyncio.sleep(self.ttft + prompt_tokens / self.prefill + tokens_each / self.rate)
        finally:
            self._account()
            self.busy -= n
            while self.waiting and self.busy + self.waiting[0][0] <= self.capacity:
                m, fut = self.waiting.popleft()
                self.busy += m
                self.peak = max(self.peak, self.busy)
                fut.set_result(None)
        self.requests += 1
        return True

    def stats(self) -> dict:
        self._account()
        wall = max(1e-9, time.monotonic() - self.start)
        return {"wall": wall, "busy_slot_seconds": self.area, "mean_busy": self.area / wall,
                "utilisation": self.area / wall / self.capacity, "peak": self.peak,
                "requests": self.requests, "rejected_429": self.rejected, "completion_tokens": self.tokens}


def _words(source: str, seed: str, n: int) -> str:
    vocab = re.findall(r"[A-Za-z]{3,}", source) or ["word"]
    h = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    return " ".join(vocab[(h + i * 7919) % len(vocab)] for i in range(n))


def answer(messages: list[dict], choice: int) -> str:
    """What a capable teacher would write, in the format the asking system parses."""
    text = messages[-1]["content"]
    seed = hashlib.sha256((text + str(choice)).encode()).hexdigest()
    keep = int(seed[:2], 16) >= 26  # about 10% judged bad, by every system's judge alike
    if "strict reviewer of training data" in text:  # Sprout's judge
        return f"faithful: {int(keep)}\nrelevance: {2 if keep else 0}\nquestion: 1\nanswer: {3 if keep else 1}"
    if "Determine if the provided information is corroborated" in text:  # SDG Hub's faithfulness judge
        return (f"[Start of Explanation]\n{_words(text, seed, WORDS['explanation'])}\n[End of Explanation]\n"
                f"[Start of Answer]\n{'YES' if keep else 'NO'}\n[End of Answer]")
    if "Develop a series of educational questions" in text:  # SDG Hub: a question list
        return "\n\n".join(f"[QUESTION]\n{_words(text, seed + str(i), WORDS['question'])}?\n[END]"
                           for i in range(PAIRS_PER_CHUNK))
    if "Answer the question based on the provided document" in text:  # SDG Hub: one answer
        return _words(text, seed, WORDS["answer"]) + "."
    m = re.search(r"Write (\d+) new", text)  # Sprout's knowledge and skill prompts
    k = int(m.group(1)) if m else 1
    return "\n\n".join(f"[Question]\n{_words(text, seed + str(i), WORDS['question'])}?\n[Answer]\n"
                       f"{_words(text, seed + 'a' + str(i), WORDS['answer'])}.\n[End]" for i in range(k))


def serve(args) -> None:
    import uvicorn
    ep = Endpoint(args.capacity, args.queue_limit, args.ttft, args.rate, args.prefill)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        path = scope["path"]
        status, headers, out = 200, [(b"content-type", b"application/json")], {}
        if path.endswith("/models"):
            out = {"object": "list", "data": [{"id": "sim", "object": "model"}]}
        elif path == "/stats":
            out = ep.stats()
            if scope.get("query_string") == b"reset=1":
                ep.reset()
        elif path.endswith("/chat/completions"):
            req = json.loads(body)
            n = int(req.get("n") or 1)
            texts = [answer(req["messages"], i) for i in range(n)]
            counts = [len(t.split()) for t in texts]
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in req["messages"])
            if not await ep.hold(n, max(counts), prompt_tokens):
                status, headers = 429, headers + [(b"retry-after", b"1")]
                out = {"error": {"message": "queue full", "type": "rate_limit"}}
            else:
                ep.tokens += sum(counts)
                out = {"id": "sim", "object": "chat.completion", "created": int(time.time()), "model": "sim",
                       "choices": [{"index": i, "message": {"role": "assistant", "content": t},
                                    "finish_reason": "stop"} for i, t in enumerate(texts)],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": sum(counts),
                                 "total_tokens": prompt_tokens + sum(counts)}}
        else:
            status, out = 404, {"error": "not found"}
        data = json.dumps(out).encode()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    Path(args.port_file).write_text(str(sock.getsockname()[1]))
    uvicorn.Server(uvicorn.Config(app, log_level="warning", backlog=4096, timeout_keep_alive=60,
                                  lifespan="off")).run(sockets=[sock])


# ---------------------------------------------------------------------------------------------
# The workload: one taxonomy of knowledge leaves, the same chunks for every system
# ---------------------------------------------------------------------------------------------
def build_taxonomy(dest: Path, leaves: int) -> Path:
    """``leaves`` knowledge leaves over the sample taxonomy's documents (each leaf its own copy,
    words rotated so that no two leaves share a chunk)."""
    import yaml

    from pipeline.taxonomy.documents import materialize
    from pipeline.taxonomy.diff import git
    src = ROOT / "taxonomy"
    docs = sorted((src / "documents").glob("*.md"))
    shutil.copytree(src / "documents", dest / "documents")
    for old in (dest / "documents").glob("*.md"):
        old.unlink()
    template = yaml.safe_load((src / "knowledge/history/computing/ada_lovelace/qna.yaml").read_text())
    for i in range(leaves):  # a different edition per leaf: every paragraph marked, no chunk shared
        text = docs[i % len(docs)].read_text().replace("\n\n", f" (edition {i})\n\n")
        (dest / "documents" / f"doc{i:03d}.md").write_text(text + f"\n\nEdition {i}.\n")
    sha = git(materialize(dest / "documents"), "rev-parse", "main").decode().strip()
    for i in range(leaves):
        leaf = dict(template)
        leaf["document"] = {"repo": "documents", "commit": sha, "patterns": [f"doc{i:03d}.md"]}
        folder = dest / "knowledge" / "bench" / f"leaf{i:03d}"
        folder.mkdir(parents=True)
        (folder / "qna.yaml").write_text(yaml.safe_dump(leaf, sort_keys=False, allow_unicode=True))
        (folder / "attribution.txt").write_text("bench\n")
    return dest


def chunks_of(taxonomy: Path) -> list[dict]:
    """Every leaf's chunks, as Sprout cuts them: the rows SDG Hub and the asyncio client get."""
    from pipeline.sdg.chunking import chunk_markdown
    from pipeline.sdg.documents import fetch
    from pipeline.sdg.generate import GenerateConfig, select_leaves
    from pipeline.sdg.heldout import split_leaf
    rows = []
    for leaf in select_leaves(taxonomy):
        data = split_leaf(leaf.data, "knowledge", leaf.path, 0)[0]
        for name, text in fetch(data["document"], taxonomy):
            for c in chunk_markdown(text, name, GenerateConfig().chunk_tokens):
                rows.append({"leaf": leaf.path, "chunk": c, "data": data})
    return rows


# ---------------------------------------------------------------------------------------------
# The arms
# ---------------------------------------------------------------------------------------------
def arm_sprout(url: str, taxonomy: Path, concurrency: int, seed: int) -> dict:
    """generate() with the teacher as its judge (each pair judged as soon as it parses, as `sprout
    run` does), then the judge filter over every record, reading those replies. The leaf's own seed
    pairs are judged too, as in a run: work the other arms do not do."""
    from pipeline.filter.judge import judge_filter
    from pipeline.filter.run import read_replies
    from pipeline.sdg.generate import GenerateConfig, generate, read_jsonl
    from pipeline.sdg.teachers import GenParams, OpenAITeacher
    teacher = OpenAITeacher(url, concurrency=concurrency, progress=False)
    out = Path(tempfile.mkdtemp(prefix="sprout-bench-"))
    summary = generate(taxonomy, out, teacher, GenerateConfig(params=GenParams(seed=seed)), judge=teacher)
    records = [r for f in sorted((out / "generated").glob("*.jsonl")) for r in read_jsonl(f)]
    judged = judge_filter(records, teacher, replies=read_replies(out))
    kept = [r for r in judged.kept if r["teacher"] != "seed"]
    shutil.rmtree(out, ignore_errors=True)
    cost = teacher.cost
    teacher.pool.close()
    return {"generated": sum(r["teacher"] != "seed" for r in records), "kept": len(kept),
            "client_requests": cost.requests, "judged_seeds": len(records) - sum(r["teacher"] != "seed" for r in records),
            "judge_asked_after": judged.asked, "throttled": cost.throttled, "errors": cost.errors,
            "funnel": summary["funnel"]}


class OldTeacher:
    """Sprout's path before the shared pool: each leaf's prompts on 8 threads, leaves in turn."""

    can_judge = True

    def __init__(self, url: str, concurrency: int = 8):
        import httpx
        self.url, self.concurrency = url.rstrip("/") + "/chat/completions", concurrency
        self.http = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=concurrency))
        self.identity = f"old:{url}"
        self.requests = self.throttled = 0

    def _one(self, prompt, n, params):
        delay = 1.0
        for attempt in range(5):
            r = self.http.post(self.url, json={"model": "sim", "messages": list(prompt.messages), "n": n,
                                               "temperature": params.temperature, "max_tokens": params.max_tokens})
            if r.status_code < 400:
                self.requests += 1
                return [c["message"]["content"] for c in r.json()["choices"]]
            self.throttled += 1
            time.sleep(delay)
            delay *= 2
        raise RuntimeError(f"failed: {r.status_code}")

    def complete(self, prompts, n=1, params=None):
        import concurrent.futures

        from pipeline.sdg.teachers import GenParams
        params = params or GenParams()
        with concurrent.futures.ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda p: self._one(p, n, params), prompts))


def arm_sprout_old(url: str, taxonomy: Path, seed: int) -> dict:
    from pipeline.filter.judge import judge_filter
    from pipeline.sdg.generate import GenerateConfig, generate, read_jsonl
    from pipeline.sdg.teachers import GenParams
    teacher = OldTeacher(url)
    out = Path(tempfile.mkdtemp(prefix="sprout-bench-"))
    generate(taxonomy, out, teacher, GenerateConfig(params=GenParams(seed=seed)))
    records = [r for f in sorted((out / "generated").glob("*.jsonl")) for r in read_jsonl(f)
               if r["teacher"] != "seed"]
    kept = judge_filter(records, teacher).kept
    shutil.rmtree(out, ignore_errors=True)
    return {"generated": len(records), "kept": len(kept), "client_requests": teacher.requests,
            "throttled": teacher.throttled, "errors": 0}


def arm_asyncio(url: str, rows: list[dict], concurrency: int) -> dict:
    """The strongest plain client we could write: one semaphore at C, Sprout's prompts, each
    parsed pair judged as soon as its generation returns (no stage barrier)."""
    import httpx

    from pipeline.filter.judge import parse_scores
    from pipeline.sdg import prompts
    from pipeline.sdg.generate import GenerateConfig, knowledge_prompts
    from pipeline.sdg.parse import parse_pairs
    from pipeline.taxonomy.validate import LeafResult  # noqa: F401 (knowledge_prompts reads .data)
    config = GenerateConfig()
    counts = {"generated": 0, "kept": 0, "client_requests": 0, "throttled": 0, "errors": 0}

    async def main():
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as http:
            async def call(messages, n):
                for attempt in range(8):
                    async with sem:
                        r = await http.post(url.rstrip("/") + "/chat/completions",
                                            json={"model": "sim", "messages": messages, "n": n})
                    if r.status_code < 400:
                        counts["client_requests"] += 1
                        return [c["message"]["content"] for c in r.json()["choices"]]
                    counts["throttled"] += 1
                    await asyncio.sleep(float(r.headers.get("retry-after", 1)))
                counts["errors"] += 1
                return []

            async def judge(chunk, pair):
                p = prompts.render("judge", source=chunk.text, question=pair["question"], answer=pair["answer"])
                reply = await call(list(p.messages), 1)
                s = parse_scores(reply[0] if reply else "")
                if s.get("faithful", 0) >= 1 and s.get("relevance", 0) >= 2 and s.get("question", 0) >= 1:
                    counts["kept"] += 1

            async def gen(row, prompt):
                texts = await call(list(prompt.messages), config.samples)
                pairs = [p for t in texts for p in parse_pairs(t)[0]]
                counts["generated"] += len(pairs)
                await asyncio.gather(*(judge(row["chunk"], p) for p in pairs))

            class Leaf:  # knowledge_prompts needs only .data
                def __init__(self, data):
                    self.data = data
            jobs = [(row, p) for row in rows for (_, _, p) in knowledge_prompts(Leaf(row["data"]), [row["chunk"]], config)]
            await asyncio.gather(*(gen(row, p) for row, p in jobs))
    asyncio.run(main())
    return counts


def arm_sdg_hub(url: str, rows: list[dict], concurrency: int | None) -> dict:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import logging

    import pandas as pd
    for name in ("sdg_hub", "LiteLLM", "litellm", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import sdg_hub
    from sdg_hub import Flow
    flow_path = Path(sdg_hub.__file__).parent / "flows/knowledge_infusion/enhanced_multi_summary_qa/doc_direct_qa/flow.yaml"
    flow = Flow.from_yaml(str(flow_path))
    flow.set_model_config(model="hosted_vllm/sim", api_base=url, api_key="none")
    frame = []
    for row in rows:
        seeds = row["data"]["seed_examples"]
        qs = [qa["question"] for s in seeds for qa in s["questions_and_answers"]][:3]
        frame.append({"document": row["chunk"].text, "document_outline": row["data"]["document_outline"],
                      "domain": row["data"]["domain"], "icl_document": seeds[0]["context"],
                      "icl_query_1": qs[0], "icl_query_2": qs[1], "icl_query_3": qs[2]})
    out = flow.generate(pd.DataFrame(frame), max_concurrency=concurrency)
    return {"generated": None, "kept": len(out), "client_requests": None, "throttled": None, "errors": None}


# ---------------------------------------------------------------------------------------------
def start_server(args, capacity: int) -> tuple[subprocess.Popen, str]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    cmd = [sys.executable, __file__, "--serve", "--port-file", str(port_file), "--capacity", str(capacity),
           "--queue-limit", str(args.queue_limit), "--ttft", str(args.ttft), "--rate", str(args.rate),
           "--prefill", str(args.prefill)]
    proc = subprocess.Popen(cmd, start_new_session=True)
    for _ in range(300):
        if port_file.exists() and port_file.read_text():
            break
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def measure(name: str, base: str, fn) -> dict:
    import httpx
    httpx.get(base + "/stats?reset=1")
    started = time.time()
    try:
        result = fn()
        error = None
    except Exception as e:  # a peer that cannot run here is reported, not hidden
        result, error = {}, f"{type(e).__name__}: {str(e)[:300]}"
    wall = time.time() - started
    s = httpx.get(base + "/stats").json()
    row = {"arm": name, "wall_s": round(wall, 2), "achieved_concurrency": round(s["busy_slot_seconds"] / wall, 1),
           "utilisation": round(s["busy_slot_seconds"] / wall / CAPACITY, 3), "peak": s["peak"],
           "served": s["requests"], "rejected_429": s["rejected_429"], **result}
    if error:
        row["error"] = error
    print(f"  {name:<12} {row['wall_s']:>7.2f} s  util {row['utilisation']:.0%}  kept {row.get('kept')}"
          + (f"  ERROR {error}" if error else ""), flush=True)
    return row


CAPACITY = 0


def main() -> None:
    global CAPACITY
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small run (under a minute)")
    ap.add_argument("--capacity", type=int, help="sequences the endpoint serves at once (C)")
    ap.add_argument("--leaves", type=int, help="knowledge leaves (about 2 chunks each)")
    ap.add_argument("--queue-limit", type=int, default=512, help="queued requests before 429")
    ap.add_argument("--ttft", type=float, help="time to first token before prefill, seconds (default 0.2; quick 0.1)")
    ap.add_argument("--prefill", type=float, default=2000.0, help="prompt tokens/s per sequence (adds to TTFT)")
    ap.add_argument("--rate", type=float, help="decode tokens/s per sequence (default 30, a loaded 70B; quick 100)")
    ap.add_argument("--arms", default="sprout,sprout@C,sprout-old,asyncio@C,sdg-hub,sdg-hub@C")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args)
        return
    # The box that runs this has 2 cores for the client and the endpoint: C and the rates keep the
    # request rate that fills C within what it can serve, so that the client is what is measured.
    C = args.capacity or (16 if args.quick else 32)
    leaves = args.leaves or (1 if args.quick else 16)
    args.ttft = args.ttft if args.ttft is not None else (0.1 if args.quick else 0.2)
    args.rate = args.rate or (100.0 if args.quick else 30.0)
    CAPACITY = C
    os.environ["SPROUT_CACHE"] = tempfile.mkdtemp(prefix="sprout-bench-cache-")
    work = Path(tempfile.mkdtemp(prefix="sprout-bench-tax-"))
    taxonomy = build_taxonomy(work / "taxonomy", leaves)
    rows = chunks_of(taxonomy)  # also warms the document mirror for every arm
    # imported before any clock starts, as SDG Hub's are below: the first Sprout arm would pay
    # ~0.5 s of imports (numpy via the filters, httpx) that the others do not
    import httpx  # noqa: F401
    import pipeline.budgets  # noqa: F401
    import pipeline.cachecap  # noqa: F401
    import pipeline.filter.judge  # noqa: F401
    import pipeline.filter.run  # noqa: F401
    import pipeline.sdg.pool  # noqa: F401
    import tqdm  # noqa: F401
    proc, base = start_server(args, C)
    url = base + "/v1"
    print(f"endpoint: C={C} sequences, queue limit {args.queue_limit}, TTFT {args.ttft}s + prompt/{args.prefill:g} "
          f"tok/s, {args.rate:g} tok/s per "
          f"sequence; {leaves} leaves, {len(rows)} chunks, {len(rows) * PAIRS_PER_CHUNK} samples requested", flush=True)
    arms = [a.strip() for a in args.arms.split(",")]
    if any(a.startswith("sdg-hub") for a in arms):
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no cost map download
        try:  # imported before the clock starts: ~10 s here, not the flow's speed
            import litellm  # noqa: F401
            import sdg_hub  # noqa: F401
        except ImportError as e:
            print(f"sdg-hub arms: {e} (pip install sdg-hub); they will report the error", flush=True)
    results = []
    try:
        for i, arm in enumerate(arms):
            if arm == "sprout":
                results.append(measure(arm, base, lambda: arm_sprout(url, taxonomy, 128, seed=100 + i)))
            elif arm == "sprout@C":
                results.append(measure(arm, base, lambda: arm_sprout(url, taxonomy, C, seed=100 + i)))
            elif arm == "sprout@2C":
                results.append(measure(arm, base, lambda: arm_sprout(url, taxonomy, 2 * C, seed=100 + i)))
            elif arm == "sprout-old":
                results.append(measure(arm, base, lambda: arm_sprout_old(url, taxonomy, seed=100 + i)))
            elif arm == "asyncio@C":
                results.append(measure(arm, base, lambda: arm_asyncio(url, rows, C)))
            elif arm == "sdg-hub":
                results.append(measure(arm, base, lambda: arm_sdg_hub(url, rows, None)))
            elif arm == "sdg-hub@C":
                results.append(measure(arm, base, lambda: arm_sdg_hub(url, rows, C)))
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'arm':<12}{'wall s':>8}{'conc.':>7}{'util':>7}{'peak':>6}{'429s':>6}{'served':>8}{'kept':>6}")
    for r in results:
        print(f"{r['arm']:<12}{r['wall_s']:>8.2f}{r['achieved_concurrency']:>7.1f}{r['utilisation']:>7.0%}"
              f"{r['peak']:>6}{r['rejected_429']:>6}{r['served']:>8}{str(r.get('kept', '-')):>6}"
              + (f"  ({r['error']})" if r.get("error") else ""))
    ok = [r for r in results if not r.get("error")]
    ours = [r for r in ok if r["arm"].startswith("sprout") and r["arm"] != "sprout-old"]
    peers = [r for r in ok if r["arm"].startswith("sdg-hub") or r["arm"] == "sprout-old"]
    bound = next((r for r in ok if r["arm"] == "asyncio@C"), None)
    best = min(ours, key=lambda r: r["wall_s"]) if ours else None
    best_peer = min(peers, key=lambda r: r["wall_s"]) if peers else None
    ratio = round(best_peer["wall_s"] / best["wall_s"], 3) if best and best_peer else None
    at_default = {r["arm"]: r["wall_s"] for r in ok}
    default_ratio = round(at_default["sdg-hub"] / at_default["sprout"], 3) \
        if "sdg-hub" in at_default and "sprout" in at_default else None
    vs_bound = round(bound["wall_s"] / best["wall_s"], 3) if bound and best else None
    util = best["utilisation"] if best else None
    from bench._shared import goal
    if util is not None:
        print(goal("sprout utilisation", util, 0.9))
    if ratio is not None:
        print(goal(f"sprout vs best peer ({best_peer['arm']}) wall-time ratio at equal capacity", ratio, 1.0))
    if default_ratio is not None:
        print(goal("sprout vs sdg-hub, both at their defaults", default_ratio, 1.0))
    if vs_bound is not None:
        print(f"sprout vs a plain asyncio client that judges each pair as it parses (a bound, not a peer): "
              f"{vs_bound:g}x")
    print(json.dumps({"ratio": ratio, "ratio_vs_best_peer": ratio, "ratio_at_defaults_vs_sdg_hub": default_ratio,
                      "ratio_vs_asyncio_bound": vs_bound, "utilisation": util,
                      "best_sprout_arm": best and best["arm"], "best_peer": best_peer and best_peer["arm"],
                      "capacity": C, "chunks": len(rows), "samples_requested": len(rows) * PAIRS_PER_CHUNK,
                      "arms": results}, default=str))


if __name__ == "__main__":
    main()
