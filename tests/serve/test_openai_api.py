"""What clients of an OpenAI-compatible server rely on: streaming (server-sent events ending in
[DONE]), stop, max_tokens, temperature 0 as greedy, n, seed, usage, clear 4xx errors; and
concurrent requests generated in one batch with the same greedy answers as one at a time."""

import json
import threading
import time

import httpx
import pytest

from tests.sdg.test_teachers_http import serve

QUESTIONS = ["Where is Saltreach?", "What is the highest point of Brenvik Isle? Tell me all of it.", "hi",
             "Name three colours of the rainbow", "How does water evaporate from the sea?", "Who was Ada Lovelace",
             "What does git rebase do, and when should I avoid it in a shared branch?", "Convert 5 km to miles"]


@pytest.fixture(scope="module")
def server(loud):
    from pipeline.serve.openai_server import create_app
    app = create_app(loud, name="loud", wait_ms=50)
    srv, url = serve(app)
    yield url, app
    srv.should_exit = True


def chat(url, question, **kw):
    r = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                   json={"model": "loud", "messages": [{"role": "user", "content": question}], **kw})
    assert r.status_code == 200, r.text
    return r.json()


def late_stop(text: str) -> str:
    """A 3-character string that first appears past the 10th character."""
    return next(text[i:i + 3] for i in range(10, len(text) - 3) if text.index(text[i:i + 3]) >= 10)


def events(url, path, body):
    with httpx.stream("POST", f"{url}{path}", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_greedy_stop_max_tokens_and_usage(server):
    url, _ = server
    full = chat(url, QUESTIONS[1], temperature=0, max_tokens=24)
    text = full["choices"][0]["message"]["content"]
    assert full["choices"][0]["finish_reason"] == "length" and full["usage"]["completion_tokens"] == 24
    assert full["usage"]["total_tokens"] == full["usage"]["prompt_tokens"] + 24 and len(text) > 10
    assert chat(url, QUESTIONS[1], temperature=0, max_tokens=24)["choices"][0]["message"]["content"] == text
    assert chat(url, QUESTIONS[1], temperature=0, max_tokens=5)["choices"][0]["finish_reason"] == "length"
    stop = late_stop(text)
    cut = chat(url, QUESTIONS[1], temperature=0, max_tokens=24, stop=[stop, "never appears"])
    assert cut["choices"][0]["message"]["content"] == text[:text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop" and cut["usage"]["completion_tokens"] < 24


def test_n_seed_and_temperature(server):
    url, _ = server
    greedy = chat(url, QUESTIONS[0], temperature=0, max_tokens=12, n=2)["choices"]
    assert [c["index"] for c in greedy] == [0, 1] and greedy[0]["message"] == greedy[1]["message"]
    sampled = chat(url, QUESTIONS[0], temperature=1.0, max_tokens=12, n=3, seed=7)
    again = chat(url, QUESTIONS[0], temperature=1.0, max_tokens=12, n=3, seed=7)
    texts = [c["message"]["content"] for c in sampled["choices"]]
    assert texts == [c["message"]["content"] for c in again["choices"]]  # a seed reproduces
    assert len(set(texts)) > 1 and sampled["usage"]["completion_tokens"] == 36


def test_streaming_sends_the_same_text_as_one_answer(server):
    url, _ = server
    body = {"messages": [{"role": "user", "content": QUESTIONS[1]}], "temperature": 0, "max_tokens": 24}
    whole = chat(url, QUESTIONS[1], temperature=0, max_tokens=24)["choices"][0]["message"]["content"]
    stop = late_stop(whole)
    chunks = events(url, "/v1/chat/completions", {**body, "stream": True, "n": 2, "stop": stop,
                                                   "stream_options": {"include_usage": True}})
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [{"role": "assistant", "content": ""}] * 2
    for i in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == i]
        assert "".join(ch["delta"].get("content", "") for ch in mine) == whole[:whole.index(stop)]
        assert [ch["finish_reason"] for ch in mine][-1] == "stop" and len(mine) > 3  # streamed, not at once
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] > 0
    plain = events(url, "/v1/completions", {"prompt": "Saltreach is", "temperature": 0, "max_tokens": 8,
                                            "stream": True})
    text = "".join(c["choices"][0]["text"] for c in plain)
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "Saltreach is", "temperature": 0, "max_tokens": 8})
    assert r.json()["choices"][0]["text"] == text and plain[-1]["choices"][0]["finish_reason"] == "length"


