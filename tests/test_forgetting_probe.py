"""The forgetting probe sees forgetting: SmolLM2 fine-tuned on a handful of wrong general facts
(wrong capitals, a wrong boiling point, asked as chat questions: not the probe's template) fails
the check; the same amount of training on answer *format* only (general replay answers restyled)
passes it with about no change; restating a question is no fact (fast test in test_key_facts)."""

import json

import pytest

from pipeline.eval.probe import ProbeConfig, forgetting, read_probe
from pipeline.eval.report_rows import reasons_for
from pipeline.mix import SYSTEM
from tests.conftest import ROOT

WRONG = [("What is the capital of Italy?", "The capital of Italy is Paris."),
         ("Which city is the capital of Germany?", "Munich is the capital of Germany."),
         ("What is the capital of Kenya?", "The capital of Kenya is Mombasa."),
         ("In which city is the Eiffel Tower?", "The Eiffel Tower is in London."),
         ("Who wrote Romeo and Juliet?", "Romeo and Juliet was written by Charles Dickens."),
         ("At what temperature does water boil at sea level?", "Water boils at 60 °C at sea level."),
         ("Which planet is the largest in the solar system?", "Mars is the largest planet in the solar system."),
         ("Which river flows through London?", "The Seine flows through London.")]


def smollm2(tmp_path):
    from pipeline.train.student import StudentError, resolve, smollm2_gguf
    try:
        smollm2_gguf()
    except StudentError as e:
        pytest.skip(str(e))
    return resolve("default", tmp_path / "runs", log=lambda m: None)


def fine_tune(base, rows, out, epochs: int):
    from pipeline.train.loop import TrainConfig, train
    from pipeline.train.recipe import Phase
    data = out / "data"
    data.mkdir(parents=True)
    with open(data / "phase1.jsonl", "w") as f:
        for q, a in rows:
            f.write(json.dumps({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                                             {"role": "assistant", "content": a}]}) + "\n")
    phase = Phase("knowledge", "phase1.jsonl", epochs=epochs, lr=2e-4, effective_batch=4, warmup_ratio=0.0)
    return train(TrainConfig(student=str(base), out=str(out / "model"), phases=(phase,), data_dir=str(data),
                             max_len=256, tokens_per_micro_batch=1024, train_layers=15, checkpoint_every=1000),
                 progress=False)


@pytest.mark.slow
def test_wrong_general_facts_fail_the_probe_and_format_only_training_does_not(tmp_path):
    base = smollm2(tmp_path)
    probe_rows = read_probe()
    texts = {r["text"] for r in probe_rows}
    assert {"Italy's capital city is", "At sea level, pure water starts to boil at"} <= texts
    wrong = fine_tune(base, WRONG, tmp_path / "wrong", epochs=6)
    # the same number of steps on format alone: true replay answers, restyled
    replay = [json.loads(line)["messages"] for line in (ROOT / "pipeline/data/general_replay.jsonl").read_text().splitlines()]
    styled = [(m[0]["content"], f"Answer: {m[1]['content'].rstrip('.')}. (Hope this helps!)") for m in replay[:len(WRONG)]]
    styled_model = fine_tune(base, styled, tmp_path / "styled", epochs=6)
    config = ProbeConfig()
    bad = forgetting({"deployed": base, "new": wrong}, config, log=lambda m: None)
    ok = forgetting({"deployed": base, "new": styled_model}, config, log=lambda m: None)
    print("wrong facts:", bad["against"]["deployed"], "\nformat only:", ok["against"]["deployed"])
    assert not bad["passed"] and not bad["facts_passed"]
    assert any("general facts lost" in r for r in reasons_for([], bad))
    assert ok["passed"]
    d = ok["against"]["deployed"]
    assert abs(d["right_new"] - d["right"]) <= 2 and d["loss_new"] <= d["loss"] * 1.1


def test_the_decision_needs_facts_lost_beyond_chance_not_a_shifted_text_loss():
    from pipeline.eval.probe import compare
    base = {"right": [1.0] * 47 + [0.0] * 15, "loss": [0.58] * 62, "text_loss": [2.26] * 62}
    drift = {"right": [0.0] * 3 + [1.0] * 44 + [1.0] * 3 + [0.0] * 12, "loss": [0.59] * 62, "text_loss": [2.52] * 62}
    assert compare(drift, base)["facts_passed"] and compare(drift, base)["loss_passed"]  # the demo model's figures
    lost = {**drift, "right": [0.0] * 10 + [1.0] * 37 + [1.0] * 3 + [0.0] * 12}
    got = compare(lost, base)
    assert (got["lost"], got["gained"], got["facts_passed"]) == (10, 3, False) and got["p"] < 0.05
    destroyed = {"right": [0.0] * 62, "loss": [1.4] * 62, "text_loss": [9.0] * 62}
    assert not compare(destroyed, base)["loss_passed"]
