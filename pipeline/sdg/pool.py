"""One pool of chat-completion requests per teacher endpoint, shared by every leaf of a run: a
run-wide in-flight limit, a window that halves on 429/503 (AIMD, honouring ``Retry-After``),
and what each request cost (requests, retries, errors, tokens from ``usage``, seconds).

Asynchronous (one event loop on a background thread, httpx.AsyncClient): bench/sdg.py measured it
against a thread per request; callers stay synchronous and get ``concurrent.futures.Future``s.
Every teacher request passes through ``RequestPool.submit``: that is where a budget check sits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields


class PoolError(Exception):
    """A request failed for good (refused, or still failing after its retries)."""


@dataclass
class Cost:
    """What requests cost the endpoint. Adds up per leaf, per stage and per run."""

    requests: int = 0
    """Requests answered (each may have taken several attempts)."""
    retries: int = 0
    """Extra attempts: throttled (429/503) and failed (5xx, network, unreadable) ones."""
    throttled: int = 0
    """Attempts answered 429 or 503 (the window shrank)."""
    errors: int = 0
    """Requests that failed for good."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    """Wall time: summed over requests here; a stage or leaf replaces it by its own wall time."""

    def add(self, other: "Cost") -> "Cost":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def minus(self, other: "Cost") -> "Cost":
        return Cost(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def as_dict(self) -> dict:
        d = asdict(self)
        d["seconds"] = round(d["seconds"], 3)
        return d

    @classmethod
    def of(cls, d: dict | None) -> "Cost":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})


@dataclass
class Completion:
    """One request's answer: ``n`` texts, why each ended, and its cost."""

    texts: list[str]
    finish: list[str | None]
    cost: Cost = field(default_factory=Cost)


class Window:
    """Additive increase, multiplicative decrease. One cut per flight: the throttled answers to
    requests sent before the last cut do not cut again (a burst of 429s is one signal)."""

    def __init__(self, limit: int, minimum: int = 1):
        self.limit, self.minimum = limit, minimum
        self.size = float(limit)
        self.epoch = 0

    def grow(self) -> None:
        self.size = min(self.limit, self.size + 1.0 / self.size)

    def cut(self, epoch: int) -> None:
        if epoch == self.epoch:
            self.size = max(self.minimum, self.size / 2)
            self.epoch += 1

    @property
    def slots(self) -> int:
        return int(self.size)


