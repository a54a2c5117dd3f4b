"""Caches that pull requests fill are capped and cleaned least recently used first (issue 22):
document mirrors and materialised folders, generated samples, run folders, embeddings."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np

from pipeline.cachecap import prune, prune_runs

ROOT = Path(__file__).resolve().parents[1]


def _entry(folder: Path, name: str, size: int, age: float) -> Path:
    p = folder / name
    p.mkdir(parents=True)
    (p / "blob").write_bytes(b"x" * size)
    t = time.time() - age
    os.utime(p, (t, t))
    return p


def test_prune_removes_least_recently_used_first(tmp_path):
    old = _entry(tmp_path, "old", 1000, 300)
    kept = _entry(tmp_path, "kept", 1000, 400)  # the oldest, but in use
    mid = _entry(tmp_path, "mid", 1000, 200)
    new = _entry(tmp_path, "new", 1000, 100)
    removed = prune(tmp_path, 2500, keep={kept})
    assert removed == [old, mid] and kept.exists() and new.exists()


def test_document_folders_are_capped(tmp_path, monkeypatch):
    """Every distinct documents folder a PR names makes a materialised repository: today they pile
    up for ever; with a cap of 1 byte only the one just used is left."""
    from pipeline.taxonomy.documents import materialize
    monkeypatch.setenv("SPROUT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SPROUT_CACHE_MAX_DOCREPOS_BYTES", "1")
    made = []
    for i in range(3):
        docs = tmp_path / f"docs{i}"
        docs.mkdir()
        (docs / "a.md").write_text(f"# Doc {i}\n")
        made.append(materialize(docs))
    left = sorted((tmp_path / "cache" / "docrepos").iterdir())
    assert left == [made[-1]]


def test_run_folders_are_capped_but_registered_models_stay(tmp_path, monkeypatch):
    from pipeline.run import Run, RunConfig
    root = tmp_path / "runs"
    old_run = _entry(root, "run-old", 5000, 500)
    (old_run / "manifest.json").write_text("{}")
    model_run = _entry(root, "run-model", 5000, 600)
    (model_run / "manifest.json").write_text("{}")
    (model_run / "model").mkdir()
    (root / "models.json").write_text(json.dumps([{"id": "m", "path": str(model_run / "model"),
                                                     "run": str(model_run)}]))
    students = _entry(root, "students", 5000, 700)  # not a run folder: never a candidate
    monkeypatch.setenv("SPROUT_RUNS_MAX_BYTES", "1")
    run = Run(RunConfig(runs_root=str(root)), log=lambda *a: None)
    assert not old_run.exists()
    assert model_run.exists() and students.exists() and run.out.exists()
    assert prune_runs(root, run.out) == []


def test_embeddings_are_capped_least_recently_used_first(tmp_path, monkeypatch):
    from pipeline.filter.embed import EmbeddingCache
    monkeypatch.setenv("SPROUT_CACHE_MAX_EMBEDDINGS", "3")
    cache = EmbeddingCache(tmp_path / "e.sqlite", "m", 2)
    vec = np.ones(2, dtype=np.float32)
    cache.put({b"a": vec, b"b": vec, b"c": vec})
    time.sleep(0.01)
    assert set(cache.get([b"a"])) == {b"a"}  # a is used again: b is now the oldest
    time.sleep(0.01)
    cache.put({b"d": vec})
    assert set(cache.get([b"a", b"b", b"c", b"d"])) == {b"a", b"c", b"d"}


def test_an_old_embeddings_database_gains_the_column(tmp_path):
    from pipeline.filter.embed import EmbeddingCache
    db = sqlite3.connect(tmp_path / "e.sqlite")
    db.execute("CREATE TABLE vectors (model TEXT, text BLOB, vector BLOB, PRIMARY KEY (model, text))")
    db.execute("INSERT INTO vectors VALUES ('m', x'61', ?)", (np.ones(2, dtype=np.float32).tobytes(),))
    db.commit()
    db.close()
    cache = EmbeddingCache(tmp_path / "e.sqlite", "m", 2)
    assert set(cache.get([b"a"])) == {b"a"}
    cache.put({b"b": np.ones(2, dtype=np.float32)})


def test_generated_sample_cache_is_capped(tmp_path, monkeypatch):
    from pipeline.sdg.generate import GenerateConfig, generate
    from tests.fakes.teacher import ScriptedTeacher
    monkeypatch.setenv("SPROUT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SPROUT_CACHE_MAX_SDG_BYTES", "1")
    skills = ROOT / "taxonomy" / "compositional_skills"
    first, second = sorted(str(p.parent.relative_to(ROOT / "taxonomy")) for p in skills.rglob("qna.yaml"))[:2]
    a = generate(ROOT / "taxonomy", tmp_path / "a", ScriptedTeacher(), GenerateConfig(), only=[first])
    b = generate(ROOT / "taxonomy", tmp_path / "b", ScriptedTeacher(), GenerateConfig(), only=[second])
    left = {p.name.split(".")[0] for p in (tmp_path / "cache" / "sdg").iterdir()}
    assert left == {b["leaves"][0]["key"]} and a["leaves"][0]["key"] not in left
