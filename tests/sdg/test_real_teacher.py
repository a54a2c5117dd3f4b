"""A real model through the real path: `sprout model serve` serving SmolLM2-135M-Instruct (the
default student, from its GGUF) as the teacher and the judge for one knowledge and one skill leaf.
Every completion parses or is counted with its reason, nothing crashes, no held-out item is
written back, and the judge's unreadable replies are counted. A 135M teacher is weak: its parse
rate is printed (a floor for the pipeline, not a goal)."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.filter.run import FilterConfig, run_filters
from pipeline.sdg.generate import GenerateConfig, generate, read_jsonl, read_leaf_infos
from pipeline.sdg.heldout import leaks
from pipeline.sdg.teachers import GenParams, make_teacher

ROOT = Path(__file__).resolve().parents[2]
LEAVES = ["knowledge/history/computing/ada_lovelace", "compositional_skills/writing/freeform/haiku"]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    from pipeline.train.student import StudentError, prepare_smollm2, smollm2_gguf
    try:
        smollm2_gguf()
    except StudentError as e:
        pytest.skip(str(e))
    return prepare_smollm2(tmp_path_factory.mktemp("student") / "smollm2", log=lambda m: None)


@pytest.fixture(scope="module")
def served(smollm2, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path_factory.mktemp("serve") / "serve.log", "w+b")  # a file: a full pipe would stall it
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "model", "serve", str(smollm2), "--port", str(port),
                             "--name", "smollm2"], env=env, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"sprout model serve exited: {log.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    yield url
    os.killpg(proc.pid, 15)
    proc.wait(20)


def one_section(taxonomy: Path) -> None:
    """The knowledge leaf's document cut to its first section (one chunk: two prompts, not ten),
    its pinned commit updated to match: CPU generation runs at a few tokens a second."""
    import yaml

    from pipeline.taxonomy.diff import git
    from pipeline.taxonomy.documents import materialize
    doc = taxonomy / "documents" / "ada_lovelace.md"
    text = doc.read_text()
    cut = text.find("\n## ")
    doc.write_text(text[:cut if cut > 0 else len(text)] + "\n")
    sha = git(materialize(taxonomy / "documents"), "rev-parse", "main").decode().strip()
    qna = taxonomy / LEAVES[0] / "qna.yaml"
    data = yaml.safe_load(qna.read_text())
    data["document"]["commit"] = sha
    qna.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


@pytest.mark.slow
def test_smollm2_as_teacher_and_judge(served, sample_taxonomy, tmp_path):
    one_section(sample_taxonomy)
    teacher = make_teacher(served, model="smollm2")
    # one chunk, one completion per prompt, short completions: 3 generation requests
    config = GenerateConfig(samples=1, short_pairs=2, long_pairs=1, skill_tasks=2, skill_pairs=2,
                            params=GenParams(temperature=0.7, max_tokens=128, seed=1))
    summary = generate(sample_taxonomy, tmp_path / "out", teacher, config, only=LEAVES)
    funnel, cost = summary["funnel"], summary["cost"]
    completions = sum(funnel.values())
    assert completions == cost["requests"] * config.samples > 0  # every completion has a fate
    assert cost["errors"] == 0 and cost["completion_tokens"] > 0 and cost["prompt_tokens"] > 0

    data = tmp_path / "out"
    records = [r for f in sorted((data / "generated").glob("*.jsonl")) for r in read_jsonl(f)]
    infos = read_leaf_infos(data)
    heldout = [h for info in infos.values() for h in info["heldout"]]
    assert heldout and not leaks(heldout, records)["exact"]  # no held-out item written back

    before = teacher.cost
    # the teacher's pairs only: the leaf's own seed pairs pass the same filters in a run, but
    # judging them here would only add minutes
    generated = [r for r in records if r["teacher"] != "seed"]
    kept, rep = run_filters(generated, infos, FilterConfig(use_embeddings=False), teacher=teacher)
    judged = {k: sum(leaf["filters"]["judge"][k] for leaf in rep["leaves"].values()) for k in ("in", "out", "dropped")}
    reasons = rep["totals"]["filters"]["judge"]["reasons"]  # "judge reply unreadable", "... below the thresholds"
    judge_requests = teacher.cost.requests - before.requests
    assert judge_requests == judged["in"]  # every pair that reached the judge was asked once
    assert judged["in"] == judged["out"] + sum(reasons.values())  # every drop has its reason

    line = {"parse_rate": round(funnel["parsed"] / completions, 3), "completions": completions, "funnel": funnel,
            "pairs": len(generated), "malformed_blocks": sum(x["malformed"] for x in summary["leaves"]),
            "filters": {k: v["dropped"] for k, v in rep["totals"]["filters"].items()},
            "judge": {"asked": judge_requests, "kept": judged["out"], **reasons},
            "kept": len(kept), "generate_cost": cost,
            "rejects": {leaf["path"]: leaf["rejects"] for leaf in summary["leaves"]}}
    print("\nreal-model funnel: " + json.dumps(line))
    out = os.environ.get("SPROUT_REAL_TEACHER_REPORT")
    if out:
        Path(out).write_text(json.dumps(line, indent=2))
