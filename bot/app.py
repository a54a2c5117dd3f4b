"""The web side: verify, store, acknowledge. All work happens in the worker."""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import sqlite3
import threading
import time
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from pipeline.mdescape import without_credentials

from .context import Context
from .github import GitHub
from .handlers import router as default_router
from .router import Router
from .settings import Settings
from .signature import SignatureError, verify
from .store import GroupCommit, Store
from .worker import HandlerTimes, Worker

log = logging.getLogger(__name__)
MAX_PAYLOAD = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[int, int] = {}

    def add(self, code: int) -> None:
        with self.lock:
            self.requests[code] = self.requests.get(code, 0) + 1


def create_app(settings: Settings, *, store: Store | None = None, github: GitHub | None = None,
               router: Router | None = None, dispatcher=None, workers: int = 1,
               recover: bool | None = None, worker_process=None) -> FastAPI:
    """The intake app. ``workers`` worker threads run in this process (tests, small installs);
    with ``worker_process`` (a ``bot.workerproc.WorkerProcess``, what `sprout bot serve` uses)
    the work runs in its own process and this one only verifies, stores and answers."""
    store = store or Store(settings.database_path)
    github = github or GitHub(settings)
    ctx = Context(settings, github, store, dispatcher)
    pool = [Worker(ctx, router or default_router) for _ in range(workers)]
    counters = _Counters()
    stop = threading.Event()

    writer: GroupCommit | None = None

    async def store_delivery(*row) -> bool:
        if writer is None:  # an in-memory store has one connection: no separate writer
            return await anyio.to_thread.run_sync(store.add_delivery, *row)
        return await asyncio.wrap_future(writer.submit(*row))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal writer
        if str(store.path) != ":memory:":
            writer = GroupCommit(store.path)
        for w in pool:
            w.start()
        if dispatcher is not None:
            dispatcher.start()
        if worker_process is not None:
            worker_process.start()  # it runs its own recovery scan
        elif recover if recover is not None else settings.app_mode:
            from .recovery import start_recovery
            start_recovery(github, store, stop, settings.recover_interval)
        yield
        stop.set()
        if worker_process is not None:
            worker_process.stop()
        for w in pool:
            w.stop()
        if dispatcher is not None:
            dispatcher.stop()
        if writer is not None:
            writer.close()

    app = FastAPI(title="Sprout bot", lifespan=lifespan)
    app.state.ctx, app.state.workers = ctx, pool

    def answer(code: int, body: dict) -> JSONResponse:
        counters.add(code)
        return JSONResponse(body, status_code=code)

    @app.post("/webhook")
    async def webhook(request: Request):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_PAYLOAD:
            return answer(413, {"error": "payload over GitHub's 25 MB limit"})
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_PAYLOAD:
                return answer(413, {"error": "payload over GitHub's 25 MB limit"})
            chunks.append(chunk)
        body = b"".join(chunks)
        try:  # before anything else reads the body: the HMAC covers the raw bytes
            verify(body, request.headers.get("x-hub-signature-256"), settings.webhook_secret)
        except SignatureError as e:
            return answer(401, {"error": str(e)})
        event = request.headers.get("x-github-event")
        delivery = request.headers.get("x-github-delivery")
        if not event or not delivery:
            return answer(400, {"error": "missing X-GitHub-Event or X-GitHub-Delivery"})
        try:
            payload = json.loads(body)
        except ValueError as e:
            return answer(400, {"error": f"body is not JSON: {e}"})
        if not isinstance(payload, dict):
            return answer(400, {"error": "body is not a JSON object"})
        if event == "ping":
            return answer(200, {"ok": True, "zen": payload.get("zen")})
        action = payload.get("action") if isinstance(payload.get("action"), str) else None
        try:
            new = await store_delivery(delivery, event, action, body, request.headers.get("x-github-hook-id"))
        except Exception as e:  # not stored, so not acknowledged: GitHub shows it failed and it can be redelivered
            log.error("delivery %s not stored: %s", delivery, e)
            return answer(503, {"error": "the delivery could not be stored; redeliver it"})
        return answer(202, {"delivery": delivery, "duplicate": not new})

    @app.get("/healthz")
    def healthz():
        try:
            counts = store.counts()
        except Exception as e:
            return JSONResponse({"ok": False, "error": str(e)}, 503)
        alive = all(w._thread is None or w._thread.is_alive() for w in pool)
        if worker_process is not None:
            alive = alive and worker_process.alive()
        return JSONResponse({"ok": alive, "deliveries": counts}, 200 if alive else 503)

    @app.get("/readyz")
    def readyz():
        """Ready for deliveries (a readiness probe): the store opens afresh and reads (a volume that
        went away shows here, not at the next 202), the intake's committer runs, and some worker
        is up to handle what is stored. /healthz stays the cheap liveness answer."""
        problems = []
        if str(store.path) != ":memory:":
            try:
                db = sqlite3.connect(f"{store.path.resolve().as_uri()}?mode=rw", uri=True, timeout=5)
                try:
                    db.execute("SELECT 1 FROM deliveries LIMIT 1").fetchall()
                finally:
                    db.close()
            except sqlite3.Error as e:
                problems.append(f"store {store.path}: {e}")
            if writer is None:
                problems.append("intake not started")
        threads = [w for w in pool if w._thread is not None and w._thread.is_alive()]
        if worker_process is not None:
            if not worker_process.alive():
                problems.append("worker process not running")
        elif not threads:
            problems.append("no worker running")
        return JSONResponse({"ready": not problems, "problems": problems}, 503 if problems else 200)

    def work_stats() -> dict:
        """Handler times, retries and GitHub calls: from this process's worker threads, plus what
        the worker process last wrote to the store."""
        from .workerproc import snapshot
        parts = [snapshot(pool, github)]
        if worker_process is not None:
            parts += [row["stats"] for row in store.worker_stats()]
        counts, total, n, retries, calls = [0] * 11, 0.0, 0, 0, {}
        for part in parts:
            counts = [a + b for a, b in zip(counts, part["times"]["counts"])]
            total += part["times"]["total"]
            n += part["times"]["n"]
            retries += part["retries"]
            for name, outcome, c in part["github_calls"]:
                calls[(name, outcome)] = calls.get((name, outcome), 0) + c
        return {"counts": counts, "total": total, "n": n, "retries": retries, "calls": calls}

    def private(request: Request) -> PlainTextResponse | None:
        """The status page and /metrics name repositories (maybe private): a bearer token when
        one is set, else loopback clients only."""
        if settings.status_token:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if hmac.compare_digest(given.encode(), settings.status_token.encode()):
                return None
            return PlainTextResponse("a bearer token is required (SPROUT_STATUS_TOKEN)\n", 401,
                                     headers={"WWW-Authenticate": "Bearer"})
        host = request.client.host if request.client else ""
        # A request a proxy relayed is not a local one, whatever address it arrives from (a
        # same-host proxy is 127.0.0.1 too); without SPROUT_FORWARDED_ALLOW_IPS uvicorn believes
        # no forwarding header, and with it, the address it sets is the one checked here.
        relayed = not settings.forwarded_allow_ips and any(
            h in request.headers for h in ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host"))
        if not relayed and (host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")):
            return None
        return PlainTextResponse("the status page answers loopback only; set SPROUT_STATUS_TOKEN "
                                 "to reach it from elsewhere\n", 403)

    @app.get("/metrics")
    def metrics(request: Request):
        denied = private(request)
        if denied:
            return denied
        lines = ["# HELP sprout_deliveries Deliveries stored, by event and status.",
                 "# TYPE sprout_deliveries gauge"]
        for event, status, n in store.counts_by_event():
            lines.append(f'sprout_deliveries{{event="{event}",status="{status}"}} {n}')
        counts = store.counts()
        lines += ["# HELP sprout_queue_depth Deliveries pending or in progress.",
                  "# TYPE sprout_queue_depth gauge",
                  f"sprout_queue_depth {counts.get('pending', 0) + counts.get('running', 0)}",
                  "# HELP sprout_failed_deliveries Deliveries parked as failed.",
                  "# TYPE sprout_failed_deliveries gauge",
                  f"sprout_failed_deliveries {counts.get('failed', 0)}",
                  "# HELP sprout_oldest_pending_seconds Age of the oldest unfinished delivery.",
                  "# TYPE sprout_oldest_pending_seconds gauge",
                  f"sprout_oldest_pending_seconds {store.oldest_pending_age():.3f}",
                  "# HELP sprout_webhook_requests_total Webhook requests by HTTP status.",
                  "# TYPE sprout_webhook_requests_total counter"]
        for code, n in sorted(counters.requests.items()):
            lines.append(f'sprout_webhook_requests_total{{code="{code}"}} {n}')
        lines += ["# HELP sprout_handler_seconds Time to handle one delivery.",
                  "# TYPE sprout_handler_seconds histogram"]
        stats = work_stats()
        running = 0
        for b, c in zip(HandlerTimes.buckets, stats["counts"]):
            running += c
            lines.append(f'sprout_handler_seconds_bucket{{le="{b}"}} {running}')
        lines += [f'sprout_handler_seconds_bucket{{le="+Inf"}} {stats["n"]}',
                  f"sprout_handler_seconds_sum {stats['total']:.6f}", f"sprout_handler_seconds_count {stats['n']}",
                  "# HELP sprout_github_calls_total GitHub API calls by call and outcome.",
                  "# TYPE sprout_github_calls_total counter"]
        for (name, outcome), c in sorted(stats["calls"].items()):
            lines.append(f'sprout_github_calls_total{{call="{name}",outcome="{outcome}"}} {c}')
        lines += ["# HELP sprout_delivery_retries_total Deliveries rescheduled after a transient failure.",
                  "# TYPE sprout_delivery_retries_total counter",
                  f"sprout_delivery_retries_total {stats['retries']}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse)
    def status_page(request: Request):
        denied = private(request)
        if denied:
            return denied
        return HTMLResponse(render_status(store, settings))

    return app


def render_status(store: Store, settings=None) -> str:
    def when(t):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else ""

    def web(repo: str) -> str:  # the repository's web address, beside its clone URL (no credentials)
        url = settings.clone_url(repo) if settings else f"https://github.com/{repo}.git"
        return html.escape(without_credentials(url).removesuffix(".git"), quote=True)

    def job_row(j: dict) -> str:
        base = web(j["repo"])
        pr = f"<a href='{base}/pull/{j['pr']}'>#{j['pr']}</a>" if j["pr"] else ""
        sha = html.escape(j["sha"])
        return (f"<tr class='{html.escape(j['status'])}'><td>{j['id']}</td><td>{html.escape(j['kind'])}</td>"
                f"<td><a href='{base}'>{html.escape(j['repo'])}</a></td><td>{pr}</td>"
                f"<td><a href='{base}/commit/{sha}'><code>{sha[:7]}</code></a></td>"
                f"<td>{html.escape(j['status'])}</td><td>{html.escape(j.get('stage') or '')}</td>"
                f"<td>{html.escape(j.get('verdict') or '')}</td><td>{html.escape(j['ray_job_id'] or '')}</td>"
                f"<td>{when(j['updated_at'])}</td></tr>")
    rows = "".join(
        f"<tr class='{html.escape(d['status'])}'><td><code>{html.escape(d['id'])}</code></td>"
        f"<td>{html.escape(d['event'])}</td><td>{html.escape(d['action'] or '')}</td>"
        f"<td>{html.escape(d['status'])}</td><td>{d['attempts']}</td><td>{when(d['received_at'])}</td>"
        f"<td>{html.escape(d['last_error'] or '')}</td></tr>" for d in store.recent(50))
    jobs = "".join(job_row(j) for j in store.jobs(limit=50))
    counts = store.counts()
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no deliveries yet"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Sprout bot</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;font-size:.9rem}}
tr.failed td,tr.poison td,tr.lost td{{background:#fee}}tr.done td:nth-child(4){{color:#070}}</style></head><body>
<h1>Sprout bot</h1><p id="summary">Deliveries — {html.escape(summary)}</p>
<h2>Recent deliveries</h2><table id="deliveries"><tr><th>delivery</th><th>event</th><th>action</th>
<th>status</th><th>attempts</th><th>received (UTC)</th><th>last error</th></tr>{rows}</table>
<h2>Jobs: retrains, previews, prechecks</h2><table id="jobs"><tr><th>job</th><th>kind</th><th>repository</th>
<th>PR</th><th>commit</th><th>status</th><th>stage</th><th>verdict</th><th>Ray job</th><th>updated (UTC)</th></tr>
{jobs}</table></body></html>"""
