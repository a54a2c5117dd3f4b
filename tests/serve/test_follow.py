"""`sprout model serve --follow`: a client asks without pause while two accepted runs and one
rejected run land in the registry; no request fails, each accepted model is served within
seconds, a request in flight finishes on the model it started on, the rejected one never answers."""

import json
import os
import threading
import time

import httpx
import pytest

from pipeline.serve.follow import newest_accepted, read_registry
from tests.sdg.test_teachers_http import serve
from tests.serve.conftest import loud_model


def land(root, entry):
    """Register a run as pipeline/run.py does: the whole list replaced atomically."""
    path = root / "models.json"
    models = json.loads(path.read_text()) if path.exists() else []
    tmp = root / "models.json.tmp"
    tmp.write_text(json.dumps(models + [entry]))
    os.replace(tmp, path)


def entry(name, folder, verdict):
    return {"id": name, "path": str(folder), "run": f"/runs/{name}", "taxonomy_sha": f"{name}-sha" + "0" * 30,
            "verdict": verdict, "created": "2026-12-05T00:00:00Z"}


def test_newest_accepted_skips_rejected_missing_and_older(tmp_path):
    a, b = loud_model(tmp_path / "a", 1), loud_model(tmp_path / "b", 2)
    entries = [entry("a", a, "accepted"), entry("b", b, "accepted"), entry("gone", tmp_path / "gone", "accepted"),
               entry("r", a, "rejected")]
    assert newest_accepted(entries, str(tmp_path))[0]["id"] == "b"
    assert newest_accepted(entries, str(tmp_path), after="b") is None  # never back to an older one
    assert newest_accepted(entries[:1] + entries[3:], str(tmp_path), after="a") is None
    assert read_registry(str(tmp_path)) == []
    land(tmp_path, entries[0])
    assert read_registry(str(tmp_path)) == entries[:1] == read_registry(str(tmp_path / "models.json"))
    relative = {**entries[1], "path": "b"}  # a run given a relative folder: found beside the runs root
    assert newest_accepted([relative], str(tmp_path / "runs"))[1] == tmp_path / "b"


@pytest.mark.slow
def test_the_server_follows_accepted_runs_without_failing_a_request(tmp_path):
    from pipeline.serve.openai_server import create_app
    root = tmp_path / "runs"
    root.mkdir()
    models = {name: loud_model(tmp_path / name, seed) for name, seed in (("a", 1), ("b", 2), ("r", 3), ("c", 4))}
    empty = create_app(follow=str(root), interval=0.2)
    srv0, url0 = serve(empty)
    assert httpx.get(f"{url0}/healthz").status_code == 503
    r = httpx.post(f"{url0}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503 and r.json()["error"]["code"] == "no_model"
    srv0.should_exit = True
    deadline = time.time() + 10  # a stopped server stops following: two followers would load each model twice
    while not empty.state.follower._stop.is_set() and time.time() < deadline:
        time.sleep(0.05)
    assert empty.state.follower._stop.is_set()

    land(root, entry("a", models["a"], "accepted"))
    app = create_app(follow=str(root), interval=0.2, name="sprout")
    srv, url = serve(app)
    log: list = []  # (started, status, served model, error)
    stop = threading.Event()

    def client(stream: bool):
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                body = {"model": "sprout", "messages": [{"role": "user", "content": "Where is Saltreach?"}],
                        "temperature": 0, "max_tokens": 6, "stream": stream}
                started = time.time()
                try:
                    with http.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
                        text = resp.read().decode()
                        ok = resp.status_code == 200 and (text.rstrip().endswith("[DONE]") if stream else
                                                          json.loads(text)["choices"][0]["finish_reason"])
                        log.append((started, resp.status_code, resp.headers.get("x-sprout-model"),
                                    None if ok else text))
                except Exception as e:  # a reset connection is a failed request too
                    log.append((started, 0, None, repr(e)))

    clients = [threading.Thread(target=client, args=(s,)) for s in (False, True, False)]
    for t in clients:
        t.start()
    question = {"messages": [{"role": "user", "content": "Tell me everything"}], "temperature": 0, "max_tokens": 120}

    def served_since(t0, name, timeout=90.0):
        while time.time() < t0 + timeout:
            if [t for t, _, m, _ in list(log) if m == name and t >= t0]:
                return
            time.sleep(0.05)
        raise AssertionError(f"{name} not served within {timeout}s")

    def switch_time(old, t0):
        """From the landing to the last request sent to the old model (later ones go to the new)."""
        return max([t for t, _, m, _ in log if m == old] + [t0]) - t0

    try:
        served_since(time.time() - 5, "a")
        expected = httpx.post(f"{url}/v1/chat/completions", json=question, timeout=120).json()
        # a request in flight across the switch: model a slowed to 50 ms a step, so that its
        # 120 tokens are still being generated when b takes over
        a = app.state.slot.current
        forward = a.engine._forward
        a.engine._forward = lambda *args: (time.sleep(0.05), forward(*args))[1]
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={**question, "stream": True},
                          timeout=120) as long:
            lines = long.iter_lines()
            first = next(lines)
            t_b = time.time()
            land(root, entry("b", models["b"], "accepted"))
            served_since(t_b, "b")
            assert a.retired and a.users >= 1  # still generating on a, while b answers others
            rest = [x for x in (first, *lines) if x]
        deadline = time.time() + 10
        while a.users and time.time() < deadline:
            time.sleep(0.05)
        a.scheduler.join(10)
        assert a.users == 0 and a.scheduler.engine is None  # then a was let go
        streamed = "".join((json.loads(x[6:])["choices"][0]["delta"].get("content") or "")
                           for x in rest if x.startswith("data: {"))
        t_r = time.time()
        land(root, entry("r", models["r"], "rejected"))
        time.sleep(1.5)  # several registry checks
        assert httpx.get(f"{url}/healthz").json()["model"]["id"] == "b"
        t_c = time.time()
        land(root, entry("c", models["c"], "accepted"))
        served_since(t_c, "c")
        time.sleep(0.5)
    finally:
        stop.set()
        for t in clients:
            t.join(60)
    errors = [x for x in log if x[1] != 200 or x[3]]
    assert not errors and len(log) > 20, errors[:3]
    served = [m for _, _, m, _ in log]
    assert "r" not in served and not [t for t, _, m, _ in log if t > t_r and m == "a"]
    switch_b, switch_c = switch_time("a", t_b), switch_time("b", t_c)
    assert set(served) == {"a", "b", "c"} and switch_b < 5 and switch_c < 5, (switch_b, switch_c)
    # the request in flight finished, after the switch, on the model it started on
    assert long.headers["x-sprout-model"] == "a" and rest[-1] == "data: [DONE]"
    assert streamed == expected["choices"][0]["message"]["content"] and len(streamed) > 20
    card = httpx.get(f"{url}/v1/models").json()["data"][0]
    assert card["id"] == "sprout" and card["sprout"]["id"] == "c" and card["sprout"]["taxonomy_sha"].startswith("c-sha")
    health = httpx.get(f"{url}/healthz").json()
    assert health["model"]["id"] == "c" and health["switches"] == 2
    metrics = httpx.get(f"{url}/metrics").text
    assert 'sprout_serve_model_info{id="c",taxonomy_sha="c-sha' in metrics
    assert "sprout_serve_model_switches_total 2" in metrics
    srv.should_exit = True
    app.state.follower.stop()
