"""OpenAI-compatible endpoints (/v1/models, /v1/chat/completions, /v1/completions, streaming or
not) over a local Hugging Face model or the registry's newest accepted one, plus /healthz and
/metrics. Concurrent requests are generated together (batching.py); the conversation format is
the model's own (its chat template carries the system prompt it was trained with)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from .deployment import Deployment, Slot, load
from .engine import Row


def _error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status)


class BadRequest(Exception):
    def __init__(self, message: str, code: str = "invalid_value", status: int = 400):
        super().__init__(message)
        self.code, self.status = code, status


@dataclass
class Sampling:
    n: int
    max_tokens: int | None
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    stream: bool
    include_usage: bool


def _number(data: dict, key: str, kind, default):
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise BadRequest(f"{key} must be a{'n integer' if kind is int else ' number'}")
    return kind(value)


def sampling(data: dict) -> Sampling:
    """The OpenAI sampling fields, checked; OpenAI's defaults (temperature 1, n 1)."""
    n = _number(data, "n", int, 1)
    max_tokens = _number(data, "max_completion_tokens", int, None)
    max_tokens = _number(data, "max_tokens", int, max_tokens)
    temperature = _number(data, "temperature", float, 1.0)
    top_p = _number(data, "top_p", float, 1.0)
    seed = _number(data, "seed", int, None)
    if not 1 <= n <= 16:
        raise BadRequest("n must be between 1 and 16")
    if max_tokens is not None and not 1 <= max_tokens <= 32768:
        raise BadRequest("max_tokens must be between 1 and 32768")
    if not 0 <= temperature <= 2:
        raise BadRequest("temperature must be between 0 and 2")
    if not 0 < top_p <= 1:
        raise BadRequest("top_p must be in (0, 1]")
    stop = data.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest("stop must be a non-empty string or a list of up to 4 of them")
    if data.get("logprobs") or data.get("echo") or data.get("best_of") not in (None, 1):
        raise BadRequest("logprobs, echo and best_of are not supported by this server", "unsupported")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be true or false")
    options = data.get("stream_options") or {}
    return Sampling(n, max_tokens, temperature, top_p, tuple(stop), seed, stream,
                    bool(isinstance(options, dict) and options.get("include_usage")))


