"""A real model through the real path: `sprout model serve` serving SmolLM2-135M-Instruct (the
default student, from its GGUF) as the teacher and the judge for one knowledge and one skill leaf.
Every completion parses or is counted with its reason, nothing crashes, no held-out item is
written back, at least one pair parses and every parsed pair goes through the judge (asked
ahead, during generation), whose unreadable replies are counted. A 135M teacher is weak: its
parse rate is printed (a floor for the pipeline, not a goal)."""

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
    """Converted once per machine, not once per session (the GGUF dequantises in ~40 s): under
    pytest's own temporary root, which outlives a session; a lock keeps two sessions from
    converting into one folder at once."""
    import fcntl

    from pipeline.train.student import StudentError, prepare_smollm2, smollm2_gguf
    try:
        smollm2_gguf()
    except StudentError as e:
        pytest.skip(str(e))
    shared = tmp_path_factory.getbasetemp().parent / "sprout-smollm2"
    shared.mkdir(parents=True, exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return prepare_smollm2(shared / "smollm2-135m-instruct", log=lambda m: None)


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
    from pipeline.filter.judge import judge_filter, reply_key
    from pipeline.filter.run import read_replies
    one_section(sample_taxonomy)
    teacher = make_teacher(served, model="smollm2")
    # One chunk, one pair per prompt, four completions each (n=4): 3 requests, 12 completions, batched
    # by the server. "[End]" stops a completion once its pair is written (a finished completion's
    # last pair counts without it). The server samples from the seed, so a run is repeatable here:
    # seeds 1-4 parsed 8, 9, 8 and 5 of 12 (SPROUT_REAL_TEACHER_SEED measures others).
    seed = int(os.environ.get("SPROUT_REAL_TEACHER_SEED", "1"))
    config = GenerateConfig(samples=4, short_pairs=1, long_pairs=1, skill_tasks=4, skill_pairs=1,
                            params=GenParams(temperature=0.7, max_tokens=96, seed=seed, stop=("[End]",)))
    # the teacher judges each pair as soon as it parses, in the same pool (as `sprout run` does)
    summary = generate(sample_taxonomy, tmp_path / "out", teacher, config, only=LEAVES, judge=teacher)
    funnel, cost = summary["funnel"], summary["cost"]
    completions = sum(funnel.values())
    assert completions == cost["requests"] * config.samples > 0  # every completion has a fate
    assert cost["errors"] == 0 and cost["completion_tokens"] > 0 and cost["prompt_tokens"] > 0

    data = tmp_path / "out"
    records = [r for f in sorted((data / "generated").glob("*.jsonl")) for r in read_jsonl(f)]
    infos = read_leaf_infos(data)
    heldout = [h for info in infos.values() for h in info["heldout"]]
    assert heldout and not leaks(heldout, records)["exact"]  # no held-out item written back

    generated = [r for r in records if r["teacher"] != "seed"]
    replies = read_replies(data)
    assert funnel["parsed"] > 0 and generated  # the real path, not only its error branches
    # every pair the teacher wrote went through the judge, asked ahead: nothing is asked again
    judged = judge_filter(generated, teacher, replies=replies)
    assert judged.asked == 0 and all(reply_key(teacher, r) in replies for r in generated)
    assert len(judged.kept) + len(judged.dropped) == len(generated)
    reasons = {}
    for _, why in judged.dropped:  # "judge reply unreadable" or "judge scores below the thresholds"
        reasons[why.split(" (")[0]] = reasons.get(why.split(" (")[0], 0) + 1
    assert summary["judge"]["asked_ahead"] == summary["judge"]["cost"]["requests"] == len(replies) >= len(generated)

    # the whole filter chain (no embeddings), reading the same replies
    before = teacher.cost
    kept, rep = run_filters(generated, infos, FilterConfig(use_embeddings=False), teacher=teacher, replies=replies)
    chain = {k: sum(leaf["filters"]["judge"][k] for leaf in rep["leaves"].values()) for k in ("in", "out", "dropped")}
    assert teacher.cost.requests - before.requests == rep["totals"]["filters"]["judge"]["asked"] == 0
    assert chain["in"] == chain["out"] + sum(rep["totals"]["filters"]["judge"].get("reasons", {}).values())
    teacher.close()

    line = {"seed": seed, "parse_rate": round(funnel["parsed"] / completions, 3), "completions": completions, "funnel": funnel,
            "pairs": len(generated), "malformed_blocks": sum(x["malformed"] for x in summary["leaves"]),
            "judge": {"asked_ahead": summary["judge"]["asked_ahead"], "judged_pairs": len(generated),
                      "kept": len(judged.kept), **reasons,
                      "a_reply": replies[reply_key(teacher, generated[0])][:300]},
            "filters": {k: v["dropped"] for k, v in rep["totals"]["filters"].items()},
            "kept_after_all_filters": len(kept), "generate_cost": cost, "judge_cost": summary["judge"]["cost"],
            "rejects": {leaf["path"]: leaf["rejects"] for leaf in summary["leaves"]}}
    print("\nreal-model funnel: " + json.dumps(line))
    out = os.environ.get("SPROUT_REAL_TEACHER_REPORT")
    if out:
        Path(out).write_text(json.dumps(line, indent=2))
