"""Held out at the source, and an evaluation that can say "no": the split, its disjointness from
every training turn, decontamination, the held-out ledger, the fact probe's templates apart
from replay, and (slow) runs that the forgetting check must reject or pass."""

import json
import re
from pathlib import Path

import pytest

from pipeline.eval.evaluate import EvalConfig, evaluate
from pipeline.eval.facts import check, key_facts, restate
from pipeline.eval.scoring import score, token_f1
from pipeline.mix import SYSTEM, Recipe, mix
from pipeline.sdg.generate import generate, read_jsonl, read_leaf_infos
from pipeline.sdg.heldout import decontaminate, leaks, norm, split_leaf
from pipeline.sdg.offline import complete as offline_complete
from pipeline.sdg.teachers import OfflineTeacher
from pipeline.taxonomy.reader import iter_leaves
from tests.conftest import ROOT
from tests.fakes.teacher import ScriptedTeacher


def sample_leaves():
    return [x for x in iter_leaves(ROOT / "taxonomy") if x.path.endswith("qna.yaml")]


def test_split_holds_out_at_least_one_item_per_knowledge_seed_and_per_skill():
    for leaf in sample_leaves():
        kind = "knowledge" if leaf.kind == "knowledge" else "skill"
        train, held = split_leaf(leaf.data, kind, leaf.path)
        assert held and train["seed_examples"], leaf.path
        if kind == "knowledge":
            assert sorted({h["seed_example"] for h in held}) == list(range(len(leaf.data["seed_examples"])))
            for ex in train["seed_examples"]:
                assert ex["questions_and_answers"] and ex["context"]  # the document context stays
        held_q = {h["question"] for h in held}
        kept_q = {qa["question"] for ex in train["seed_examples"] for qa in ex.get("questions_and_answers", [ex])}
        assert not held_q & kept_q
        assert split_leaf(leaf.data, kind, leaf.path) == (train, held)  # seeded: the same every time
        assert leaf.data != train  # the leaf itself is untouched (a copy is split)


def test_split_does_not_move_when_another_seed_is_added():
    leaf = next(x for x in sample_leaves() if x.path.endswith("unit_conversion/qna.yaml"))
    _, held = split_leaf(leaf.data, "skill", leaf.path)
    grown = {**leaf.data, "seed_examples": leaf.data["seed_examples"] + [
        {"question": "How many grams are in 2 kilograms?", "answer": "There are 2,000 grams in 2 kilograms."}]}
    _, held2 = split_leaf(grown, "skill", leaf.path)
    assert {h["question"] for h in held} <= {h["question"] for h in held2} | {"How many grams are in 2 kilograms?"}


class RecordingTeacher(OfflineTeacher):
    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def complete(self, prompts, n=1, params=None):
        for p in prompts:
            self.seen.append(json.dumps([p.variables, p.messages], default=str))
        return super().complete(prompts, n) if params is None else super().complete(prompts, n, params)


def test_held_out_items_never_reach_a_prompt_or_a_training_turn(tmp_path, monkeypatch):
    monkeypatch.setenv("SPROUT_CACHE", str(tmp_path / "cache"))
    teacher = RecordingTeacher()
    data = tmp_path / "data"
    generate(ROOT / "taxonomy", data, teacher)
    infos = read_leaf_infos(data)
    heldout = [h for info in infos.values() for h in info["heldout"]]
    assert len(heldout) >= 2 * len(infos)
    prompts = norm(" ".join(teacher.seen))
    for h in heldout:
        assert norm(h["question"]) not in prompts, h["question"]
        if h["kind"] == "skill":
            assert norm(h["answer"]) not in prompts, h["answer"]
    records = [r for f in sorted((data / "generated").glob("*.jsonl")) for r in read_jsonl(f)]
    mix(records, infos, data, Recipe(replay_sources=(str(ROOT / "pipeline/data/general_replay.jsonl"),)))
    rows = read_jsonl(data / "phase1.jsonl") + read_jsonl(data / "phase2.jsonl")
    found = leaks(heldout, rows)
    assert found["exact"] == []
    # every normalised held-out question and answer is absent from every training turn as such
    user_turns = {norm(m["content"]) for r in rows for m in r["messages"] if m["role"] == "user"}
    answer_turns = {norm(m["content"]) for r in rows for m in r["messages"] if m["role"] == "assistant"}
    for h in heldout:
        assert norm(h["answer"]) not in answer_turns
        assert not any(norm(h["question"]) == t for t in user_turns)


