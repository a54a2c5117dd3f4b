"""The shared request pool: one in-flight limit for every leaf, AIMD on 429/503, a request journal
that lets a killed run resume inside a leaf, the completion funnel and the cost from ``usage``."""

import asyncio
import json

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pipeline.sdg.generate import GenerateConfig, cache_root, generate
from pipeline.sdg.parse import classify
from pipeline.sdg.pool import Window, retry_after
from pipeline.sdg.teachers import GenParams, OpenAITeacher, TeacherError
from tests.sdg.test_teachers_http import endpoints, serve

ANSWER = "[Question]\nWhat is it?\n[Answer]\nIt is a thing.\n[End]"


def endpoint(capacity: int | None = None, delay: float = 0.05, refuse_after: int | None = None):
    """A server that records how many requests it held at once; past ``capacity`` it answers 429
    with Retry-After; after ``refuse_after`` answers it refuses everything (a dying run)."""
    state = {"now": 0, "peak": 0, "answered": 0, "throttled": 0, "calls": 0}
    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"data": [{"id": "m"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        state["calls"] += 1
        if refuse_after is not None and state["answered"] >= refuse_after:
            return JSONResponse({"error": "gone"}, 400)
        if capacity is not None and state["now"] >= capacity:
            state["throttled"] += 1
            return JSONResponse({"error": "busy"}, 429, headers={"Retry-After": "0.05"})
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        try:
            await asyncio.sleep(delay)
        finally:
            state["now"] -= 1
        state["answered"] += 1
        n = body.get("n", 1)
        return {"choices": [{"index": i, "message": {"content": ANSWER}, "finish_reason": "stop"} for i in range(n)],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10 * n}}

    server, url = serve(app)
    return server, url, state


@pytest.fixture
def server_factory():
    with endpoints(endpoint) as make:
        yield make


def _leaves():
    return ["knowledge/history", "compositional_skills/writing", "compositional_skills/reasoning"]


def test_leaves_share_one_pool_up_to_its_limit(server_factory, sample_taxonomy, tmp_path):
    url, state = server_factory(delay=0.2)
    teacher = OpenAITeacher(url, concurrency=16, progress=False)
    config = GenerateConfig(samples=1, skill_tasks=2, skill_pairs=1)
    summary = generate(sample_taxonomy, tmp_path / "o", teacher, config, only=_leaves())
    per_leaf = max(x["cost"]["requests"] for x in summary["leaves"])
    # leaves ran side by side: more requests at once than the biggest leaf has, never past the limit
    assert per_leaf < state["peak"] <= 16
    assert summary["cost"]["requests"] == state["answered"] == sum(x["cost"]["requests"] for x in summary["leaves"])
    assert summary["cost"]["prompt_tokens"] == 100 * state["answered"]
    assert summary["cost"]["completion_tokens"] == 10 * state["answered"]
    assert summary["funnel"]["parsed"] == state["answered"] and summary["cost"]["errors"] == 0


def test_throttling_shrinks_the_window_instead_of_failing(server_factory):
    url, state = server_factory(capacity=4, delay=0.05)
    teacher = OpenAITeacher(url, concurrency=64, progress=False)
    from pipeline.sdg.prompts import Prompt
    prompts = [Prompt("x", {}, ({"role": "user", "content": f"q{i}"},)) for i in range(60)]
    out = teacher.complete(prompts, n=1, params=GenParams(max_tokens=8))
    assert out == [[ANSWER]] * 60
    cost = teacher.cost
    assert state["throttled"] > 0 and cost.throttled == state["throttled"] and cost.retries >= cost.throttled
    assert cost.requests == 60 and cost.errors == 0
    assert teacher.pool.window.slots < 64  # it learned the server holds fewer


def test_a_killed_leaf_resumes_from_its_journal(server_factory, sample_taxonomy, tmp_path):
    config = GenerateConfig(samples=1, short_pairs=1, long_pairs=1)
    url, state = server_factory(refuse_after=3, delay=0.01)
    teacher = OpenAITeacher(url, concurrency=1, progress=False)  # one at a time: exactly 3 get answered
    with pytest.raises(TeacherError, match="journaled"):
        generate(sample_taxonomy, tmp_path / "o", teacher, config, only=["knowledge/history"])
    journals = list(cache_root().glob("*.journal.jsonl"))
    assert len(journals) == 1 and len(journals[0].read_text().splitlines()) == 3
    url2, state2 = server_factory(delay=0.01)
    teacher2 = OpenAITeacher(url2, model="m", concurrency=8, progress=False)
    teacher2.identity = teacher.identity  # the same teacher behind a new address: the same cache key
    summary = generate(sample_taxonomy, tmp_path / "o", teacher2, config, only=["knowledge/history"])
    leaf = summary["leaves"][0]
    assert state2["answered"] == leaf["cost"]["requests"] - 3  # only what was not answered before
    assert leaf["funnel"]["parsed"] == leaf["cost"]["requests"]
    assert not list(cache_root().glob("*.journal.jsonl"))  # done: the journal is gone


def test_window_is_aimd_and_cuts_once_per_flight():
    w = Window(64)
    epoch = w.epoch
    w.cut(epoch)
    w.cut(epoch)  # the same flight's second 429: no second cut
    assert w.slots == 32
    w.cut(w.epoch)
    assert w.slots == 16
    for _ in range(17):
        w.grow()
    assert w.slots == 17  # about one more per window's worth of answers
    assert retry_after("2") == 2 and retry_after("9999") == 60 and retry_after("soon") is None


@pytest.mark.parametrize("text,pairs,finish,reason", [
    (ANSWER, 1, "stop", "parsed"), ("  ", 0, "stop", "empty"), ("[Question]\nWhat", 0, "length", "truncated"),
    ("I'm sorry, but I can't help with that.", 0, "stop", "refused"), ("Here are some ideas", 0, "stop", "unparsable"),
])
def test_completion_funnel(text, pairs, finish, reason):
    assert classify(text, pairs, finish) == reason


def test_generate_summary_is_json(server_factory, sample_taxonomy, tmp_path):
    url, _ = server_factory()
    generate(sample_taxonomy, tmp_path / "o", OpenAITeacher(url, progress=False), GenerateConfig(samples=1),
             only=["compositional_skills/writing"])
    summary = json.loads((tmp_path / "o" / "generate_summary.json").read_text())
    assert summary["cost"]["requests"] > 0 and set(summary["funnel"]) >= {"parsed", "refused", "truncated"}


def test_a_run_records_what_it_cost(server_factory, sample_taxonomy, tmp_path):
    import shutil

    from pipeline.run import RunConfig, run
    url, state = server_factory()
    for leaf in ("knowledge", "compositional_skills/grounded", "compositional_skills/reasoning"):
        shutil.rmtree(sample_taxonomy / leaf)  # one skill leaf is enough
    out, _ = run(RunConfig(taxonomy=str(sample_taxonomy), out=str(tmp_path / "run"), runs_root=str(tmp_path / "runs"),
                           teacher=url + "/v1", judge="teacher", teacher_concurrency=8, embeddings=False,
                           changed_only=True), log=lambda m: None, until="filter")
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    gen, filt = stages["generate"], stages["filter"]
    assert gen["cost"]["requests"] == sum(c["requests"] for c in gen["leaf_cost"].values()) > 0
    # the judge (the teacher) was asked about each pair during generation, counted apart; the filter
    # found every reply there and asked nothing itself
    assert gen["judge_cost"]["requests"] > 0 and filt["cost"]["requests"] == 0
    assert gen["cost"]["requests"] + gen["judge_cost"]["requests"] == state["answered"]
    assert gen["funnel"]["parsed"] == 2 * gen["cost"]["requests"]  # two samples per prompt


def test_cost_goes_to_mlflow_when_asked(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from pipeline.sdg.cost import log_mlflow
    manifest = {"run_id": "run-x", "config": {"teacher": "http://t/v1"},
                "stages": {"generate": {"cost": {"requests": 7, "prompt_tokens": 700},
                                        "leaf_cost": {"knowledge/a/qna.yaml": {"requests": 7, "parsed": 6}}},
                           "filter": {"cost": {"requests": 3}}}}
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert log_mlflow(manifest) is False  # not asked: nothing logged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the local file store, for this test
    assert log_mlflow(manifest) is True
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) == 1 and runs[0].info.run_name == "run-x"
    m = runs[0].data.metrics
    assert m["generate.requests"] == 7 and m["filter.requests"] == 3 and m["generate.leaf.knowledge.a.parsed"] == 6


def test_a_cut_completion_is_truncated_even_when_the_server_says_stop():
    from pipeline.sdg.pool import RequestPool
    data = {"choices": [{"index": 0, "message": {"content": "[Question]\nWhy"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 32}}
    assert RequestPool._parse(data, 1, max_tokens=32).finish == ["length"]
    assert RequestPool._parse(data, 1, max_tokens=64).finish == ["stop"]


def test_numbered_tags_parse():
    from pipeline.sdg.parse import parse_pairs
    pairs, bad = parse_pairs("[Question1]\nWho was her father?\n[Answer 1]\nLord Byron.\n[End]")
    assert pairs == [{"question": "Who was her father?", "answer": "Lord Byron."}] and bad == 0


def _pool_threads() -> set:
    import threading
    return {t for t in threading.enumerate() if t.name == "sprout-teacher-pool"}


def test_closing_the_pool_ends_its_thread_and_it_restarts_on_use(server_factory):
    from pipeline.sdg.prompts import Prompt
    url, _ = server_factory()
    before = _pool_threads()  # other tests' teachers may still hold theirs
    teacher = OpenAITeacher(url, progress=False)
    prompt = Prompt("x", {}, ({"role": "user", "content": "q"},))
    assert teacher.complete([prompt]) == [[ANSWER]]
    assert len(_pool_threads() - before) == 1
    teacher.close()
    teacher.close()  # twice is fine
    assert not _pool_threads() - before and teacher.cost.requests == 1  # gone, its count kept
    assert teacher.complete([prompt]) == [[ANSWER]] and len(_pool_threads() - before) == 1
    teacher.close()
    assert not _pool_threads() - before


def test_a_run_leaves_no_pool_thread_behind(server_factory, sample_taxonomy, tmp_path):
    import shutil

    from pipeline.run import RunConfig, run
    url, _ = server_factory()
    for leaf in ("knowledge", "compositional_skills/grounded", "compositional_skills/reasoning"):
        shutil.rmtree(sample_taxonomy / leaf)
    before = _pool_threads()
    run(RunConfig(taxonomy=str(sample_taxonomy), out=str(tmp_path / "run"), runs_root=str(tmp_path / "runs"),
                  teacher=url + "/v1", teacher_concurrency=8, embeddings=False), log=lambda m: None, until="filter")
    assert not _pool_threads() - before


def test_a_parser_change_misses_the_generation_cache(sample_taxonomy, monkeypatch):
    from pipeline.sdg import generate as gen
    from pipeline.sdg.generate import leaf_key, select_leaves
    from pipeline.sdg.teachers import OfflineTeacher
    leaf = select_leaves(sample_taxonomy)[0]
    raw = (sample_taxonomy / leaf.path).read_bytes()
    before = leaf_key(leaf, raw, OfflineTeacher(), GenerateConfig())
    monkeypatch.setattr(gen, "parser_digest", lambda: "another-parser")
    assert leaf_key(leaf, raw, OfflineTeacher(), GenerateConfig()) != before
