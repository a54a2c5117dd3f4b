"""OpenAI-compatible endpoints (/v1/models, /v1/chat/completions, /v1/completions) over a local
Hugging Face model, so the HTTP teacher is tested against a real server and people can chat
with the student they trained."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def _error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status)


def create_app(model_dir: Path, name: str | None = None, batch_size: int = 8) -> FastAPI:
    from ..sdg.teachers import GenParams, HFTeacher

    teacher = HFTeacher(model_dir, batch_size=batch_size)
    model_name = name or Path(model_dir).resolve().name
    lock = threading.Lock()  # one generate() at a time: the model is not thread-safe
    app = FastAPI(title="Sprout model server")
    created = int(time.time())

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                            "owned_by": "sprout"}]}

    async def body(request: Request):
        try:
            data = await request.json()
        except ValueError:
            return None, _error(400, "the body is not JSON", "invalid_json")
        if not isinstance(data, dict):
            return None, _error(400, "the body must be a JSON object", "invalid_json")
        if data.get("model") not in (None, model_name):
            return None, _error(404, f"The model '{data.get('model')}' does not exist", "model_not_found")
        return data, None

    def params(data: dict) -> tuple[GenParams, int] | JSONResponse:
        try:
            n = int(data.get("n", 1))
            p = GenParams(temperature=float(data.get("temperature", 0.7)),
                          max_tokens=int(data.get("max_tokens") or 256), seed=int(data.get("seed") or 0))
        except (TypeError, ValueError):
            return _error(400, "n, temperature, max_tokens and seed must be numbers", "invalid_value")
        if not 1 <= n <= 16 or not 1 <= p.max_tokens <= 4096:
            return _error(400, "n must be 1..16 and max_tokens 1..4096", "invalid_value")
        return p, n

    def usage(prompt_tokens: int, texts: list[str]) -> dict:
        completion = sum(len(teacher.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        data, err = await body(request)
        if err:
            return err
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in messages):
            return _error(400, "messages must be a non-empty list of {role, content}", "invalid_messages")
        got = params(data)
        if isinstance(got, JSONResponse):
            return got
        p, n = got
        with lock:
            texts = teacher.generate([messages], p, n)[0]
        prompt = teacher.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": model_name,
                "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                            for i, t in enumerate(texts)],
                "usage": usage(len(teacher.tokenizer(prompt, add_special_tokens=False)["input_ids"]), texts)}

    @app.post("/v1/completions")
    async def completions(request: Request):
        import torch
        data, err = await body(request)
        if err:
            return err
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            return _error(400, "prompt must be a string", "invalid_prompt")
        got = params(data)
        if isinstance(got, JSONResponse):
            return got
        p, n = got
        tok = teacher.tokenizer
        with lock:
            torch.manual_seed(p.seed)
            enc = tok([prompt], return_tensors="pt").to(teacher.device)
            with torch.no_grad():
                out = teacher.model.generate(**enc, max_new_tokens=p.max_tokens, do_sample=p.temperature > 0,
                                             temperature=max(p.temperature, 1e-5), num_return_sequences=n,
                                             pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": model_name,
                "choices": [{"index": i, "text": t, "finish_reason": "length"} for i, t in enumerate(texts)],
                "usage": usage(int(enc["input_ids"].shape[1]), texts)}

    return app
