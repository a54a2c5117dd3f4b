"""Each filter on crafted cases, and the report that says who dropped what."""

import pytest

from pipeline.filter.grounding import grounding_filter
from pipeline.filter.judge import judge_filter, parse_scores
from pipeline.filter.minhash import near_dedup
from pipeline.filter.quality import exact_dedup, format_filter
from pipeline.filter.run import FilterConfig, report_markdown, run_filters
from pipeline.filter.safety import SafetyConfig, find_pii, safety_filter
from pipeline.filter.semantic import semantic_filter
from tests.fakes.teacher import ScriptedTeacher

LEAF = "knowledge/science/earth/water_cycle/qna.yaml"
CHUNK = ("Evaporation is the change of liquid water into water vapour. Most evaporation happens over the "
         "oceans, which cover about 71 percent of Earth's surface.")


def rec(q, a, i=0, leaf=LEAF, kind="knowledge", chunk=CHUNK, shape="short", context=None):
    return {"id": f"r{i}", "leaf": leaf, "kind": kind, "shape": shape, "question": q, "answer": a,
            "source_chunk": chunk if kind == "knowledge" else None, "context": context}


def test_format_filter():
    rows = [rec("What is evaporation?", "Evaporation is the change of liquid water into vapour.", 1),
            rec("Why?", "Because.", 2), rec("What is evaporation here?", "", 3),
            rec("What is evaporation?", "What is evaporation?", 4),
            rec("Explain evaporation in detail.", "It is vapour.", 5, shape="long"),
            rec("What is evaporation exactly?", "[Answer] As an AI I cannot say.", 6)]
    out = format_filter(rows)
    assert [r["id"] for r in out.kept] == ["r1"]
    reasons = " | ".join(why for _, why in out.dropped)
    for word in ("words", "empty", "repeats", "long answer", "template marker"):
        assert word in reasons


def test_exact_dedup_normalises_case_space_and_punctuation():
    rows = [rec("What is evaporation?", "Water to vapour.", 1), rec("what is  EVAPORATION", "water to vapour!", 2),
            rec("What is evaporation?", "Something else entirely.", 3)]
    assert [r["id"] for r in exact_dedup(rows).kept] == ["r1", "r3"]


def test_minhash_catches_near_duplicates_not_different_questions():
    base = "Which share of the water that evaporates worldwide is supplied by the oceans"
    rows = [rec(base + "?", "Roughly 86 percent.", 1),
            rec(base + " today?", "Roughly 86 percent.", 2),
            rec("Which " + base[6:].replace("worldwide", "globally") + "?", "Roughly 86 percent.", 3),
            rec("How long does a water molecule stay in the atmosphere on average?", "About nine days.", 4)]
    out = near_dedup(rows)
    assert [r["id"] for r in out.kept] == ["r1", "r4"]
    assert all("near duplicate of r1" in why for _, why in out.dropped)


def test_pii_is_scrubbed_and_secrets_found():
    text = ("Mail jane.doe@example.com or call +1 (555) 123-4567. Key AKIAIOSFODNN7EXAMPLE, "
            "token ghp_" + "a" * 36 + ", card 4111 1111 1111 1111, not a card 1234 5678 9012 3456.")
    kinds = {k for k, _ in find_pii(text)}
    assert {"EMAIL", "PHONE", "AWS_KEY", "GITHUB_TOKEN", "CARD"} <= kinds
    out = safety_filter([rec("Who do I contact about evaporation data?", text, 1)])
    a = out.kept[0]["answer"]
    assert "[EMAIL]" in a and "[PHONE]" in a and "[AWS_KEY]" in a and "[GITHUB_TOKEN]" in a and "[CARD]" in a
    assert "jane.doe" not in a and "1234 5678 9012 3456" in a  # fails Luhn: not a card
    assert out.modified == 1
    dropped = safety_filter([rec("q q q", text, 1)], SafetyConfig(pii="drop"))
    assert not dropped.kept and "EMAIL" in dropped.dropped[0][1]


def test_block_list_matches_whole_words():
    rows = [rec("Is the grenade safe?", "No.", 1), rec("What are grenades?", "Weapons.", 2),
            rec("What is a pomegranate?", "A fruit.", 3)]
    out = safety_filter(rows, SafetyConfig(blocklist=("grenade",)))
    assert [r["id"] for r in out.kept] == ["r2", "r3"]


