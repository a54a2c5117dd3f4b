"""Held out at the source, and an evaluation that can say "no": the split, its disjointness from
every training turn, decontamination, the bootstrap classes, the probe's disjointness from
replay, and (slow) a destructive run that the forgetting check rejects."""

import json
from pathlib import Path

import pytest

from pipeline.eval.evaluate import EvalConfig, classify, constant_answer, evaluate, paired_interval
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


def test_scores_ignore_stopwords_so_a_constant_answer_earns_little():
    assert token_f1("The the is of a and to in the.", "It was settled in 1487 by herring fishers.") == 0.0
    assert token_f1("settled 1487 herring fishers", "It was settled in 1487 by herring fishers.") == 1.0
    leaf = {"seeds": [{"answer": "Kelp paper is made from seaweed."}, {"answer": "The kelp paper is blue."}]}
    assert constant_answer(leaf).split()[:2] == ["kelp", "paper"]


def test_classes_need_a_margin_and_an_interval_that_excludes_zero():
    up = [0.30, 0.25, 0.40, 0.20, 0.35]
    assert classify(up, 0.05, paired_interval(up)) == "Improved"
    down = [-g for g in up]
    assert classify(down, 0.05, paired_interval(down)) == "Regressed"
    noisy = [0.9, -0.6, 0.7, -0.5, 0.0]  # mean +0.1, but the interval spans zero
    lo, hi = paired_interval(noisy)
    assert lo < 0 < hi and classify(noisy, 0.05, (lo, hi)) == "No change"
    small = [0.03, 0.02, 0.04, 0.03, 0.03]  # consistent but below the margin
    assert paired_interval(small)[0] > 0 and classify(small, 0.05, paired_interval(small)) == "No change"
    assert classify([0.0] * 5, 0.05, paired_interval([0.0] * 5)) == "No change"


def test_a_run_that_learns_nothing_is_no_change_and_passes_forgetting(tmp_path):
    from tests.fakes.models import tiny_model
    model = tiny_model(tmp_path / "m")
    leaf = {"path": "knowledge/x/qna.yaml", "kind": "knowledge", "seeds": [{"answer": "Saltreach harbour"}],
            "heldout": [{"question": f"Question {i}?", "answer": f"Answer number {i} about Saltreach."} for i in range(6)]}
    result = evaluate(model, model, {leaf["path"]: leaf}, SYSTEM, EvalConfig(probe_questions=4, max_new_tokens=6))
    got = result["leaves"][leaf["path"]]
    assert got["class"] == "No change" and got["gain"] == 0.0 and got["interval"] == [0.0, 0.0]
    assert got["questions"] == 6 and len(got["heldout"]) == 6
    assert {"question", "reference", "deployed_answer", "new_answer"} <= set(got["heldout"][0])
    fg = result["forgetting"]
    assert fg["passed"] and fg["base"] == fg["new"] and fg["questions"] == 4


def test_the_forgetting_probe_is_disjoint_from_every_replay_file():
    from pipeline.filter.minhash import shingles
    probe = read_jsonl(ROOT / "pipeline/eval/general_probe.jsonl")
    assert len(probe) >= 60
    replay_files = sorted((ROOT / "pipeline").rglob("*replay*.jsonl"))
    assert replay_files
    replay = [r for f in replay_files for r in read_jsonl(f)]
    def turns(rows, role):
        return [norm(m["content"]) for r in rows for m in r["messages"] if m["role"] == role]
    for role in ("user", "assistant"):
        ours, theirs = turns(probe, role), turns(replay, role)
        assert not set(ours) & set(theirs)
        for a in ours:  # no near-duplicate either (word-bigram Jaccard)
            sa = shingles(a.split(), 2)
            for b in theirs:
                sb = shingles(b.split(), 2)
                assert len(sa & sb) / len(sa | sb) < 0.8, (a, b)


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