def test_concurrent_requests_are_batched_with_the_answers_of_one_at_a_time(server):
    url, app = server
    # lengths differ, so rows finish at different steps and leave the running batch
    lengths = [6 + 3 * i for i in range(len(QUESTIONS))]
    alone = [chat(url, q, temperature=0, max_tokens=n)["choices"][0]["message"]["content"]
             for q, n in zip(QUESTIONS, lengths)]
    scheduler = app.state.slot.current.scheduler
    batches = scheduler.batches
    together: list = [None] * len(QUESTIONS)
    barrier = threading.Barrier(len(QUESTIONS))

    def ask(i):
        barrier.wait()
        together[i] = chat(url, QUESTIONS[i], temperature=0, max_tokens=lengths[i])["choices"][0]["message"]["content"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
    assert scheduler.batches - batches < len(QUESTIONS)  # some were generated together
    metrics = dict(line.rsplit(" ", 1) for line in httpx.get(f"{url}/metrics").text.splitlines()
                   if line and not line.startswith("#"))
    assert int(metrics['sprout_serve_requests_total{endpoint="chat",status="200"}']) >= 16
    assert int(metrics["sprout_serve_completion_tokens_total"]) >= 2 * sum(lengths)


@pytest.mark.parametrize("body, status, code", [
    ({"n": 0}, 400, "invalid_value"), ({"temperature": 3}, 400, "invalid_value"),
    ({"max_tokens": "many"}, 400, "invalid_value"), ({"stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_value"),
    ({"logprobs": True}, 400, "unsupported"), ({"model": "gpt-9"}, 404, "model_not_found"),
    ({"messages": [{"role": "user"}]}, 400, "invalid_messages"), ({"max_tokens": 5000}, 400, "context_length_exceeded"),
    ({"messages": [{"role": "user", "content": "word " * 3000}]}, 400, "context_length_exceeded")])
def test_bad_requests_are_clear_errors(server, body, status, code):
    url, _ = server
    r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                   json={"messages": [{"role": "user", "content": "hi"}], **body})
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text


def test_models_health_and_metrics_name_what_is_served(server, loud):
    url, _ = server
    card = httpx.get(f"{url}/v1/models").json()["data"][0]
    assert card["id"] == "loud" and card["root"] == str(loud) and card["sprout"]["id"] == "loud"
    health = httpx.get(f"{url}/healthz").json()
    assert health["status"] == "ok" and health["model"]["path"] == str(loud)
    assert 'sprout_serve_model_info{id="loud"' in httpx.get(f"{url}/metrics").text


def test_an_api_key_guards_the_api_but_not_health(loud):
    from pipeline.serve.openai_server import create_app
    srv, url = serve(create_app(loud, api_key="s3cret"))
    try:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 401
        bad = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
        ok = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and httpx.get(f"{url}/healthz").status_code == 200
    finally:
        srv.should_exit = True


def test_a_failing_generation_is_a_500_and_the_server_goes_on(server):
    url, app = server
    engine = app.state.slot.current.engine

    def boom(rows, admit=None):
        raise RuntimeError("out of memory (simulated)")

    engine.generate = boom
    try:
        r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 500 and r.json()["error"]["code"] == "generation_failed"
        assert "simulated" in r.json()["error"]["message"]
        with httpx.stream("POST", f"{url}/v1/chat/completions",
                          json={"messages": [{"role": "user", "content": "hi"}], "stream": True}) as s:
            lines = [x for x in s.iter_lines() if x]
        assert json.loads(lines[-1][6:])["error"]["code"] == "generation_failed"
    finally:
        del engine.generate
    assert chat(url, "hi", max_tokens=3)["choices"][0]["finish_reason"] == "length"


def test_a_request_joins_a_running_batch_and_answers_as_alone(server):
    """Continuous batching: short requests sent while a long answer is being generated join its
    batch at the next step (prompts of other lengths: the caches are padded to one width), finish
    first, and answer exactly as alone."""
    url, app = server
    engine = app.state.slot.current.engine
    short = {q: chat(url, q, temperature=0, max_tokens=8)["choices"][0]["message"]["content"] for q in QUESTIONS[:4]}
    long_alone = chat(url, QUESTIONS[6], temperature=0, max_tokens=120)["choices"][0]["message"]["content"]
    forward = engine._forward
    engine._forward = lambda *args: (time.sleep(0.02), forward(*args))[1]  # ~2.4 s for the long answer
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=120, json={
                "messages": [{"role": "user", "content": QUESTIONS[6]}], "temperature": 0, "max_tokens": 120,
                "stream": True}) as long:
            lines = long.iter_lines()
            next(lines)
            batches = app.state.slot.current.scheduler.batches  # the long one's batch is still running
            got = {q: chat(url, q, temperature=0, max_tokens=8)["choices"][0]["message"]["content"] for q in short}
            finished_first = app.state.slot.current.scheduler.batches == batches  # answered inside it
            rest = [x for x in lines if x.startswith("data: {")]
    finally:
        del engine._forward
    assert got == short and finished_first
    assert "".join(json.loads(x[6:])["choices"][0]["delta"].get("content") or "" for x in rest) == long_alone