def test_ungrounded_answers_are_dropped():
    rows = [rec("What is evaporation?", "Evaporation is the change of liquid water into water vapour.", 1),
            rec("What share do oceans cover?", "Oceans cover about 71 percent of Earth's surface.", 2),
            rec("Who discovered evaporation?", "Isaac Newton discovered evaporation in 1687 in Cambridge.", 3)]
    out = grounding_filter(rows)
    assert [r["id"] for r in out.kept] == ["r1", "r2"]
    assert "not supported" in out.dropped[0][1]


@pytest.fixture(scope="module")
def embedder():
    from pipeline.filter.embed import Embedder
    return Embedder()


def test_semantic_filter_catches_paraphrases_and_off_topic(embedder):
    leaves = {LEAF: {"seeds": [{"question": "What is evaporation?", "answer": "Liquid water turning into vapour."}],
                     "chunks": [{"id": "c", "text": CHUNK}]}}
    rows = [rec("What is evaporation?", "Evaporation is the change of liquid water into water vapour.", 1),
            rec("What does evaporation mean?", "Evaporation is the change of liquid water into water vapour.", 2),
            rec("How much of Earth's surface do oceans cover?", "About 71 percent.", 3),
            rec("What is the best pizza topping in Naples?", "Margherita with buffalo mozzarella.", 4)]
    dup, topic = semantic_filter(rows, leaves, embedder)
    assert [r["id"] for r, _ in dup.dropped] == ["r2"] and "paraphrase of r1" in dup.dropped[0][1]
    assert [r["id"] for r, _ in topic.dropped] == ["r4"]
    assert [r["id"] for r in topic.kept] == ["r1", "r3"]


def test_judge_uses_instructlab_thresholds():
    assert parse_scores("faithful: 1\nrelevance: 2\nquestion: 1\nanswer: 3") == \
        {"faithful": 1, "relevance": 2, "question": 1, "answer": 3}
    replies = iter(["faithful: 1\nrelevance: 2\nquestion: 1\nanswer: 3", "faithful: 1\nrelevance: 1\nquestion: 1",
                    "nonsense", "faithful: 0\nrelevance: 2\nquestion: 1\nanswer: 2"])
    teacher = ScriptedTeacher({"judge": lambda p, i: next(replies)})
    rows = [rec("What is evaporation?", "It is water becoming vapour.", i) for i in range(3)] + \
        [rec("Write a haiku on rain.", "Rain on the roof...", 3, kind="skill", leaf="compositional_skills/x/qna.yaml")]
    out = judge_filter(rows, teacher)
    assert [r["id"] for r in out.kept] == ["r0", "r3"]
    assert "unreadable" in out.dropped[1][1]


def test_report_names_the_filter_that_emptied_a_leaf():
    other = "compositional_skills/x/qna.yaml"
    rows = [rec("Same question here?", "Same answer.", i, leaf=other, kind="skill") for i in range(3)] + \
        [rec("Hi?", "Hello.", 9, leaf=other, kind="skill")]
    kept, rep = run_filters(rows, {other: {"seeds": []}}, FilterConfig(use_embeddings=False))
    assert len(kept) == 1
    rows2 = [rec("Hi?", "Hello.", 9, leaf=other, kind="skill"), rec("Yo?", "Hey.", 8, leaf=other, kind="skill")]
    _, rep2 = run_filters(rows2, {other: {"seeds": []}}, FilterConfig(use_embeddings=False))
    emptied = rep2["leaves"][other]["emptied_by"]
    assert emptied["filter"] == "format" and "question has 1 words" in emptied["reasons"][0]
    md = report_markdown(rep2)
    assert "emptied by" in md and "**format**" in md and "Hi?" in md
    assert rep2["totals"]["filters"]["judge"]["skipped"].startswith("the offline teacher")


def test_filter_cache_refilters_only_a_changed_leaf():
    from pipeline.filter.run import run_filters_cached
    other = "compositional_skills/x/qna.yaml"
    rows = [rec("What is evaporation exactly?", "Evaporation is the change of liquid water into water vapour.", 1),
            rec("What does a spider eat for dinner?", "Spiders eat insects they catch.", 2, leaf=other, kind="skill")]
    cfg = FilterConfig(use_embeddings=False)
    kept1, rep1, fresh1 = run_filters_cached(rows, {}, cfg)
    assert sorted(fresh1) == sorted([LEAF, other]) and len(kept1) == 2
    rows[1] = rec("What does a spider eat for lunch?", "Spiders eat insects they catch.", 2, leaf=other, kind="skill")
    kept2, rep2, fresh2 = run_filters_cached(rows, {}, cfg)
    assert fresh2 == [other] and rep2["totals"] == rep1["totals"]