def test_decontamination_drops_a_teacher_that_writes_a_held_out_pair_back(tmp_path, monkeypatch):
    monkeypatch.setenv("SPROUT_CACHE", str(tmp_path / "cache"))
    leaf = next(x for x in sample_leaves() if "brenvik" in x.path)
    _, held = split_leaf(leaf.data, "knowledge", leaf.path)
    h = held[0]

    def echo(prompt, i):  # a teacher that "generates" the held-out pair, reworded only in case
        return (offline_complete(prompt, i) + f"\n\n[Question]\n{h['question'].upper()}\n[Answer]\n"
                f"{h['answer']}\n[End]\n\n[Question]\nTell me: {h['question']}\n[Answer]\nSomething else.\n[End]")
    teacher = ScriptedTeacher({"knowledge_short": echo})
    data = tmp_path / "data"
    generate(ROOT / "taxonomy", data, teacher, only=[leaf.path])
    records = read_jsonl(next((data / "generated").glob("*.jsonl")))
    assert records and not any(norm(h["question"]) in norm(r["question"]) for r in records)
    assert not any(norm(r["answer"]) == norm(h["answer"]) for r in records)
    assert read_leaf_infos(data)[leaf.path]["decontaminated"] >= 2
    kept, dropped = decontaminate([{"question": "Other?", "answer": h["answer"]},
                                   {"question": "Fine?", "answer": "fine"}], held)
    assert [r["question"] for r in kept] == ["Fine?"] and len(dropped) == 1


def test_a_grounded_skill_sharing_its_question_is_held_out_by_its_context():
    held = [{"kind": "skill", "question": "Summarise the text.", "answer": "A short summary.",
             "context": "The held-out passage about tides."}]
    rows = [{"messages": [{"role": "user", "content": "Another passage about wind.\n\nSummarise the text."},
                          {"role": "assistant", "content": "Wind moves."}]}]
    assert leaks(held, rows)["exact"] == []
    rows.append({"messages": [{"role": "user", "content": "The held-out passage about tides.\n\nSummarise the text."},
                              {"role": "assistant", "content": "Tides."}]})
    assert len(leaks(held, rows)["exact"]) == 1


def test_the_restated_question_scores_well_on_words_and_nothing_on_facts():
    q, ref = "When was the Marrant Seawall finished?", "The Marrant Seawall was finished in 1711."
    assert score(restate(q), ref) > 0.5  # word overlap rewards restating ...
    assert not check(restate(q), key_facts(q, ref), q)["hit"]  # ... key facts do not
    assert token_f1("The the is of a and to in the.", "It was settled in 1487 by herring fishers.") == 0.0


def test_knowledge_leaves_have_ten_scored_items_where_the_material_allows():
    from pipeline.sdg.generate import leaf_info
    counts = {}
    for leaf in sample_leaves():
        info = leaf_info(leaf, 0)
        if info["kind"] == "knowledge":
            counts[leaf.path.split("/")[-2]] = sum(1 for h in info["heldout"] if h["facts"])
    fixture = next(iter_leaves(ROOT / "tests/fixtures/unseen_leaf"))
    counts["orrin_lake"] = sum(1 for h in leaf_info(fixture, 0)["heldout"] if h["facts"])
    assert counts["brenvik_isle"] >= 10 and counts["orrin_lake"] >= 10
    # Ada Lovelace (9: one pair of each example stays for training), the water cycle and Git
    # (mostly definitions) have fewer items with a checkable fact: they are said to be Not
    # enough evidence rather than judged on too little
    assert counts["ada_lovelace"] == 9 and counts["water_cycle"] < 10 and counts["git_basics"] < 10


