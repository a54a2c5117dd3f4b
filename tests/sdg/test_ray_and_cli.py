"""The same generation on local Ray (Ray Data), and the three commands end to end."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.sdg.generate import generate, read_jsonl
from pipeline.sdg.teachers import OfflineTeacher
from tests.conftest import ROOT


@pytest.mark.slow
def test_generation_on_ray_matches_in_process(sample_taxonomy, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import ray
    from pipeline.distributed import ray_runner
    local = generate(sample_taxonomy, tmp_path / "local", OfflineTeacher())
    monkeypatch.setenv("SPROUT_CACHE", str(tmp_path / "other-cache"))  # nothing cached for the Ray run
    try:
        on_ray = generate(sample_taxonomy, tmp_path / "ray", OfflineTeacher(), runner=ray_runner(OfflineTeacher()))
    finally:
        ray.shutdown()
    assert [x["status"] for x in on_ray["leaves"]] == ["generated"] * 7
    for a, b in zip(local["leaves"], on_ray["leaves"]):
        assert a["samples"] == b["samples"]
    f = "knowledge__science__earth__water_cycle.jsonl"
    assert read_jsonl(tmp_path / "local/generated" / f) == read_jsonl(tmp_path / "ray/generated" / f)


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_generate_filter_mix_commands(tmp_path):
    out = tmp_path / "data"
    g = run("generate", "taxonomy", "--out", str(out))
    assert g.returncode == 0, g.stderr
    assert "7 leaves (7 generated, 0 from cache)" in g.stdout
    again = run("generate", "taxonomy", "--out", str(out))
    assert "(0 generated, 7 from cache)" in again.stdout
    f = run("filter", str(out), "--no-embeddings")
    assert f.returncode == 0, f.stderr
    assert "near_dedup" in f.stdout and (out / "filter_report.md").exists()
    m = run("mix", str(out))
    assert m.returncode == 0, m.stderr
    assert "phase 1:" in m.stdout and (out / "phase1.jsonl").exists()
    rows = [json.loads(x) for x in (out / "phase2.jsonl").read_text().splitlines()]
    assert rows and all(r["messages"][-1]["role"] == "assistant" for r in rows)
    assert run("mix", str(tmp_path / "nothing")).returncode == 2
    assert run("generate", "--teacher", "nonsense").returncode == 2


@pytest.mark.slow
def test_filtering_leaf_by_leaf_on_ray(sample_taxonomy, tmp_path):
    pytest.importorskip("ray")
    import ray
    from pipeline.distributed import ray_map
    from pipeline.filter.run import FilterConfig, run_filters_by_leaf
    generate(sample_taxonomy, tmp_path / "o", OfflineTeacher())
    records = [r for f in sorted((tmp_path / "o/generated").glob("*.jsonl")) for r in read_jsonl(f)]
    leaves = {x["path"]: x for x in read_jsonl(tmp_path / "o/leaves.jsonl")}
    config = FilterConfig(use_embeddings=False)
    local_kept, local_rep = run_filters_by_leaf(records, leaves, config)
    try:
        ray_kept, ray_rep = run_filters_by_leaf(records, leaves, config, runner=ray_map)
    finally:
        ray.shutdown()
    assert sorted(r["id"] for r in ray_kept) == sorted(r["id"] for r in local_kept)
    assert ray_rep["totals"] == local_rep["totals"] and len(ray_rep["leaves"]) == 7
