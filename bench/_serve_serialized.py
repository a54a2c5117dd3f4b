"""The baseline of bench/serve.py: the model server as it was before batching (commit e65315c),
one chat completion at a time under a lock through HFTeacher.generate. Kept only for the bench.

    python bench/_serve_serialized.py MODEL_DIR PORT
"""

import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi import FastAPI, Request  # noqa: E402  (module level: FastAPI resolves the annotation)


def create_app(model_dir: Path):
    from pipeline.sdg.teachers import GenParams, HFTeacher

    teacher = HFTeacher(model_dir, batch_size=8)
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        data = await request.json()
        p = GenParams(temperature=float(data.get("temperature", 0.7)), max_tokens=int(data.get("max_tokens") or 256),
                      seed=int(data.get("seed") or 0))
        with lock:  # as before: the event loop itself waits here, one request at a time
            texts = teacher.generate([data["messages"]], p, int(data.get("n", 1)))[0]
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                            for i, t in enumerate(texts)]}

    return app


if __name__ == "__main__":
    import uvicorn
    uvicorn.run(create_app(Path(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