def test_editing_one_question_never_moves_another_examples_choice():
    leaf = next(x for x in sample_leaves() if x.path.endswith("brenvik_isle/qna.yaml"))
    _, held = split_leaf(leaf.data, "knowledge", leaf.path)
    for i, ex in enumerate(leaf.data["seed_examples"]):
        for j in range(len(ex["questions_and_answers"])):
            edited = json.loads(json.dumps(leaf.data))
            edited["seed_examples"][i]["questions_and_answers"][j]["question"] += " Please answer."
            _, held2 = split_leaf(edited, "knowledge", leaf.path)
            others = lambda hs: [h["question"] for h in hs if h["seed_example"] != i]  # noqa: E731
            assert others(held) == others(held2)


def test_the_ledger_drops_items_the_lineage_trained_on(tmp_path):
    from pipeline.eval.ledger import lineage_runs, lineage_turns, trained_on
    from pipeline.sdg.generate import write_jsonl
    parent_run, child_run = tmp_path / "r1", tmp_path / "r2"
    row = lambda q, a: {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}  # noqa: E731
    write_jsonl(parent_run / "data/phase1.jsonl", [row("When was the Marrant Seawall finished?", "In 1711.")])
    write_jsonl(child_run / "data/phase1.jsonl", [row("Who governs Brenvik Isle?", "The Council of Nine Wardens.")])
    registry = [{"id": "a", "path": str(tmp_path / "m1"), "run": str(parent_run), "parent": str(tmp_path / "base")},
                {"id": "b", "path": str(tmp_path / "m2"), "run": str(child_run), "parent": str(tmp_path / "m1")}]
    assert lineage_runs(registry, tmp_path / "m2") == [child_run, parent_run]
    turns = lineage_turns(registry, tmp_path / "m2")
    assert trained_on("When was the Marrant Seawall finished?", "x", turns)  # the parent's training data counts
    assert trained_on("Anything?", "The Council of Nine Wardens.", turns)
    assert not trained_on("What is the main export of Brenvik Isle?", "Kelp paper.", turns)
    # and the split never holds out a question the lineage trained on
    leaf = next(x for x in sample_leaves() if x.path.endswith("brenvik_isle/qna.yaml"))
    _, held = split_leaf(leaf.data, "knowledge", leaf.path)
    _, held2 = split_leaf(leaf.data, "knowledge", leaf.path, trained=frozenset({norm(held[0]["question"])}))
    assert held[0]["question"] not in {h["question"] for h in held2}


def test_a_run_that_learns_nothing_is_no_change_and_passes_forgetting(tmp_path):
    from tests.fakes.models import tiny_model
    model = tiny_model(tmp_path / "m")
    leaf = {"path": "knowledge/x/qna.yaml", "kind": "knowledge", "seeds": [{"answer": "Saltreach harbour"}],
            "heldout": [{"question": f"When was stone {i} laid?", "answer": f"Stone {i} was laid in {1700 + i}."}
                        for i in range(12)]}
    result = evaluate(model, model, {leaf["path"]: leaf}, SYSTEM, EvalConfig(probe_questions=4, max_new_tokens=6))
    got = result["leaves"][leaf["path"]]
    assert got["class"] == "No change" and got["gain"] == 0.0 and got["p_up"] == 1.0
    assert got["questions"] == 12 and len(got["heldout"]) == 12 and got["key_facts"]["items"] == 12
    assert {"question", "reference", "deployed_answer", "new_answer", "facts", "hit_deployed", "hit_new"} <= set(got["heldout"][0])
    assert got["heldout"][0]["facts"] == [{"kind": "year", "value": "1700", "text": "1700"}]
    fg = result["forgetting"]
    assert fg["passed"] and fg["base"] == fg["new"] and fg["questions"] == 4 and fg["against"]["deployed"]["lost"] == 0
    few = {**leaf, "heldout": leaf["heldout"][:2]}
    assert evaluate(model, model, {leaf["path"]: few}, SYSTEM, EvalConfig(probe_questions=2, max_new_tokens=4)
                    )["leaves"][leaf["path"]]["class"] == "Not enough evidence"


