"""Generate synthetic samples per leaf, cached by content hash: a rerun with nothing changed
generates nothing, and a change to one leaf regenerates that leaf only."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..taxonomy.reader import iter_leaves
from ..taxonomy.validate import LeafResult
from . import prompts
from .chunking import Chunk, chunk_markdown
from .documents import fetch
from .journal import Journal, request_key
from .parse import FUNNEL, classify, parse_pairs
from .pool import Completion, Cost, PoolError
from .teachers import GenParams, Teacher, TeacherError

FORMAT_VERSION = 4  # 2: seed material held out before generation; 3: training-share seed pairs as records;
# 4: two of three knowledge pairs held out (a cache from 3 would carry them back as seed records)


class GenerateError(Exception):
    """Generation cannot start (invalid taxonomy, unknown leaf, unreadable documents)."""


@dataclass(frozen=True)
class GenerateConfig:
    short_pairs: int = 3
    """Question/answer pairs asked for in one short-answer prompt (one prompt per chunk)."""
    long_pairs: int = 2
    """Pairs asked for in one long-answer prompt."""
    samples: int = 2
    """Completions per prompt: more variety from the same chunk."""
    skill_tasks: int = 30
    """New tasks asked for per skill leaf."""
    skill_pairs: int = 5
    """Tasks asked for in one skill prompt."""
    chunk_tokens: int = 350
    """Token budget of a document chunk."""
    examples_in_prompt: int = 3
    """Seed examples shown in each prompt."""
    heldout_seed: int = 0
    """Chooses which seed items are held out for evaluation (see heldout.py)."""
    params: GenParams = field(default_factory=GenParams)

    def key(self) -> str:
        d = asdict(self)
        return json.dumps(d, sort_keys=True, default=str)


def cache_root() -> Path:
    from ..taxonomy.documents import cache_dir
    return cache_dir() / "sdg"


def slug(path: str) -> str:
    return path.removesuffix("/qna.yaml").replace("/", "__")


def parser_digest() -> str:
    """The parser's own source: the cache holds parsed pairs, so a parser change must re-parse."""
    from ..package_data import source_digest
    return source_digest(__package__, ("parse.py",))