def retry_after(value: str | None, cap: float = 60.0) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), capped."""
    if not value:
        return None
    try:
        return min(cap, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        return min(cap, max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time()))
    except (TypeError, ValueError):
        return None


class RequestPool:
    """``submit(body)`` posts to ``url`` with at most ``window.slots`` requests in flight."""

    def __init__(self, url: str, headers: dict | None = None, limit: int = 128, timeout: float = 600.0,
                 retries: int = 4, throttle_patience: float = 900.0, progress: bool | None = None):
        """``retries``: extra attempts for 5xx/network errors; throttled attempts (429/503) are retried
        until ``throttle_patience`` seconds have passed for that request. ``progress``: a bar on stderr
        (None: when stderr is a terminal)."""
        self.url, self.headers, self.timeout = url, dict(headers or {}), timeout
        self.retries, self.throttle_patience = retries, throttle_patience
        self.window = Window(limit)
        self.cost = Cost()
        self.in_flight = self.submitted = self.done = 0
        self._progress = progress
        self._bar = None
        self._started = None
        self._pause_until = 0.0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client = None
        self._cond: asyncio.Condition | None = None

    # -- the event loop, started on first use ------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main():
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()
                self._thread = threading.Thread(target=main, name="sprout-teacher-pool", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
        return self._loop

    async def _setup(self):
        if self._client is None:
            import httpx
            self._client = httpx.AsyncClient(
                timeout=self.timeout, headers=self.headers,
                limits=httpx.Limits(max_connections=self.window.limit, max_keepalive_connections=self.window.limit))
            self._cond = asyncio.Condition()

    def submit(self, body: dict) -> concurrent.futures.Future:
        """Queue one request; the future gives a ``Completion`` or raises ``PoolError``."""
        loop = self._ensure_loop()
        with self._lock:
            self.submitted += 1
            if self._started is None:
                self._started = time.time()
        self._tick()
        return asyncio.run_coroutine_threadsafe(self._request(body), loop)

    def close(self) -> None:
        """Close the connections, stop the loop and join its thread (a long-lived process such as
        the bot's worker runs many runs: none may leave a thread behind). A later submit starts anew."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = None
        if loop is None:
            return
        if self._client is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result(10)
            except Exception:  # closing must not fail a finished run
                pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()
        self._client = self._thread = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- one request ---------------------------------------------------------------------------
    async def _acquire(self) -> int:
        async with self._cond:
            while self.in_flight >= self.window.slots or time.time() < self._pause_until:
                wait = self._pause_until - time.time()
                try:
                    await asyncio.wait_for(self._cond.wait(), timeout=wait if wait > 0 else None)
                except asyncio.TimeoutError:
                    pass
            self.in_flight += 1
            return self.window.epoch

    async def _release(self) -> None:
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    async def _request(self, body: dict) -> Completion:
        import httpx
        await self._setup()
        cost = Cost()
        first = time.time()
        failures, delay = 0, 1.0
        while True:
            epoch = await self._acquire()
            wait = 0.0
            try:
                try:
                    r = await self._client.post(self.url, json=body)
                except httpx.HTTPError as e:
                    status, problem, r = None, f"{type(e).__name__}: {e}", None
                else:
                    status, problem = r.status_code, None
            finally:
                await self._release()
            if status in (429, 503):  # the server is full: shrink the window, wait as told
                cost.throttled += 1
                self.window.cut(epoch)
                told = retry_after(r.headers.get("retry-after"))
                if told is not None:  # the whole pool waits: every request would get the same answer
                    self._pause_until = max(self._pause_until, time.time() + told)
                wait = told if told is not None else delay * (0.5 + random.random())
                if time.time() - first + wait > self.throttle_patience:
                    return self._fail(cost, first, f"throttled ({status}) for {self.throttle_patience:.0f} s")
                delay = min(delay * 2, 30)
            elif status is not None and 400 <= status < 500:
                return self._fail(cost, first, f"teacher refused the request ({status}): {r.text[:300]}")
            else:
                if status is not None and status < 400:
                    try:
                        done = self._parse(r.json(), body.get("n", 1), body.get("max_tokens"))
                    except (ValueError, KeyError, TypeError, AttributeError):
                        problem = "the answer is not an OpenAI chat completion"
                    else:
                        done.cost.retries = cost.retries
                        done.cost.throttled = cost.throttled
                        done.cost.seconds = time.time() - first
                        self.window.grow()
                        self._finish(done.cost)
                        return done
                else:
                    problem = problem or f"teacher answered {status}"
                failures += 1
                if failures > self.retries:
                    return self._fail(cost, first, f"chat completion failed after {failures} attempts: {problem}")
                wait = delay * (0.5 + random.random())
                delay = min(delay * 2, 30)
            cost.retries += 1
            await asyncio.sleep(wait)

    @staticmethod
    def _parse(data: dict, n: int, max_tokens: int | None = None) -> Completion:
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        texts = [((c.get("message") or {}).get("content") or "") for c in choices]
        finish = [c.get("finish_reason") for c in choices]
        usage = data.get("usage") or {}
        cost = Cost(requests=1, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    completion_tokens=int(usage.get("completion_tokens") or 0))
        if max_tokens and n == 1 and cost.completion_tokens >= max_tokens and finish[:1] != ["length"]:
            finish = ["length"]  # a server that always says "stop": the usage shows the cut
        # a short answer list yields empty completions, counted as such downstream
        return Completion((texts + [""] * n)[:n], (finish + [None] * n)[:n], cost)

    def _fail(self, cost: Cost, first: float, message: str):
        cost.errors, cost.seconds = 1, time.time() - first
        self._finish(cost)
        raise PoolError(message)

    def _finish(self, cost: Cost) -> None:
        with self._lock:
            self.cost.add(cost)
            self.done += 1
        self._tick()

    # -- the progress bar ----------------------------------------------------------------------
    def _tick(self) -> None:
        if self._progress is False:
            return
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(total=0, desc="teacher", unit="req", file=sys.stderr, dynamic_ncols=True,
                             disable=None if self._progress is None else False)
        bar = self._bar
        if bar.disable:
            return
        with self._lock:
            bar.total = self.submitted
            elapsed = max(1e-6, time.time() - (self._started or time.time()))
            bar.set_postfix_str(f"in flight {self.in_flight}/{self.window.slots}, "
                                f"{self.cost.completion_tokens / elapsed:,.0f} tok/s", refresh=False)
            if self.done > bar.n:
                bar.update(self.done - bar.n)  # tqdm's rate, hence its ETA, follows update()
            else:
                bar.refresh()

    def stats(self) -> dict:
        """Counters for a summary line: requests done/submitted, in flight, window, tokens/s."""
        elapsed = max(1e-6, time.time() - (self._started or time.time()))
        return {"submitted": self.submitted, "done": self.done, "in_flight": self.in_flight,
                "window": self.window.slots, "tokens_per_s": round(self.cost.completion_tokens / elapsed, 1),
                **self.cost.as_dict()}
