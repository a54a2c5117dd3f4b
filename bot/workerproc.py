"""The worker as its own process, so the intake process only verifies, stores and answers.

`sprout bot serve` starts it (``python -m bot.workerproc``) and restarts it if it dies. Both
processes share the SQLite store: the intake writes deliveries durably, the worker claims them
under a lease. The worker runs at a lower CPU priority (nice +10): acknowledging GitHub within
its timeout comes first, and the worker uses whatever the intake leaves, which under a burst is
nearly everything. It reads the same settings from the same environment; it dies with its parent (a kill -9 of the
intake included), and an unfinished delivery's lease passes to the next worker.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)
STATS_EVERY = 2.0


def snapshot(pool, github) -> dict:
    """Counters for /metrics, summed over this process's worker threads."""
    counts = [0] * 11
    total, n = 0.0, 0
    for w in pool:
        with w.times.lock:
            counts = [a + b for a, b in zip(counts, w.times.counts)]
            total += w.times.total
            n += w.times.n
    with github.stats.lock:
        calls = [[name, outcome, c] for (name, outcome), c in github.stats.calls.items()]
    return {"times": {"counts": counts, "total": total, "n": n},
            "retries": sum(w.retries for w in pool), "github_calls": calls}


def die_with_parent(parent: int) -> None:
    """The kernel kills this process (SIGKILL) when the intake dies, as if the whole bot had been
    killed: no cleanup, so a Ray head this worker started outlives it for the next bot to adopt
    (a clean stop of the bot still stops it). Linux only; elsewhere the stats loop polls."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def run(threads: int, retrain: bool, recover: bool | None, nice: int) -> int:
    from .context import Context
    from .github import GitHub
    from .handlers import router
    from .recovery import start_recovery
    from .settings import Settings, SettingsError
    from .store import Store
    from .worker import Worker

    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"sprout worker: {e}", file=sys.stderr)
        return 2
    if nice:
        try:
            os.nice(nice)
        except OSError as e:
            log.warning("could not lower the worker's priority: %s", e)
    parent = os.getppid()
    die_with_parent(parent)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    store = Store(settings.database_path, durable=False)
    github = GitHub(settings)
    dispatcher = None
    if retrain:
        from .dispatch import Dispatcher
        dispatcher = Dispatcher.from_settings(settings, store=store, github=github)
    ctx = Context(settings, github, store, dispatcher)
    pool = [Worker(ctx, router) for _ in range(threads)]
    for w in pool:
        w.start()
    if dispatcher is not None:
        dispatcher.start()
    if recover if recover is not None else settings.app_mode:
        start_recovery(github, store, stop, settings.recover_interval)
    name = f"worker-process-{os.getpid()}"
    try:
        while not stop.wait(STATS_EVERY):
            if os.getppid() != parent:  # the intake died and no signal came: stop as it did
                log.warning("the intake process is gone; the worker stops")
                os._exit(1)
            try:
                store.put_worker_stats("worker-process", {**snapshot(pool, github), "name": name})
            except Exception as e:  # a busy store: the next round writes them
                log.debug("worker stats: %s", e)
    finally:
        for w in pool:
            w.stop()
        if dispatcher is not None:
            dispatcher.stop()
    return 0


class WorkerProcess:
    """The intake's handle on its worker process: start, restart on death (with backoff), stop."""

    def __init__(self, threads: int = 1, retrain: bool = True, recover: bool | None = None,
                 nice: int = 10, log_level: str = "warning"):
        self.argv = [sys.executable, "-m", "bot.workerproc", "--threads", str(threads),
                     "--nice", str(nice), "--log-level", log_level]
        if not retrain:
            self.argv.append("--no-retrain")
        if recover is not None:
            self.argv.append("--recover" if recover else "--no-recover")
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None

    def start(self) -> "WorkerProcess":
        self.proc = subprocess.Popen(self.argv)
        self._watch = threading.Thread(target=self._supervise, name="sprout-worker-supervisor", daemon=True)
        self._watch.start()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _supervise(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            started = time.monotonic()
            code = self.proc.wait()
            if self._stop.is_set():
                return
            if time.monotonic() - started > 60:
                delay = 1.0  # it ran a good while: a fresh failure, not a crash loop
            log.error("the worker process exited with %s; restarting it in %.0f s", code, delay)
            if self._stop.wait(delay):
                return
            delay = min(60.0, delay * 2)
            self.restarts += 1
            self.proc = subprocess.Popen(self.argv)

    def stop(self, timeout: float = 15) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bot.workerproc",
                                 description="The Sprout bot's worker process (started by `sprout bot serve`).")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-retrain", action="store_true")
    ap.add_argument("--recover", dest="recover", action="store_true", default=None)
    ap.add_argument("--no-recover", dest="recover", action="store_false")
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    return run(args.threads, not args.no_retrain, args.recover, args.nice)


if __name__ == "__main__":
    sys.exit(main())