def template(text: str) -> list[str]:
    """A text's frame: its words with names and numbers as slots."""
    return ["X" if w[:1].isupper() or w[:1].isdigit() else w.lower() for w in re.findall(r"[\w'°%-]+", text)]


def frames(text: str) -> set[tuple[str, ...]]:
    """Word trigrams of the frame that hold a content word: what a shared template would share
    ("chemical symbol for", "the capital of"), whichever topic fills the slots."""
    from pipeline.eval.scoring import STOPWORDS
    t = template(text)
    return {tuple(t[i:i + 3]) for i in range(len(t) - 2)
            if any(w != "X" and w not in STOPWORDS for w in t[i:i + 3])}


def test_the_fact_probe_shares_no_template_with_any_replay_file():
    probe = read_jsonl(ROOT / "pipeline/eval/fact_probe.jsonl")
    assert len(probe) >= 60 and all(len(p["distractors"]) >= 3 for p in probe)
    replay_files = sorted((ROOT / "pipeline").rglob("*replay*.jsonl"))
    assert replay_files
    replay = [m["content"] for f in replay_files for r in read_jsonl(f) for m in r["messages"]]
    theirs = set().union(*(frames(t) for t in replay))
    for p in probe:
        for text in (p["text"], f"{p['text']} {p['answer']}"):
            assert not frames(text) & theirs, (text, frames(text) & theirs)
        assert not any(norm(p["text"]) in norm(t) for t in replay)
    # the check bites: the replay's own template with another topic is caught
    assert frames("The chemical symbol for sodium is Na.") & frames("The chemical symbol for gold is Au.")


def test_score_is_in_range():
    assert 0.0 <= score("anything at all", "Brenvik Isle lies in the Cold Harrow Sea.") <= 1.0


@pytest.mark.slow
def test_a_destructive_run_is_rejected(sample_taxonomy, tmp_path):
    """SmolLM2 trained at a learning rate far too high: the probe loss explodes, the run is
    rejected. The same check passes a model that learns nothing (above): it can go either way."""
    from pipeline.run import RunConfig, run
    from pipeline.train.student import StudentError, smollm2_gguf
    try:  # the package's own __init__ imports `llm`, which Sprout does not install: find the file
        smollm2_gguf()
    except StudentError as e:
        pytest.skip(str(e))
    config = RunConfig(taxonomy=str(sample_taxonomy), out=str(tmp_path / "run"), runs_root=str(tmp_path / "runs"),
                       embeddings=False, lr=0.05, train_layers=2, epochs=1, max_steps=3, probe_questions=12)
    out, report = run(config, log=lambda m: None)
    assert report["student"] == {"name": "SmolLM2-135M-Instruct", "pretrained": True}
    assert report["verdict"] == "rejected"
    assert any(r.startswith("forgetting check failed") for r in report["reasons"]), report["reasons"]
    fg = report["forgetting"]
    assert not fg["passed"] and fg["new"] > fg["base"] * 1.1
    assert json.loads((tmp_path / "runs/models.json").read_text())[-1]["verdict"] == "rejected"
    # the run folder keeps what anyone needs to check the split
    assert (out / "data/phase1.jsonl").exists() and (out / "data/phase2.jsonl").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["heldout"] and all({"leaf", "question", "answer"} <= set(h) for h in manifest["heldout"])
    assert leaks(manifest["heldout"], read_jsonl(out / "data/phase1.jsonl") + read_jsonl(out / "data/phase2.jsonl"))["exact"] == []
    md = (out / "report.md").read_text()
    assert "Smoke run" not in md and "SmolLM2-135M-Instruct" in md and "FAILED" in md
