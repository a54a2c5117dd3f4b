import json

from pipeline.mix import Recipe, mix
from pipeline.sdg.generate import read_jsonl, write_jsonl


def recs(leaf, kind, n, chunk="c1"):
    return [{"id": f"{leaf}{i}", "leaf": leaf, "kind": kind, "shape": "short" if kind == "knowledge" else "skill",
             "question": f"Question {i} about {leaf}?", "answer": f"Answer {i}.",
             "source_chunk": f"Text of {chunk}." if kind == "knowledge" else None,
             "chunk_id": chunk if kind == "knowledge" else None, "context": None} for i in range(n)]


def test_caps_upsampling_phases_and_recipe(tmp_path):
    records = recs("k/big", "knowledge", 500) + recs("k/small", "knowledge", 3) + recs("s/skill", "skill", 40)
    leaves = {"k/big": {"chunks": [{"id": "c1", "text": "Text of c1."}, {"id": "c2", "text": "Other text."},
                                   {"id": "c3", "text": "Third text."}]}}
    replay = tmp_path / "old.jsonl"
    write_jsonl(replay, [{"messages": [{"role": "user", "content": "old q"}, {"role": "assistant", "content": "old a"}]}] * 5)
    summary = mix(records, leaves, tmp_path / "out", Recipe(max_per_leaf=100, min_per_leaf=10, replay_ratio=0.2,
                                                             replay_sources=(str(replay),)))
    assert summary["leaves"]["k/big"]["action"] == "capped 500 -> 100"
    assert summary["leaves"]["k/small"]["action"] == "upsampled 3 -> 10"
    assert summary["leaves"]["s/skill"]["action"] == "kept as is"
    p1 = read_jsonl(tmp_path / "out/phase1.jsonl")
    p2 = read_jsonl(tmp_path / "out/phase2.jsonl")
    assert summary["phase1"]["knowledge"] == 110 and summary["phase1"]["replay"] == round(110 * 0.25)
    assert len(p1) == 110 + summary["phase1"]["replay"]
    assert all(m["messages"][-1]["role"] == "assistant" for m in p1 + p2)
    rc = [m for m in p2 if m["metadata"].get("form") == "reading_comprehension"]
    assert rc and all("Document 1:" in m["messages"][1]["content"] for m in rc)
    assert any("Other text." in m["messages"][1]["content"] or "Third text." in m["messages"][1]["content"] for m in rc)
    recipe = json.loads((tmp_path / "out/recipe.json").read_text())
    assert recipe["recipe"]["max_per_leaf"] == 100 and recipe["leaves"]["k/small"]["used"] == 10


def test_recipe_file_rejects_unknown_keys(tmp_path):
    import pytest
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"max_per_leaf": 5, "hidden_cap": 30}))
    with pytest.raises(ValueError, match="hidden_cap"):
        Recipe.load(f)


def test_reading_comprehension_is_capped_per_chunk(tmp_path):
    """Each reading-comprehension sample holds three chunks: one per replayed sample made it most
    of phase 2's tokens. A few per source chunk keep the form at a fraction of the cost."""
    records = recs("k/a", "knowledge", 40, chunk="c1") + recs("k/b", "knowledge", 40, chunk="c2")
    for r in records[40:]:
        r["id"] += "b"
    chunks = [{"id": "c1", "text": "Text of c1."}, {"id": "c2", "text": "Text of c2."}, {"id": "c3", "text": "Third text."}]
    leaves = {"k/a": {"chunks": chunks}, "k/b": {"chunks": chunks}}
    capped = mix(records, leaves, tmp_path / "capped", Recipe(knowledge_replay=0.5, reading_comprehension_per_chunk=2))
    free = mix(records, leaves, tmp_path / "free", Recipe(knowledge_replay=0.5, reading_comprehension_per_chunk=0))
    assert capped["phase2"]["reading_comprehension"] == 4  # 2 leaves x 1 chunk x 2
    assert free["phase2"]["reading_comprehension"] == free["phase2"]["knowledge_replay"] == 40
