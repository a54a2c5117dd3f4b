"""The judge asked ahead: each pair's judge request goes into the pool as soon as the pair parses,
while generation is still out; the filter reads those replies and decides exactly as when it asks
itself; the output does not depend on the order answers arrive in; a killed leaf's judge replies
are journaled and not asked again."""

import asyncio
import hashlib
import random
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pipeline.filter.judge import judge_filter
from pipeline.filter.run import FilterConfig, read_replies, run_filters, screen
from pipeline.sdg.generate import GenerateConfig, cache_root, generate, read_jsonl
from pipeline.sdg.teachers import OpenAITeacher, TeacherError
from tests.sdg.test_teachers_http import endpoints, serve

LEAVES = ["knowledge/history", "compositional_skills/writing"]
CONFIG = GenerateConfig(samples=1, short_pairs=2, long_pairs=1, skill_tasks=4, skill_pairs=2)


def _digest(*parts) -> int:
    return int(hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def endpoint(jitter: float = 0.0, refuse_after: int | None = None):
    """Teacher and judge in one: pairs from the prompt's own words; judge scores from the pair's
    hash (some below the thresholds, some unreadable). Records when each kind of request was
    answered or started, and how many judge requests it got."""
    state = {"gen_done": [], "judge_start": [], "judge": 0, "answered": 0}
    rng = random.Random(7)
    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"data": [{"id": "m"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        text = body["messages"][-1]["content"]
        if refuse_after is not None and state["answered"] >= refuse_after:
            return JSONResponse({"error": "gone"}, 400)
        judging = "strict reviewer" in text
        if judging:
            state["judge"] += 1
            state["judge_start"].append(time.monotonic())
        await asyncio.sleep(0.02 + rng.random() * jitter)
        if judging:
            h = _digest(text)
            reply = "I cannot tell." if h % 5 == 0 else \
                f"faithful: 1\nrelevance: {2 if h % 3 else 1}\nquestion: 1\nanswer: {3 if h % 4 else 1}"
            choices = [reply]
        else:
            words = [w for w in text.split() if w.isalpha()][:400]
            choices = []
            for c in range(body.get("n", 1)):
                blocks = []
                for i in range(2):
                    pick = [words[(_digest(text, c, i, k) % len(words))] for k in range(12)]
                    blocks.append(f"[Question]\nWhat about {' '.join(pick[:6])}?\n[Answer]\n{' '.join(pick)}.\n[End]")
                choices.append("\n\n".join(blocks))
            state["gen_done"].append(time.monotonic() + 0.0)
        state["answered"] += 1
        return {"choices": [{"index": i, "message": {"content": t}, "finish_reason": "stop"} for i, t in enumerate(choices)],
                "usage": {"prompt_tokens": 50, "completion_tokens": 10}}

    server, url = serve(app)
    return server, url, state


@pytest.fixture
def servers():
    with endpoints(endpoint) as make:
        yield make


def _records(out):
    return [r for f in sorted((out / "generated").glob("*.jsonl")) for r in read_jsonl(f)]


def test_judging_overlaps_generation_and_decides_as_the_filter_would(servers, sample_taxonomy, tmp_path):
    url, state = servers(jitter=0.05)
    teacher = OpenAITeacher(url, concurrency=4, progress=False)  # few slots: generation is still out for a while
    summary = generate(sample_taxonomy, tmp_path / "o", teacher, CONFIG, only=LEAVES, judge=teacher)
    assert min(state["judge_start"]) < max(state["gen_done"])  # judged while generation was out
    records = _records(tmp_path / "o")
    replies = read_replies(tmp_path / "o")
    assert summary["judge"]["asked_ahead"] == state["judge"] == len(replies) > 0
    assert summary["cost"]["requests"] + summary["judge"]["cost"]["requests"] == state["answered"]

    ahead = judge_filter(records, teacher, replies=replies)
    assert ahead.asked == 0 and state["judge"] == len(replies)  # every reply was there: nothing asked again
    fresh = OpenAITeacher(url, concurrency=4, progress=False)
    asked_now = judge_filter(records, fresh)
    assert asked_now.asked == len(records)
    assert [r["id"] for r in ahead.kept] == [r["id"] for r in asked_now.kept]
    assert [(r["id"], why) for r, why in ahead.dropped] == [(r["id"], why) for r, why in asked_now.dropped]
    assert {why.split(" (")[0] for _, why in ahead.dropped} == {"judge reply unreadable", "judge scores below the thresholds"}
    teacher.pool.close()
    fresh.pool.close()


def test_the_screen_asks_only_for_pairs_the_single_record_filters_keep(servers, sample_taxonomy, tmp_path):
    url, state = servers()
    teacher = OpenAITeacher(url, concurrency=8, progress=False)
    config = FilterConfig(use_embeddings=False)
    from functools import partial
    generate(sample_taxonomy, tmp_path / "o", teacher, CONFIG, only=LEAVES, judge=teacher,
             screen=partial(screen, config=config))
    records = _records(tmp_path / "o")
    screened = [r for r in records if screen(r, config) is not None]
    assert 0 < state["judge"] <= len(screened) < len(records)  # format/grounding drops were not judged
    before = state["judge"]
    kept, rep = run_filters(records, {}, config, teacher=teacher, replies=read_replies(tmp_path / "o"))
    judge = rep["totals"]["filters"]["judge"]
    assert judge["asked"] == state["judge"] - before == 0  # every pair that reached the judge had its reply
    teacher.pool.close()


def test_output_does_not_depend_on_arrival_order(servers, sample_taxonomy, tmp_path, monkeypatch):
    outs = []
    for i, jitter in enumerate((0.0, 0.08)):
        monkeypatch.setenv("SPROUT_CACHE", str(tmp_path / f"cache{i}"))
        url, _ = servers(jitter=jitter)
        teacher = OpenAITeacher(url, model="m", concurrency=16, progress=False)
        teacher.identity = "openai:same"  # two servers, one teacher: the same records and keys
        generate(sample_taxonomy, tmp_path / f"o{i}", teacher, CONFIG, only=LEAVES, judge=teacher)
        outs.append(([r["id"] for r in _records(tmp_path / f"o{i}")],
                     (tmp_path / f"o{i}" / "judge_replies.jsonl").read_text()))
        teacher.pool.close()
    assert outs[0] == outs[1] and outs[0][0]


def test_a_killed_leaf_keeps_its_judge_replies(servers, sample_taxonomy, tmp_path):
    url, state = servers(refuse_after=6)
    teacher = OpenAITeacher(url, concurrency=1, progress=False)
    with pytest.raises(TeacherError, match="journaled"):
        generate(sample_taxonomy, tmp_path / "o", teacher, CONFIG, only=["knowledge/history"], judge=teacher)
    journal = next(cache_root().glob("*.journal.jsonl")).read_text()
    judged_before = state["judge"]
    assert 0 < judged_before and journal.count("faithful") + journal.count("I cannot tell") == judged_before
    url2, state2 = servers()
    teacher2 = OpenAITeacher(url2, model="m", concurrency=8, progress=False)
    teacher2.identity = teacher.identity
    summary = generate(sample_taxonomy, tmp_path / "o", teacher2, CONFIG, only=["knowledge/history"], judge=teacher2)
    replies = read_replies(tmp_path / "o")
    assert state2["judge"] == len(replies) - judged_before  # the journaled replies were not asked again
    assert summary["judge"]["cost"]["requests"] == len(replies)  # the leaf's judge cost counts both attempts
    assert judge_filter(_records(tmp_path / "o"), teacher2, replies=replies).asked == 0
    teacher.pool.close()
    teacher2.pool.close()