def leaf_key(leaf: LeafResult, raw: bytes, teacher: Teacher, config: GenerateConfig) -> str:
    doc = (leaf.data or {}).get("document") or {}
    parts = [f"format:{FORMAT_VERSION}", leaf.path, hashlib.sha256(raw).hexdigest(),
             str(doc.get("commit", "")), teacher.identity, prompts.fingerprint(), f"parser:{parser_digest()}",
             config.key()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def knowledge_prompts(leaf: LeafResult, chunks: list[Chunk], config: GenerateConfig) -> list[tuple[str, Chunk, prompts.Prompt]]:
    data = leaf.data
    examples = []
    for seed in data["seed_examples"]:
        for qa in seed["questions_and_answers"][:1]:
            examples.append((None, qa["question"], qa["answer"]))
    shown = prompts.format_examples(examples[:config.examples_in_prompt])
    out = []
    for c in chunks:
        for shape, task, n in (("short", "knowledge_short", config.short_pairs), ("long", "knowledge_long", config.long_pairs)):
            if n:
                out.append((shape, c, prompts.render(task, domain=data["domain"], document=c.text, examples=shown,
                                                       n=n, title=c.title)))
    return out


def skill_prompts(leaf: LeafResult, config: GenerateConfig) -> list[prompts.Prompt]:
    data = leaf.data
    seeds = [(s.get("context"), s["question"], s["answer"]) for s in data["seed_examples"]]
    grounded = all(c for c, _, _ in seeds)
    task = "skill_grounded" if grounded else "skill_freeform"
    out = []
    for i in range(max(1, -(-config.skill_tasks // (config.skill_pairs * config.samples)))):
        shown = [seeds[(i + j) % len(seeds)] for j in range(min(config.examples_in_prompt, len(seeds)))]
        out.append(prompts.render(task, task_description=data["task_description"],
                                  examples=prompts.format_examples(shown), n=config.skill_pairs, seeds=seeds))
    return out


def leaf_info(leaf: LeafResult, heldout_seed: int | None = None) -> dict:
    """A leaf's kind and seed question/answer pairs (chunks are added by generation). With
    ``heldout_seed``, ``seeds`` are the training share only and ``heldout`` the rest."""
    from .heldout import split_leaf
    kind = "knowledge" if leaf.kind == "knowledge" else "skill"
    data, held = (leaf.data, []) if heldout_seed is None else split_leaf(leaf.data, kind, leaf.path, heldout_seed)
    if kind == "knowledge":
        seeds = [{"context": s["context"], "question": qa["question"], "answer": qa["answer"]}
                 for s in data["seed_examples"] for qa in s["questions_and_answers"]]
    else:
        seeds = [{"context": s.get("context"), "question": s["question"], "answer": s["answer"]}
                 for s in data["seed_examples"]]
    return {"path": leaf.path, "kind": kind, "seeds": seeds, "heldout": held, "chunks": []}


_FETCH_LOCK = threading.Lock()  # leaves run side by side; two clones of one document repo must not


def ask(teacher: Teacher, batch: list[prompts.Prompt], n: int, params: GenParams,
        journal: Journal | None = None,
        on_answer: Callable[[int, Completion], None] | None = None) -> tuple[list[Completion], Cost]:
    """Every prompt's completions, through the teacher's pool when it has one. Answers already in
    ``journal`` are not asked again; new ones are journaled as they arrive. ``on_answer(i,
    completion)`` is called in this thread for each prompt as its answer arrives (journaled ones
    first). The cost counts this leaf's requests, including those an interrupted attempt journaled."""
    journal = journal or Journal(None)
    on_answer = on_answer or (lambda i, c: None)
    keys = [request_key(list(p.messages) or [p.task, p.variables], n, params.key(), i) for i, p in enumerate(batch)]
    done = journal.load()
    todo = [i for i, k in enumerate(keys) if k not in done]
    for i, k in enumerate(keys):
        if k in done:
            on_answer(i, done[k])
    if todo and hasattr(teacher, "submit"):
        futures = {teacher.submit(batch[i], n, params): i for i in todo}
        failed = []
        for f in concurrent.futures.as_completed(futures):  # journaled here, as each arrives
            if f.exception() is not None:
                failed.append(f.exception())
            else:
                done[keys[futures[f]]] = f.result()
                journal.append(keys[futures[f]], f.result())
                on_answer(futures[f], f.result())
        if failed:  # what did arrive stays journaled: a rerun asks only the rest
            raise TeacherError(f"{len(failed)} of {len(todo)} requests failed; first: {failed[0]}")
    elif todo:  # offline or a local model: no endpoint, nothing to count as its cost
        for i, texts in zip(todo, teacher.complete([batch[i] for i in todo], n, params)):
            done[keys[i]] = Completion(list(texts), [None] * len(texts), Cost())
            journal.append(keys[i], done[keys[i]])
            on_answer(i, done[keys[i]])
    out = [done[k] for k in keys]
    total = Cost()
    for c in out:
        total.add(c.cost)
    return out, total


def generate_leaf(leaf: LeafResult, taxonomy_root: Path, teacher: Teacher, config: GenerateConfig,
                  journal: Path | None = None, judge=None, screen: Callable[[dict], dict | None] | None = None,
                  judge_config=None) -> dict:
    """Samples for one leaf, plus what the filters need to know about it. ``journal``: where
    answered requests are kept until the leaf is done (resume inside a leaf). ``judge``: a judge
    behind a request pool is asked about each pair as soon as the pair is parsed (filter/judge.py),
    for the pairs ``screen`` keeps (default: all), as it will see them; its replies are journaled
    too and returned in ``judged`` (request key -> reply)."""
    from dataclasses import replace as _replace

    from ..filter.judge import JudgeConfig, ask_ahead, can_ask_ahead, collect
    from .heldout import decontaminate, split_leaf
    started = time.time()
    records, malformed = [], 0
    funnel = dict.fromkeys(FUNNEL, 0)
    rejects: dict[str, list[str]] = {}
    log = Journal(journal)
    judge_config = judge_config or JudgeConfig()
    ahead = can_ask_ahead(judge)
    known = log.load() if ahead else {}  # judge replies an interrupted attempt journaled
    asked: dict = {}
    answers: dict[int, tuple[list, list[dict]]] = {}  # prompt index -> (per completion: text, finish, fate, bad), records

    def judge_soon(rows: list[dict]) -> None:
        if ahead:
            seen = [x for x in (screen(r) if screen else r for r in rows) if x is not None]
            ask_ahead(judge, seen, asked, judge_config, known=known, on_reply=log.append)

    def parsed(make_record):
        def on_answer(i: int, completion: Completion) -> None:
            fates, rows = [], []
            for text, finish in zip(completion.texts, completion.finish):
                pairs, bad = parse_pairs(text, finished=finish == "stop")  # ended on its own: not cut
                fates.append((text, finish, classify(text, len(pairs), finish), bad))
                rows.extend(make_record(i, pair) for pair in pairs)
            answers[i] = (fates, rows)
            judge_soon(rows)  # into the pool now, beside the generation requests still out
        return on_answer

    def gather(count: int) -> None:
        """In prompt order, whatever order the answers came in: the output is deterministic."""
        nonlocal malformed
        for i in range(count):
            fates, rows = answers[i]
            for text, finish, fate, bad in fates:
                malformed += bad
                funnel[fate] += 1
                if fate != "parsed" and len(rejects.setdefault(fate, [])) < 2:
                    rejects[fate].append(text[:400])  # what the teacher wrote instead, for people
            records.extend(rows)
    info = leaf_info(leaf, config.heldout_seed)
    # Prompts see only the training share of the seeds: held-out items never reach the teacher.
    leaf = _replace(leaf, data=split_leaf(leaf.data, info["kind"], leaf.path, config.heldout_seed)[0])
    if leaf.kind == "knowledge":
        with _FETCH_LOCK:
            docs = fetch(leaf.data["document"], taxonomy_root)
        chunks = [c for name, text in docs for c in chunk_markdown(text, name, config.chunk_tokens)]
        info["chunks"] = [{"id": c.id, "title": c.title, "text": c.text} for c in chunks]
        jobs = knowledge_prompts(leaf, chunks, config)
        # The leaf's own training-share pairs are data too (written by people, grounded in their
        # context): they teach the question-and-answer form on this leaf's facts, which is how the
        # held-out ones will be asked. Held-out pairs are not in ``leaf`` any more.
        seeds = []
        for ex in leaf.data["seed_examples"]:
            context = Chunk(hashlib.sha256(ex["context"].encode()).hexdigest()[:16], "seed_examples", (), ex["context"])
            for qa in ex["questions_and_answers"]:
                rec = _record(leaf, teacher, "seed", {"question": qa["question"], "answer": qa["answer"]},
                              chunk=context, domain=leaf.data["domain"])
                seeds.append({**rec, "teacher": "seed"})
        judge_soon(seeds)
        _, cost = ask(teacher, [p for _, _, p in jobs], config.samples, config.params, log,
                      parsed(lambda i, pair: _record(leaf, teacher, jobs[i][0], pair, chunk=jobs[i][1],
                                                     domain=leaf.data["domain"])))
        gather(len(jobs))
        records.extend(seeds)
    else:
        jobs = skill_prompts(leaf, config)
        _, cost = ask(teacher, jobs, config.samples, config.params, log,
                      parsed(lambda i, pair: _record(leaf, teacher, "skill", pair)))
        gather(len(jobs))
    records, leaked = decontaminate(records, info["heldout"])
    info["decontaminated"] = len(leaked)
    replies = collect(asked)
    log.close()
    judge_cost = Cost()
    for c in replies.values():
        judge_cost.add(c.cost)
    cost.seconds = time.time() - started
    judge_cost.seconds = cost.seconds if replies else 0.0
    return {"leaf": info, "records": records, "malformed": malformed, "seconds": time.time() - started,
            "funnel": funnel, "rejects": rejects, "cost": cost.as_dict(),
            "judged": {k: c.texts[0] if c.texts else "" for k, c in replies.items()},
            "judge_cost": judge_cost.as_dict()}


def _record(leaf: LeafResult, teacher: Teacher, shape: str, pair: dict, chunk: Chunk | None = None,
            domain: str | None = None) -> dict:
    ident = hashlib.sha256("\0".join([leaf.path, shape, pair.get("context", ""), pair["question"],
                                      pair["answer"]]).encode()).hexdigest()[:16]
    return {"id": ident, "leaf": leaf.path, "kind": "knowledge" if chunk else "skill", "shape": shape,
            "question": pair["question"], "answer": pair["answer"], "context": pair.get("context"),
            "source_chunk": chunk.text if chunk else None, "chunk_id": chunk.id if chunk else None,
            "chunk_title": chunk.title if chunk else None, "domain": domain,
            "teacher": teacher.identity, "prompts": prompts.fingerprint()}


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Atomic: a killed run never leaves a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_leaf_infos(out_dir: Path) -> dict[str, dict]:
    """What ``generate`` recorded about each leaf (seeds, chunks), by leaf path; {} if absent."""
    path = Path(out_dir) / "leaves.jsonl"
    return {x["path"]: x for x in read_jsonl(path)} if path.exists() else {}


def in_order(items, fn):
    return (fn(item) for item in items)


def side_by_side(items, fn, leaves_at_once: int = 64):
    """Leaves as threads that mostly wait on the teacher's pool: the pool, not the leaf, bounds
    what is in flight, so a leaf with three prompts never leaves the endpoint idle. Results in
    completion order."""
    items = list(items)
    with concurrent.futures.ThreadPoolExecutor(min(leaves_at_once, len(items)) or 1,
                                               thread_name_prefix="sprout-leaf") as threads:
        futures = [threads.submit(fn, item) for item in items]
        for f in concurrent.futures.as_completed(futures):
            yield f.result()


def select_leaves(taxonomy_root: Path, only: list[str] | None = None) -> list[LeafResult]:
    leaves = list(iter_leaves(taxonomy_root))
    invalid = [x for x in leaves if not x.ok]
    if invalid:
        lines = [f"{d.file}:{d.line}:{d.column}: {d.rule} {d.message}" for x in invalid for d in x.diagnostics if d.is_error]
        raise GenerateError("the taxonomy has invalid leaves; run 'sprout validate':\n  " + "\n  ".join(lines[:20]))
    if only is not None:  # [] selects nothing (a change that touches no leaf)
        wanted = [o.removesuffix("/qna.yaml").strip("/") for o in only]
        chosen = [x for x in leaves if any(x.path == f"{w}/qna.yaml" or x.path.startswith(w + "/") for w in wanted)]
        missing = [w for w in wanted if not any(x.path == f"{w}/qna.yaml" or x.path.startswith(w + "/") for x in leaves)]
        if missing:
            raise GenerateError(f"no leaves match: {', '.join(missing)}")
        leaves = chosen
    return [x for x in leaves if x.path.endswith("qna.yaml")]


def generate(taxonomy_root: Path, out_dir: Path, teacher: Teacher, config: GenerateConfig = GenerateConfig(),
             only: list[str] | None = None, progress: Callable[[str, int, int], None] | None = None,
             runner: Callable | None = None, judge=None, screen: Callable[[dict], dict | None] | None = None,
             judge_config=None) -> dict:
    """Generate every selected leaf into ``out_dir/generated/``; cached leaves are copied, not
    regenerated. ``runner`` distributes the missing leaves (e.g. on Ray); default: in process.
    ``judge`` (behind a request pool): each pair that ``screen`` keeps is judged as soon as it is
    parsed, in the same pool as generation when the judge is the teacher; the replies go to
    ``out_dir/judge_replies.jsonl`` for the filter (``filter.run.read_replies``)."""
    from ..filter.judge import can_ask_ahead
    taxonomy_root = Path(taxonomy_root)
    leaves = select_leaves(taxonomy_root, only)
    cache = cache_root()
    todo, summary = [], {"leaves": [], "teacher": teacher.identity, "prompts": prompts.fingerprint()}
    for leaf in leaves:
        raw = (taxonomy_root / leaf.path).read_bytes()
        key = leaf_key(leaf, raw, teacher, config)
        todo.append((leaf, key))
    missing = [(leaf, key) for leaf, key in todo if not (cache / f"{key}.jsonl").exists()]
    started = time.time()
    failures = []
    if missing:
        from ..budgets import plan_generation
        plan_generation(missing, taxonomy_root, config)  # every budget, before any teacher call
        pooled = getattr(teacher, "shares_pool", False) or can_ask_ahead(judge)
        run = runner or (side_by_side if pooled else in_order)

        here = os.getpid()

        def one(item):
            leaf, key = item
            try:
                return leaf, key, generate_leaf(leaf, taxonomy_root, teacher, config,
                                                journal=cache / f"{key}.journal.jsonl", judge=judge,
                                                screen=screen, judge_config=judge_config)
            except (TeacherError, PoolError) as e:  # the other leaves finish and are cached first
                return leaf, key, e
            finally:
                if os.getpid() != here:  # a Ray worker's own copies: their pools end with the leaf
                    from .teachers import close_teachers
                    close_teachers(teacher, judge)
        done = 0
        for leaf, key, result in run(missing, one):
            if isinstance(result, Exception):
                failures.append((leaf.path, result))
                continue
            write_jsonl(cache / f"{key}.leaf.json.tmp", [result["leaf"]])
            os.replace(cache / f"{key}.leaf.json.tmp", cache / f"{key}.leaf.json")
            meta = {"malformed": result["malformed"], "seconds": round(result["seconds"], 3),
                    "funnel": result["funnel"], "rejects": result["rejects"], "cost": result["cost"],
                    "judge_cost": result["judge_cost"]}
            (cache / f"{key}.meta.json").write_text(json.dumps(meta))
            write_jsonl(cache / f"{key}.judge.jsonl", [{"key": k, "reply": v} for k, v in sorted(result["judged"].items())])
            write_jsonl(cache / f"{key}.jsonl", result["records"])  # last: marks the leaf complete
            (cache / f"{key}.journal.jsonl").unlink(missing_ok=True)
            done += 1
            if progress:
                progress(leaf.path, done, len(missing))
    if failures:
        raise TeacherError(f"{len(failures)} leaves failed (their answered requests are journaled; a rerun "
                           f"resumes them): " + "; ".join(f"{p}: {e}" for p, e in failures[:3]))
    generated_dir = out_dir / "generated"
    generated_dir.mkdir(parents=True, exist_ok=True)
    infos = []
    fresh = {key for _, key in missing}
    total, funnel = Cost(), dict.fromkeys(FUNNEL, 0)
    judge_total, replies = Cost(), {}
    for leaf, key in todo:
        if (cache / f"{key}.judge.jsonl").exists():  # asked ahead (the filter uses those of its judge)
            replies.update((x["key"], x["reply"]) for x in read_jsonl(cache / f"{key}.judge.jsonl"))
        records = read_jsonl(cache / f"{key}.jsonl")
        infos.append(json.loads((cache / f"{key}.leaf.json").read_text().splitlines()[0]))
        meta = json.loads((cache / f"{key}.meta.json").read_text())
        n = write_jsonl(generated_dir / f"{slug(leaf.path)}.jsonl", records)
        row = {"path": leaf.path, "key": key, "status": "generated" if key in fresh else "cached",
               "samples": n, "malformed": meta["malformed"], "seconds": meta["seconds"],
               "funnel": meta.get("funnel") or {}, "rejects": meta.get("rejects") or {},
               "cost": meta.get("cost") or Cost().as_dict()}
        summary["leaves"].append(row)
        if key in fresh:  # a cached leaf cost this run nothing
            total.add(Cost.of(row["cost"]))
            judge_total.add(Cost.of(meta.get("judge_cost")))
            for k, v in row["funnel"].items():
                funnel[k] = funnel.get(k, 0) + v
    total.seconds = time.time() - started if missing else 0.0
    judge_total.seconds = total.seconds if judge_total.requests else 0.0
    summary["cost"], summary["funnel"] = total.as_dict(), funnel
    summary["judge"] = {"identity": getattr(judge, "identity", None), "asked_ahead": judge_total.requests,
                        "replies": len(replies), "cost": judge_total.as_dict()}
    write_jsonl(out_dir / "leaves.jsonl", infos)
    write_jsonl(out_dir / "judge_replies.jsonl", ({"key": k, "reply": v} for k, v in sorted(replies.items())))
    (out_dir / "generate_summary.json").write_text(json.dumps(summary, indent=2))
    from ..cachecap import cap, prune, touch
    for _, key in todo:  # used now; the cache is capped least recently used first
        touch(cache / f"{key}.jsonl")
    prune(cache, cap("sdg"), keep={cache / f"{key}{ext}" for _, key in todo
                                   for ext in (".jsonl", ".leaf.json", ".meta.json", ".judge.jsonl")},
          group=lambda name: name.split(".")[0], only=lambda p: p.is_file())
    return summary
