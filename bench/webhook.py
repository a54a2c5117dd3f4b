"""Benchmark: webhook acknowledgement latency and throughput of the running bot, and time from a
pull request 'opened' delivery to a completed check run for a 50-leaf PR.

    python bench/webhook.py           # 200 deliveries/s for 10 s
    python bench/webhook.py --quick   # 200 deliveries/s for 3 s

The bot runs as its own process (`sprout bot serve`, SQLite store with synchronous=FULL) against
the GitHub emulator on loopback. Baseline, in the same run: a webhook endpoint that does the
work in the request path (validate the PR, report to GitHub, then answer) — what a bot without
a durable queue does. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from bot.signature import sign  # noqa: E402
from tests.github_emulator import Emulator  # noqa: E402

SECRET = "bench-secret"
REPO = "bench/taxonomy"
SKILL = (ROOT / "taxonomy/compositional_skills/writing/freeform/haiku/qna.yaml").read_text()
ATTRIBUTION = (ROOT / "taxonomy/compositional_skills/writing/freeform/haiku/attribution.txt").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REAL_PAYLOAD: Path | None = None
"""A real pull_request delivery from the shared corpus, whose shape the bench sends (set in main)."""


def payload(number: int, sha: str) -> bytes:
    real = REAL_PAYLOAD
    p = json.loads(real.read_text()) if real else {"pull_request": {"head": {}, "base": {}}, "repository": {}}
    p["action"], p["number"] = "opened", number
    p["pull_request"].update(number=number)
    p["pull_request"]["head"]["sha"] = sha
    p["repository"]["full_name"] = REPO
    p.pop("installation", None)
    return json.dumps(p).encode()


async def drive(url: str, rate: float, seconds: float, bodies: list[bytes]) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        async def one(i: int) -> None:
            nonlocal errors
            body = bodies[i % len(bodies)]
            headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4()),
                       "X-Hub-Signature-256": sign(body, SECRET), "Content-Type": "application/json"}
            t = time.perf_counter()
            try:
                r = await client.post("/webhook", content=body, headers=headers)
                ok = r.status_code in (200, 202)
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t)
            errors += not ok

        n = int(rate * seconds)
        start = time.perf_counter()
        tasks = []
        for i in range(n):  # open loop: send on schedule whatever the answers do
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return latencies, n / wall, errors


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def start_bot(emu: Emulator, db: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "SPROUT_WEBHOOK_SECRET": SECRET, "SPROUT_GITHUB_TOKEN": "ghp_bench",
           "SPROUT_GITHUB_API_URL": emu.url, "SPROUT_DATABASE_URL": f"sqlite:///{db}"}
    sprout = Path(sys.executable).parent / "sprout"
    proc = subprocess.Popen([str(sprout), "bot", "serve", "--port", str(port), "--no-retrain",
                             "--log-level", "error"], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url + "/healthz", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("bot did not start")


def start_inline_baseline(emu: Emulator) -> tuple[uvicorn.Server, str]:
    """The baseline: verify, then validate and report to GitHub before answering."""
    from bot.github import GitHub
    from bot.settings import Settings
    from bot.signature import SignatureError, verify
    from bot.validation import run_validation

    settings = Settings(webhook_secret=SECRET, github_token="ghp_bench", api_url=emu.url)
    github = GitHub(settings, seconds_between_writes=None)  # generous: no write pacing
    app = FastAPI()

    @app.post("/webhook")
    async def hook(request: Request):
        body = await request.body()
        try:
            verify(body, request.headers.get("x-hub-signature-256"), SECRET)
        except SignatureError:
            return JSONResponse({}, 401)
        p = json.loads(body)
        pr = p["pull_request"]
        try:
            await asyncio.to_thread(run_validation, github.client(None), REPO, pr["number"], pr["head"]["sha"])
        except Exception as e:  # GitHub trouble becomes the sender's problem: what we avoid
            return JSONResponse({"error": str(e)}, 500)
        return JSONResponse({}, 200)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}"


def time_50_leaf_pr(emu: Emulator, url: str, store_db: Path) -> float:
    files = {}
    for i in range(50):
        d = f"compositional_skills/bench/leaf_{i:02d}"
        files[f"{d}/qna.yaml"] = SKILL
        files[f"{d}/attribution.txt"] = ATTRIBUTION
    emu.add_pull(REPO, 5000, "b" * 40, "f" * 40, {}, files)
    body = payload(5000, "f" * 40)
    start = time.perf_counter()
    httpx.post(url + "/webhook", content=body, headers={
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "pr-50", "X-Hub-Signature-256": sign(body, SECRET)})
    while True:
        # App mode completes a check run; token mode (used here) sets a final commit status
        runs = [r for r in emu.check_runs(REPO) if r["head_sha"] == "f" * 40 and r["status"] == "completed"]
        runs += [s for s in emu.statuses(REPO, "f" * 40) if s["state"] != "pending"]
        if runs:
            return time.perf_counter() - start
        if time.perf_counter() - start > 300:
            raise RuntimeError("50-leaf PR did not complete")
        time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="deliveries per second (default 200)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="3 seconds of load")
    args = ap.parse_args()
    global REAL_PAYLOAD
    from _shared import shared
    REAL_PAYLOAD = shared("github/payloads/pull_request.opened.cogni_real.json", "a real pull_request delivery",
                          "sending a minimal payload of the same event instead")
    seconds = 3.0 if args.quick else args.seconds
    with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
        emu.add_repo(REPO)
        bodies = []
        for n in range(1, 21):  # PRs touching no leaf: the worker answers each with a neutral check
            sha = f"{n:040x}"
            emu.add_pull(REPO, n, "b" * 40, sha, {}, {"README.md": f"v{n}"})
            bodies.append(payload(n, sha))
        proc, url = start_bot(emu, Path(tmp) / "pr50.db")  # an idle bot: nothing queued ahead
        try:
            pr50 = time_50_leaf_pr(emu, url, Path(tmp) / "pr50.db")
        finally:
            proc.terminate()
            proc.wait(10)
        proc, url = start_bot(emu, Path(tmp) / "bot.db")
        try:
            lat, tput, errors = asyncio.run(drive(url, args.rate, seconds, bodies))
        finally:
            proc.terminate()
            proc.wait(10)
        server, base_url = start_inline_baseline(emu)
        b_lat, b_tput, b_errors = asyncio.run(drive(base_url, args.rate, min(seconds, 2.0), bodies))
        server.should_exit = True
        time.sleep(1)
    ours_p99, base_p99 = pct(lat, 99) * 1000, pct(b_lat, 99) * 1000
    print(f"{'webhook intake':<40}{'sent/s':>8}{'done/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    print(f"{'sprout (store, 202, worker)':<40}{args.rate:>8.0f}{tput:>8.0f}{pct(lat, 50) * 1000:>9.1f}{ours_p99:>9.1f}{errors:>8}")
    print(f"{'baseline (work in the request path)':<40}{args.rate:>8.0f}{b_tput:>8.0f}{pct(b_lat, 50) * 1000:>9.1f}{base_p99:>9.1f}{b_errors:>8}")
    from _shared import goal
    print(f"ratio (baseline p99 / sprout p99): {base_p99 / ours_p99:.1f}x"
          " (baseline: 2 s of load, 30 s client timeout; errors are timeouts and 5xx)")
    print(goal(f"p99 at {args.rate:.0f}/s", round(ours_p99, 1), 25, higher_is_better=False, unit=" ms"))
    print(f"50-leaf PR: 'opened' delivery -> completed check run: {pr50:.2f} s "
          "(GitHub write pacing 0.75 s between writes included)")
    print(json.dumps({"bench": "webhook", "ratio": round(base_p99 / ours_p99, 2), "rate": args.rate,
                      "p50_ms": round(pct(lat, 50) * 1000, 2), "p99_ms": round(ours_p99, 2),
                      "throughput": round(tput, 1), "errors": errors, "baseline_p99_ms": round(base_p99, 2),
                      "pr50_seconds": round(pr50, 2)}))


if __name__ == "__main__":
    main()
