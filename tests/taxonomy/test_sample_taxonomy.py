"""The sample taxonomy is real: clean, complete, and its documents are where its leaves say."""

from pathlib import Path

from pipeline.taxonomy.diff import git
from pipeline.taxonomy.documents import check_documents, match_patterns, materialize
from pipeline.taxonomy.reader import iter_leaves
from tests.conftest import ROOT

TAXONOMY = ROOT / "taxonomy"


def test_every_leaf_is_valid_without_warnings():
    leaves = list(iter_leaves(TAXONOMY))
    assert len(leaves) >= 6
    for leaf in leaves:
        assert leaf.diagnostics == [], (leaf.path, leaf.diagnostics)


def test_has_knowledge_and_grounded_and_freeform_skills():
    leaves = list(iter_leaves(TAXONOMY))
    knowledge = [x for x in leaves if x.kind == "knowledge"]
    skills = [x for x in leaves if x.kind == "compositional_skills"]
    assert len(knowledge) >= 3 and len(skills) >= 3
    grounded = [s for s in skills if all("context" in e for e in s.data["seed_examples"])]
    freeform = [s for s in skills if not any("context" in e for e in s.data["seed_examples"])]
    assert grounded and freeform


def test_knowledge_leaves_pin_the_documents_commit():
    sha = git(materialize(TAXONOMY / "documents"), "rev-parse", "main").decode().strip()
    for leaf in iter_leaves(TAXONOMY):
        if leaf.kind == "knowledge":
            assert leaf.data["document"]["commit"] == sha, (
                f"{leaf.path}: documents changed; run 'python -m pipeline.taxonomy.documents' "
                "and update document.commit")
            assert list(check_documents(leaf, TAXONOMY)) == []


def test_contexts_are_taken_from_the_documents():
    for leaf in iter_leaves(TAXONOMY):
        if leaf.kind != "knowledge":
            continue
        doc = " ".join((TAXONOMY / "documents" / leaf.data["document"]["patterns"][0]).read_text().split())
        for seed in leaf.data["seed_examples"]:
            first_sentence = " ".join(seed["context"].split()).split(". ")[0]
            assert first_sentence in doc, (leaf.path, first_sentence)


def test_glob_semantics():
    names = ["a.md", "docs/b.md", "docs/deep/c.md", "x.txt"]
    got = match_patterns(names, ["*.md", "docs/*.md", "**/*.md", "docs/**"])
    assert got["*.md"] == ["a.md"]
    assert got["docs/*.md"] == ["docs/b.md"]
    assert got["**/*.md"] == ["a.md", "docs/b.md", "docs/deep/c.md"]
    assert got["docs/**"] == ["docs/b.md", "docs/deep/c.md"]


def test_materialize_is_deterministic(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.md").write_text("# X\n")
    one = git(materialize(tmp_path / "d", tmp_path / "one.git"), "rev-parse", "main")
    two = git(materialize(tmp_path / "d", tmp_path / "two.git"), "rev-parse", "main")
    assert one == two


def test_every_sample_leaf_passes_the_reference_validator():
    pytest = __import__("pytest")
    parser = pytest.importorskip("instructlab.schema.taxonomy").TaxonomyParser
    import logging
    logging.getLogger("instructlab.schema").setLevel(logging.CRITICAL)
    leaves = sorted(TAXONOMY.rglob("qna.yaml"))
    assert any("fictional" in str(p) for p in leaves)
    for path in leaves:
        assert parser(schema_version=0, message_format="logging").parse(str(path)).errors == 0, path


def test_the_fictional_leaf_says_it_is_fictional():
    doc = (TAXONOMY / "documents" / "brenvik_isle.md").read_text()
    assert "fictional" in doc.splitlines()[0].lower() and "does not exist" in doc
    leaf = (TAXONOMY / "knowledge/geography/fictional/brenvik_isle/qna.yaml").read_text()
    assert "fictional" in leaf.lower()
