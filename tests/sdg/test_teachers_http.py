"""The HTTP teacher against a real `sprout model serve` on loopback, and against a server that
misbehaves (malformed, empty, truncated, slow answers, 5xx)."""

import contextlib
import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from pipeline.sdg.generate import generate
from pipeline.sdg.prompts import render
from pipeline.sdg.teachers import GenParams, HFTeacher, OpenAITeacher, TeacherError, make_teacher
from tests.fakes.models import tiny_model


def serve(app) -> tuple[uvicorn.Server, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def endpoints(start):
    """``make(**kw)`` starts a fake endpoint with ``start(**kw)`` -> (server, url, state) and
    returns (url, state); every one started is stopped on exit."""
    made = []

    def make(**kw):
        server, url, state = start(**kw)
        made.append(server)
        return url, state
    try:
        yield make
    finally:
        for server in made:
            server.should_exit = True


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny") / "student")


@pytest.fixture(scope="module")
def model_server(model_dir):
    from pipeline.serve.openai_server import create_app
    server, url = serve(create_app(model_dir, name="tiny"))
    yield url
    server.should_exit = True


def test_real_server_models_and_chat(model_server):
    t = OpenAITeacher(model_server, model="tiny")
    assert t.identity == f"openai:{model_server}/v1:tiny"
    prompt = render("skill_freeform", task_description="Say hi", examples="", n=1, seeds=[])
    out = t.complete([prompt, prompt], n=2, params=GenParams(max_tokens=8, seed=1))
    assert len(out) == 2 and all(len(o) == 2 and all(isinstance(x, str) for x in o) for o in out)
    import httpx
    r = httpx.post(f"{model_server}/v1/completions", json={"model": "tiny", "prompt": "Water", "max_tokens": 5})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] is not None
    bad = httpx.post(f"{model_server}/v1/chat/completions", json={"model": "tiny", "messages": "hi"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_messages"


def test_wrong_model_name_and_unreachable_server_are_clear(model_server):
    with pytest.raises(TeacherError, match="model 'gpt-9' is not served .* it serves: tiny"):
        OpenAITeacher(model_server, model="gpt-9")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(TeacherError, match="unreachable"):
        OpenAITeacher(dead, model="x")


def test_generate_through_the_http_teacher(model_server, sample_taxonomy, tmp_path):
    teacher = make_teacher(model_server + "/v1", model="tiny")
    from pipeline.sdg.generate import GenerateConfig
    summary = generate(sample_taxonomy, tmp_path / "o", teacher,
                       GenerateConfig(samples=1, skill_tasks=2, params=GenParams(max_tokens=16)),
                       only=["compositional_skills/writing"])
    # an untrained tiny model writes noise: it is parsed, counted, never crashes the run
    assert summary["leaves"][0]["status"] == "generated"


def test_hf_teacher_loads_a_model_directory(model_dir, tmp_path):
    t = HFTeacher(model_dir, batch_size=2)
    out = t.complete([render("skill_freeform", task_description="x", examples="", n=1, seeds=[])] * 3, n=1,
                     params=GenParams(max_tokens=4))
    assert len(out) == 3
    with pytest.raises(TeacherError, match="not a Hugging Face model directory"):
        HFTeacher(tmp_path)


def test_hf_teacher_ships_as_its_folder_and_loads_once_per_process(model_dir):
    """Ray pickles the teacher into every task: its weights must not travel, nor reload per task."""
    import pickle
    t = HFTeacher(model_dir, batch_size=2)
    blob = pickle.dumps(t)
    assert len(blob) < 2000  # the path and settings, not the model
    a, b = pickle.loads(blob), pickle.loads(blob)
    assert a is b and a.identity == t.identity  # one load per worker process
    p = [render("skill_freeform", task_description="x", examples="", n=1, seeds=[])]
    assert a.complete(p, params=GenParams(max_tokens=4)) == t.complete(p, params=GenParams(max_tokens=4))


@pytest.fixture
def flaky_server():
    state = {"calls": 0}
    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "m", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        state["calls"] += 1
        mode = (await request.json())["messages"][0]["content"]
        if mode == "fail-twice" and state["calls"] <= 2:
            return JSONResponse({"error": "busy"}, 503)
        if mode == "malformed":
            return PlainTextResponse("<html>oops</html>")
        if mode == "empty":
            return {"choices": []}
        if mode == "truncated":
            return {"choices": [{"message": {"role": "assistant", "content": "[Question]\nWhat?\n[Ans"}}]}
        if mode == "slow":
            import asyncio
            await asyncio.sleep(3)
        if mode == "refuse":
            return JSONResponse({"error": {"message": "context length exceeded"}}, 400)
        return {"choices": [{"message": {"role": "assistant", "content": "[Question]\nQ?\n[Answer]\nA.\n[End]"}}]}

    server, url = serve(app)
    yield url, state
    server.should_exit = True


def _p(content):
    from pipeline.sdg.prompts import Prompt
    return Prompt("custom", {}, ({"role": "user", "content": content},))


def test_misbehaving_teacher_answers(flaky_server):
    url, state = flaky_server
    t = OpenAITeacher(url, retries=3, timeout=1)
    assert t.model == "m"  # the only served model is chosen
    assert t.complete([_p("fail-twice")]) == [["[Question]\nQ?\n[Answer]\nA.\n[End]"]]
    assert t.complete([_p("empty")], n=2) == [["", ""]]
    assert "[Ans" in t.complete([_p("truncated")])[0][0]
    with pytest.raises(TeacherError, match="after 2 attempts"):
        OpenAITeacher(url, retries=1, timeout=10).complete([_p("malformed")])
    with pytest.raises(TeacherError, match="refused"):
        t.complete([_p("refuse")])
    slow = OpenAITeacher(url, retries=0, timeout=0.5)
    with pytest.raises(TeacherError, match="after 1 attempts"):
        slow.complete([_p("slow")])