def _messages(data: dict) -> list[dict]:
    """Chat messages; OpenAI's content parts ([{"type": "text", "text": ...}]) become text."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list of {role, content}", "invalid_messages")
    out = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not m.get("role"):
            raise BadRequest("messages must be a non-empty list of {role, content}", "invalid_messages")
        content = m.get("content")
        if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                             and isinstance(p.get("text"), str) for p in content):
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise BadRequest("message content must be text", "invalid_messages")
        out.append({"role": m["role"], "content": content})
    return out


class Metrics:
    def __init__(self):
        self.requests: dict[tuple[str, int], int] = {}
        self.completion_tokens = 0
        self.prompt_tokens = 0

    def count(self, endpoint: str, status: int) -> None:
        self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1


def _label(value) -> str:
    return str(value if value is not None else "").replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def create_app(model_dir: Path | None = None, name: str | None = None, batch_size: int = 16,
               follow: str | None = None, wait_ms: float = 5.0, interval: float = 2.0,
               default_max_tokens: int = 256, api_key: str | None = None, log=None) -> FastAPI:
    """Serve ``model_dir``, or with ``follow`` (a runs root) the registry's newest accepted model,
    switching when a run is accepted. ``batch_size``: most rows generated together; ``api_key``:
    required as ``Authorization: Bearer KEY`` on /v1 (health and metrics stay open)."""
    if (model_dir is None) == (follow is None):
        raise ValueError("serve either a model folder or --follow a registry")

    def make(path: Path, info: dict) -> Deployment:
        return load(path, info, max_batch=batch_size, wait_ms=wait_ms)

    slot = Slot()
    follower = None
    if follow is not None:
        from .follow import Follower
        follower = Follower(follow, slot, make, interval=interval, **({"log": log} if log else {}))
        follower.check()  # the newest accepted model, before the first request (none yet: 503s)
        follower.start()
        served_name = name or "sprout"
    else:
        slot.switch(make(Path(model_dir), {}))
        served_name = name or Path(model_dir).resolve().name
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        if follower is not None:  # a stopped server stops loading models too
            follower.stop()

    app = FastAPI(title="Sprout model server", lifespan=lifespan)
    app.state.slot, app.state.follower = slot, follower
    metrics = Metrics()
    started = time.time()

    def model_card(d: Deployment) -> dict:
        card = {"id": served_name, "object": "model", "created": int(d.loaded_at), "owned_by": "sprout",
                "root": d.info.get("path"), "max_model_len": d.engine.context,
                "sprout": {k: d.info.get(k) for k in ("id", "taxonomy_sha", "run", "created", "path")}}
        return card

    def refused(request: Request) -> JSONResponse | None:
        if not api_key:
            return None
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            return None
        return _error(401, "a valid API key is required (Authorization: Bearer KEY)", "invalid_api_key")

    @app.get("/v1/models")
    def models(request: Request):
        if (denied := refused(request)) is not None:
            return denied
        d = slot.current
        return {"object": "list", "data": [model_card(d)] if d is not None else []}

    @app.get("/healthz")
    def healthz():
        d = slot.current
        body = {"status": "ok" if d is not None else "no model", "name": served_name,
                "model": {k: d.info.get(k) for k in ("id", "taxonomy_sha", "run", "path")} if d else None,
                "loaded_at": d.loaded_at if d else None, "switches": slot.switches,
                "follow": follow, "registry_checked": follower.last_check if follower else None,
                "registry_error": follower.last_error if follower else None,
                "failed_to_load": follower.failed if follower else {}}
        return JSONResponse(body, 200 if d is not None else 503)

    @app.get("/metrics")
    def prometheus():
        d = slot.current
        lines = ["# HELP sprout_serve_model_info The model being served (registry entry and taxonomy commit).",
                 "# TYPE sprout_serve_model_info gauge"]
        if d is not None:
            lines.append(f'sprout_serve_model_info{{id="{_label(d.id)}",taxonomy_sha="{_label(d.info.get("taxonomy_sha"))}",'
                         f'path="{_label(d.info.get("path"))}"}} 1')
        lines += ["# HELP sprout_serve_model_switches_total Times a newly accepted model replaced the served one.",
                  "# TYPE sprout_serve_model_switches_total counter", f"sprout_serve_model_switches_total {slot.switches}",
                  "# HELP sprout_serve_requests_total Requests answered, by endpoint and status.",
                  "# TYPE sprout_serve_requests_total counter"]
        lines += [f'sprout_serve_requests_total{{endpoint="{e}",status="{s}"}} {c}'
                  for (e, s), c in sorted(metrics.requests.items())]
        lines += ["# TYPE sprout_serve_prompt_tokens_total counter",
                  f"sprout_serve_prompt_tokens_total {metrics.prompt_tokens}",
                  "# TYPE sprout_serve_completion_tokens_total counter",
                  f"sprout_serve_completion_tokens_total {metrics.completion_tokens}"]
        if d is not None:
            lines += ["# HELP sprout_serve_batches_total Batches generated by the served model.",
                      "# TYPE sprout_serve_batches_total counter", f"sprout_serve_batches_total {d.scheduler.batches}",
                      "# TYPE sprout_serve_batch_rows_total counter", f"sprout_serve_batch_rows_total {d.scheduler.rows}",
                      "# TYPE sprout_serve_in_flight gauge", f"sprout_serve_in_flight {d.users}"]
        lines += ["# TYPE sprout_serve_uptime_seconds gauge", f"sprout_serve_uptime_seconds {time.time() - started:.1f}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def handle(request: Request, endpoint: str):
        if (denied := refused(request)) is not None:
            metrics.count(endpoint, 401)
            return denied
        try:
            data = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON", "invalid_json")
        if not isinstance(data, dict):
            return _error(400, "the body must be a JSON object", "invalid_json")
        try:
            params = sampling(data)
            chat = endpoint == "chat"
            source = _messages(data) if chat else data.get("prompt")
            if not chat and not isinstance(source, str):
                raise BadRequest("prompt must be a string", "invalid_prompt")
        except BadRequest as e:
            metrics.count(endpoint, e.status)
            return _error(e.status, str(e), e.code)
        d = slot.acquire()
        if d is None:
            metrics.count(endpoint, 503)
            return _error(503, "no accepted model in the registry yet", "no_model", "server_error")
        released = False

        def release():
            nonlocal released
            if not released:
                released = True
                slot.release(d)

        try:
            if data.get("model") not in (None, served_name, d.id):
                raise BadRequest(f"The model '{data.get('model')}' does not exist", "model_not_found", 404)
            try:
                prompt = d.engine.chat_prompt(source) if chat else d.engine.text_prompt(source)
            except Exception as e:  # a template that refuses the conversation (roles out of order, ...)
                if isinstance(e, BadRequest):
                    raise
                raise BadRequest(f"the chat template refused the conversation: {e}", "invalid_messages") from None
            room = d.engine.context - len(prompt)
            if room < 1 or (params.max_tokens or 0) > room:
                raise BadRequest(f"This model's maximum context length is {d.engine.context} tokens; the prompt "
                                 f"has {len(prompt)} and max_tokens asks {params.max_tokens or 1} more",
                                 "context_length_exceeded")
        except BadRequest as e:
            release()
            metrics.count(endpoint, e.status)
            return _error(e.status, str(e), e.code)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def notify(row: Row) -> None:  # the scheduler's thread: hand a snapshot to the event loop
            try:
                loop.call_soon_threadsafe(events.put_nowait, (row.index, row.safe, row.finish_reason, row.error))
            except RuntimeError:  # the event loop is gone (server shutting down): stop generating
                row.cancelled = True

        rows = []
        for i in range(params.n):
            rows.append(Row(prompt, params.max_tokens or min(default_max_tokens, room), params.temperature,
                            params.top_p, params.stop, None if params.seed is None else params.seed + i, notify,
                            index=i))
        d.scheduler.submit(rows)
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        head = {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": served_name, "system_fingerprint": f"sprout-{d.id}"}
        headers = {"x-sprout-model": d.id}

        def usage() -> dict:
            completion = sum(r.generated for r in rows)
            return {"prompt_tokens": len(prompt), "completion_tokens": completion,
                    "total_tokens": len(prompt) + completion}

        def account(status: int) -> None:
            metrics.count(endpoint, status)
            metrics.prompt_tokens += len(prompt)
            metrics.completion_tokens += sum(r.generated for r in rows)

        def finish_reason(r: Row) -> str:
            return "length" if r.finish_reason == "length" else "stop"

        if not params.stream:
            try:
                done = 0
                while done < len(rows):
                    _, _, reason, _ = await events.get()
                    done += reason is not None
            finally:
                for r in rows:
                    r.cancelled = r.finish_reason is None  # the client went away: stop generating
                release()
            failed = [r.error for r in rows if r.error]
            if failed:
                account(500)
                return _error(500, f"generation failed: {failed[0]}", "generation_failed", "server_error")
            choices = [{"index": r.index, "message": {"role": "assistant", "content": r.text}, "logprobs": None,
                        "finish_reason": finish_reason(r)} if chat else
                       {"index": r.index, "text": r.text, "logprobs": None, "finish_reason": finish_reason(r)}
                       for r in rows]
            account(200)
            return JSONResponse({**head, "choices": choices, "usage": usage()}, headers=headers)

        chunk_object = "chat.completion.chunk" if chat else "text_completion"

        def chunk(index: int, text: str | None, reason: str | None, first: bool = False) -> str:
            if chat:
                delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
                choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
            else:
                choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": reason}
            body = {**head, "object": chunk_object, "choices": [choice]}
            if params.include_usage:
                body["usage"] = None
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        async def stream():
            sent = [""] * len(rows)
            done = 0
            try:
                if chat:
                    for r in rows:
                        yield chunk(r.index, None, None, first=True)
                while done < len(rows):
                    index, safe, reason, error = await events.get()
                    if error:
                        account(500)
                        failure = {"message": f"generation failed: {error}", "type": "server_error",
                                   "code": "generation_failed"}
                        yield f"data: {json.dumps({'error': failure})}\n\n"
                        return
                    delta = safe[len(sent[index]):] if safe.startswith(sent[index]) else ""
                    if delta:
                        sent[index] += delta
                        yield chunk(index, delta, None)
                    if reason is not None:
                        done += 1
                        yield chunk(index, None, finish_reason(rows[index]))
                account(200)
                if params.include_usage:
                    yield f"data: {json.dumps({**head, 'object': chunk_object, 'choices': [], 'usage': usage()})}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                for r in rows:
                    r.cancelled = r.finish_reason is None
                release()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={**headers, "cache-control": "no-cache"})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await handle(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await handle(request, "completions")

    return app