def test_filter_cache_refilters_when_a_filter_changes(monkeypatch):
    """The cache holds the filters' decisions: a change to a filter's code must filter again."""
    import pipeline.filter.run as run
    rows = [rec("What is evaporation exactly?", "Evaporation is the change of liquid water into water vapour.", 1)]
    cfg = FilterConfig(use_embeddings=False)
    run.run_filters_cached(rows, {}, cfg)
    assert run.run_filters_cached(rows, {}, cfg)[2] == []
    digest = run.code_digest()
    assert len(digest) == 12 and digest == run.code_digest()
    monkeypatch.setattr(run, "code_digest", lambda: "edited-filter")
    assert run.run_filters_cached(rows, {}, cfg)[2] == [LEAF]


def test_short_passages_quoted_from_the_document_pass_the_long_answer_minimum():
    """A long-shape answer under the minimum is dropped as a cut-off answer, unless it is two or
    more whole sentences of its source chunk copied word for word (a passage of the document)."""
    two = "Evaporation is the change of liquid water into water vapour. Most evaporation happens over the oceans,"
    chunk = CHUNK + " Clouds form when the vapour cools."
    rows = [rec('Quote the passage that begins "Evaporation is the change".', CHUNK, 1, shape="long", chunk=chunk),
            rec("What follows the first sentence?", "Most evaporation happens over the oceans, which cover about "
                "71 percent of Earth's surface. Clouds form when the vapour cools.", 2, shape="long", chunk=chunk),
            rec("Describe evaporation in detail.", "Evaporation is the change of liquid water into water vapour.",
                3, shape="long", chunk=chunk),  # one sentence: a cut-off long answer
            rec("Describe the oceans in detail.", "Most evaporation happens over the oceans. They are large.",
                4, shape="long", chunk=chunk),  # two sentences, not the document's
            rec("Quote the first words of the passage.", two, 5, shape="long", chunk=chunk)]  # cut mid-sentence
    out = format_filter(rows)
    assert [r["id"] for r in out.kept] == ["r1", "r2"]
    assert all("long answer" in why for _, why in out.dropped)


def test_plain_torch_bert_matches_transformers():
    """The fast MiniLM path (no transformers import) gives the same embeddings as transformers."""
    import numpy as np

    from pipeline.filter.bert import supports
    from pipeline.filter.embed import Embedder, default_model_path
    texts = ["The water cycle moves water between the sea, the air and the land.", "x",
             "a long text " * 200, "Ünïcödé — naïve café, 東京", ""]
    fast, slow = Embedder(), Embedder(fast=False)
    assert fast.bert is not None and slow.bert is None and supports(default_model_path())
    a, b = fast.encode(texts), slow.encode(texts)
    assert a.shape == b.shape == (5, 384)
    assert np.abs(a - b).max() < 1e-5
    assert np.abs(np.linalg.norm(a, axis=1) - 1).max() < 1e-5


def test_embeddings_are_cached_on_disk_and_damage_is_recomputed(tmp_path):
    import numpy as np

    from pipeline.filter.embed import Embedder
    texts = ["What is evaporation?", "Write a haiku about fog.", "What is evaporation?"]
    first = Embedder().encode(texts)
    again = Embedder()  # a new process would see the same file
    calls = []
    real = again._compute
    again._compute = lambda t: calls.append(list(t)) or real(t)
    assert np.array_equal(again.encode(texts), first) and calls == []
    # a damaged row (wrong length) is recomputed, not trusted
    import hashlib
    key = hashlib.sha256(texts[1].encode()).digest()
    again.cache.db.execute("UPDATE vectors SET vector = ? WHERE text = ?", (b"\0" * 7, key))
    assert np.allclose(again.encode(texts), first, atol=1e-6) and calls == [[texts[1]]]
    assert np.allclose(Embedder(cache=False).encode(texts[:1]), first[:1], atol=1e-6)
