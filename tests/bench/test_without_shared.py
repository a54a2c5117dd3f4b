"""The corpus-based benchmarks (validator, filter, webhook) run in a clone without ../shared: each says in
one line what it skipped and how to include it, and the bench still finishes."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

STEPS = [["bench/validate.py", "--quick"], ["bench/filter.py", "--quick"], ["bench/webhook.py", "--quick", "--no-knee"]]


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS, ids=[s[0] for s in STEPS])
def test_bench_runs_without_the_shared_corpus(step, tmp_path):
    empty = tmp_path / "empty-shared"
    empty.mkdir()
    env = {**os.environ, "SPROUT_SHARED": str(empty)}
    p = subprocess.run([sys.executable, *step], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    skipped = [line for line in p.stdout.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and "SPROUT_SHARED=" in skipped[0] and str(empty) in skipped[0], p.stdout[-2000:]
    assert p.stdout.strip().splitlines()[-1].startswith("{")  # the JSON line machines read


def test_nothing_is_skipped_with_the_shared_corpus(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import _shared
    finally:
        sys.path.pop(0)
    shared = tmp_path / "shared"
    (shared / "instructlab-taxonomy/snapshot-2024-08-20").mkdir(parents=True)
    monkeypatch.setenv("SPROUT_SHARED", str(shared))
    assert _shared.shared("instructlab-taxonomy/snapshot-2024-08-20", "x", "y") is not None
    assert _shared.shared("github/payloads/none.json", "x", "y") is None
    monkeypatch.setenv("SPROUT_SHARED", "")
    assert _shared.shared_root() is None
