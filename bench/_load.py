"""Open-loop load generator for bench/webhook.py, run as its own process (so its CPU is not the
bot's or the emulator's GIL).

    python bench/_load.py SPEC.json OUT.json

SPEC: {"host", "port", "rate", "seconds", "secret", "bodies": [str, ...], "event"}.
Request i is due at start + i/rate; its latency runs from when it was due (not from when it went
out), so a stalled server cannot hide its queue by slowing the sender (coordinated omission).
Plain HTTP/1.1 over a pool of keep-alive connections on asyncio streams: a few microseconds per
request, where an HTTP client library would spend a millisecond of the machine's 2 cores.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
import uuid


async def drive(spec: dict) -> dict:
    host, port, rate, seconds = spec["host"], spec["port"], spec["rate"], spec["seconds"]
    secret = spec["secret"].encode()
    bodies = [b.encode() for b in spec["bodies"]]
    signed = [(b, "sha256=" + hmac.new(secret, b, hashlib.sha256).hexdigest()) for b in bodies]
    event = spec.get("event", "pull_request")
    n = int(rate * seconds)
    latencies: list[float] = [0.0] * n
    outcome: list[int] = [0] * n  # HTTP status, or 0 for a connection error
    ids = [str(uuid.uuid4()) for _ in range(n)]
    duplicates = 0
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    failures: dict[str, int] = {}

    def take():
        # Like any HTTP client's pool: never reuse a connection the server may be closing (uvicorn
        # drops keep-alive connections idle for 5 s), or a POST goes out on a dead socket.
        now = time.perf_counter()
        while idle:
            reader, writer, since = idle.pop()
            if now - since < 3.0 and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def one(i: int, due: float) -> None:
        nonlocal duplicates
        body, sig = signed[i % len(signed)]
        head = (f"POST /webhook HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {ids[i]}\r\nX-Hub-Signature-256: {sig}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        conn = take()
        try:
            if conn is None:
                conn = await asyncio.open_connection(host, port)
            reader, writer = conn
            writer.write(head + body)
            status_line = await reader.readuntil(b"\r\n")
            length = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                if line == b"\r\n":
                    break
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            payload = await reader.readexactly(length)
            latencies[i] = time.perf_counter() - due
            outcome[i] = int(status_line.split()[1])
            if outcome[i] == 202 and b'"duplicate":true' in payload.replace(b" ", b""):
                duplicates += 1
            idle.append((reader, writer, time.perf_counter()))
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
            latencies[i] = time.perf_counter() - due
            failures[type(e).__name__] = failures.get(type(e).__name__, 0) + 1
            if conn is not None:
                conn[1].close()

    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    send_end = time.perf_counter()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    for _, w, _ in idle:
        w.close()
    acked = [ids[i] for i in range(n) if outcome[i] in (200, 202)]
    return {"sent": n, "wall": wall, "send_lag": send_end - (start + (n - 1) / rate) if n else 0.0,
            "latencies_ms": [x * 1000 for x in latencies], "acked": acked, "duplicates": duplicates,
            "statuses": {str(c): outcome.count(c) for c in set(outcome)}, "failures": failures}


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    try:
        import uvloop
        result = uvloop.run(drive(spec))
    except ImportError:
        result = asyncio.run(drive(spec))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
