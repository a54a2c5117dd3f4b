"""The model a run accepted answers through `sprout model serve` as its report says, for a client
that sends no system prompt (the prompt travels in the model's chat template)."""

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from transformers import AutoTokenizer

from pipeline.mix import SYSTEM
from pipeline.run import RunConfig, run
from pipeline.train.chat_format import carried_system_prompt
from tests.conftest import ROOT
from tests.serve.conftest import loud_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "model", "serve", *args, "--port", str(port)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sprout model serve exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("sprout model serve did not start in 90 s")


@pytest.mark.slow
def test_served_answers_equal_the_report(sample_taxonomy, tmp_path):
    # a student with loud random weights: its answers differ from prompt to prompt (and with the
    # system prompt), where the tiny student answers nothing at all, which any server would match
    student = loud_model(tmp_path / "student", seed=1)
    config = RunConfig(taxonomy=str(sample_taxonomy), out=str(tmp_path / "run"), runs_root=str(tmp_path / "runs"),
                       epochs=1, max_steps=2, embeddings=False, student=str(student), probe_questions=2)
    out, report = run(config, log=lambda m: None)
    model = report["new_model"]
    entry = json.loads((tmp_path / "runs" / "models.json").read_text())[-1]
    assert entry["path"] == model
    for phase in ("knowledge", "skills"):  # every exported phase carries the prompt it was trained with
        assert carried_system_prompt(AutoTokenizer.from_pretrained(out / "model" / phase)) == SYSTEM
    asked = [h for leaf in report["leaves"] for h in leaf["heldout"]]
    assert len(asked) > 10 and len({h["new_answer"] for h in asked}) > 5
    proc, url = start_server(model)
    try:
        def ask(messages):
            r = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                           json={"messages": messages, "temperature": 0, "max_tokens": 48})
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["message"]["content"].strip()

        served = [ask([{"role": "user", "content": h["question"]}]) for h in asked]  # as any client asks
        assert served == [h["new_answer"] for h in asked]
        # the test can fail: the same questions under another system prompt are answered otherwise
        other = [ask([{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": h["question"]}])
                 for h in asked[:5]]
        assert other != served[:5]
    finally:
        proc.terminate()
        proc.wait(10)


def test_evaluation_and_the_server_give_the_same_answers(loud, tmp_path):
    """Fast twin of the test above: a model carrying Sprout's prompt (as exports do) answers the
    evaluation's batched questions (sent with the prompt) exactly as the server answers a client
    that sends none; without the carried prompt the server's answers differ."""
    from transformers import AutoModelForCausalLM

    from pipeline.eval.evaluate import EvalConfig, answer_all, questions_for
    from pipeline.serve.openai_server import create_app
    from pipeline.train.chat_format import stamp
    from tests.sdg.test_teachers_http import serve
    tok = AutoTokenizer.from_pretrained(loud)
    stamp(tok, SYSTEM)
    AutoModelForCausalLM.from_pretrained(loud).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    questions = ["What is the highest point of Brenvik Isle?", "Where is Saltreach?", "hi", "What is a git branch?",
                 "Who was Ada Lovelace and what did she write about the Analytical Engine?"]
    items = questions_for({"heldout": [{"question": q, "answer": "x"} for q in questions]}, SYSTEM)
    reported = answer_all(tmp_path / "m", [it["messages"] for it in items], EvalConfig(max_new_tokens=24))
    answers = {}
    for name, folder in (("carried", tmp_path / "m"), ("plain", loud)):
        srv, url = serve(create_app(folder))
        try:
            answers[name] = [httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
                "messages": [{"role": "user", "content": q}], "temperature": 0, "max_tokens": 24}
            ).json()["choices"][0]["message"]["content"].strip() for q in questions]
        finally:
            srv.should_exit = True
    assert answers["carried"] == reported and len(set(reported)) > 2
    assert answers["plain"] != reported
