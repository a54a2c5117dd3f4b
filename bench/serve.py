"""Benchmark: chat completions per second from `sprout model serve` with 8 concurrent clients
(requests batched, continuously, by the scheduler) against the server as it was before (one
request at a time under a lock, bench/_serve_serialized.py), in the same run on the same model
and questions.

    python bench/serve.py            # SmolLM2-135M-Instruct when prepared/installed, else a small random Llama
    python bench/serve.py --quick    # a small random Llama (4 layers, hidden 256): under a minute
    python bench/serve.py --model DIR

Arms (each a real server process on loopback; clients are threads here, closed loop):
  serialized@8   the old server, 8 concurrent clients (the baseline)
  sprout@1       `sprout model serve`, one client at a time
  sprout-batch1@8  `sprout model serve --max-batch 1`, 8 clients (the engine without batching)
  sprout@8       `sprout model serve`, 8 concurrent clients
Every request: one of the held-out-style questions, temperature 0, max_tokens fixed; greedy
answers must be equal across arms (checked, printed). The last line is JSON; ratio =
requests/s of sprout@8 over serialized@8.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

QUESTIONS = ["What is the highest point of Brenvik Isle?", "Where is Saltreach?", "What is the water cycle?",
             "Who was Ada Lovelace?", "What does git commit do?", "Convert 3 miles to kilometres.",
             "Write a haiku about the sea.", "List the action items from the meeting.",
             "How many continents are there?", "Why does ice float on water?", "What is a branch in git?",
             "When did Ada Lovelace write her notes?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_model(dest: Path) -> Path:
    """A random-weight Llama big enough that generation, not HTTP, is the cost (~5M parameters)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipeline.train.student import taxonomy_texts, train_tokenizer
    tok = train_tokenizer(taxonomy_texts(ROOT / "taxonomy"), 2048)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         initializer_range=0.2)  # loud weights: answers differ from question to question
    LlamaForCausalLM(config).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def pick_model(args, tmp: Path) -> tuple[Path, str]:
    if args.model:
        return Path(args.model), Path(args.model).name
    if not args.quick:
        from pipeline.train.student import StudentError, prepare_smollm2
        try:
            return prepare_smollm2(log=lambda m: print(m, flush=True)), "SmolLM2-135M-Instruct"
        except StudentError as e:
            print(f"skipped: SmolLM2 ({e}); using a small random Llama instead", flush=True)
    return small_model(tmp / "small"), "random Llama 4x256 (~5M parameters)"


def start(cmd: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    port_args = ["--port", str(port)] if cmd[0] == "-m" else [str(port)]  # the baseline takes it positionally
    proc = subprocess.Popen([sys.executable, *cmd, *port_args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server {' '.join(cmd)} exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("a server did not start in 300 s")


def load(url: str, clients: int, requests: int, max_tokens: int) -> dict:
    """Closed loop: ``clients`` threads each send their share of ``requests`` back to back."""
    answers: dict[int, str] = {}
    latencies: list[float] = []
    errors: list[str] = []
    tokens = [0]
    lock = threading.Lock()
    todo = list(range(requests))

    def client():
        with httpx.Client(timeout=600) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop(0)
                body = {"messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                        "temperature": 0, "max_tokens": max_tokens}
                t0 = time.perf_counter()
                r = http.post(f"{url}/v1/chat/completions", json=body)
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code != 200:
                        errors.append(r.text[:200])
                        continue
                    data = r.json()
                    answers[i] = data["choices"][0]["message"]["content"]
                    latencies.append(dt)
                    tokens[0] += (data.get("usage") or {}).get("completion_tokens", 0)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        print(f"  first error: {errors[0]}", flush=True)
    return {"clients": clients, "requests": len(answers), "errors": len(errors), "seconds": round(wall, 2),
            "rps": round(len(answers) / wall, 3), "p50_s": round(statistics.median(latencies), 3) if latencies else None,
            "answers": answers}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small random model and fewer requests (< 1 min)")
    ap.add_argument("--model", help="a Hugging Face model folder to serve")
    ap.add_argument("--requests", type=int, help="requests per arm and round (default: 16 quick, 32 full)")
    ap.add_argument("--max-tokens", type=int, help="tokens per answer (default: 16 quick, 32 full)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds; each arm's median is reported (default: 1 quick, 3)")
    args = ap.parse_args()
    requests = args.requests or (16 if args.quick else 32)
    max_tokens = args.max_tokens or (16 if args.quick else 32)
    args.rounds = args.rounds or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="sprout-bench-serve-") as tmp:
        model, described = pick_model(args, Path(tmp))
        print(f"model: {described}; {requests} requests per arm and round, {args.rounds} round(s), greedy, "
              f"max_tokens {max_tokens}", flush=True)
        arms = [("serialized@8", ["bench/_serve_serialized.py", str(model)], 8),
                ("sprout@1", ["-m", "pipeline.cli", "model", "serve", str(model)], 1),
                ("sprout-batch1@8", ["-m", "pipeline.cli", "model", "serve", str(model), "--max-batch", "1"], 8),
                ("sprout@8", ["-m", "pipeline.cli", "model", "serve", str(model)], 8)]
        # every server up at once, arms interleaved round by round: a machine whose load drifts
        # (shared CI runners) shifts every arm alike; each arm's figure is its median round
        servers = {name: (start(cmd), clients) for name, cmd, clients in arms}
        rounds: dict[str, list[dict]] = {name: [] for name in servers}
        try:
            for (_, url), clients in servers.values():
                load(url, clients, clients, max_tokens)  # warm-up: first-call costs out of the timing
            for k in range(args.rounds):
                for name, ((_, url), clients) in servers.items():
                    r = load(url, clients, requests, max_tokens)
                    rounds[name].append(r)
                    print(f"  round {k + 1} {name:<16} {r['rps']:>7.2f} req/s  p50 {r['p50_s']}s  errors {r['errors']}",
                          flush=True)
        finally:
            for (proc, _), _ in servers.values():
                proc.terminate()
                proc.wait(30)
        results = {}
        for name, rs in rounds.items():
            mid = sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]
            results[name] = {**mid, "errors": sum(r["errors"] for r in rs),
                             "rps_rounds": [r["rps"] for r in rs], "answers_all": [r["answers"] for r in rs]}
    base = results["serialized@8"]["answers"]
    equal = all(a == base for r in results.values() for a in r.pop("answers_all"))
    print()
    print(f"{'arm':<16} {'clients':>7} {'requests':>8} {'seconds':>8} {'req/s':>8} {'p50 s':>7} {'errors':>6}")
    for name, r in results.items():
        print(f"{name:<16} {r['clients']:>7} {r['requests']:>8} {r['seconds']:>8} {r['rps']:>8} {str(r['p50_s']):>7} "
              f"{r['errors']:>6}")
    ratio = results["sprout@8"]["rps"] / results["serialized@8"]["rps"]
    print(f"\nsprout@8 / serialized@8: {ratio:.2f}x; sprout@8 / sprout@1: "
          f"{results['sprout@8']['rps'] / results['sprout@1']['rps']:.2f}x; greedy answers equal across arms: "
          f"{'yes' if equal else 'NO'}")
    print(json.dumps({"bench": "serve", "ratio": round(ratio, 3), "model": described, "requests": requests,
                      "rounds": args.rounds,
                      "max_tokens": max_tokens, "answers_equal": equal,
                      "arms": {k: {x: v for x, v in r.items() if x != "answers"} for k, r in results.items()}}))
    return 0 if equal and not any(r["errors"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
