"""Never reject what the reference validator accepts: three shapes of real pull-request leaves
that an earlier Sprout refused (a rooted pattern, a dot-folder, a tab in a block scalar)."""

import pytest

from pipeline.taxonomy.reader import validate_paths
from tests.taxonomy.leaves import ATTRIBUTION, SKILL, knowledge

KNOWLEDGE_REAL = knowledge().replace("https://example.com/docs.git", "https://github.com/example/docs")


def _tree(tmp_path, rel, text):
    leaf = tmp_path / rel
    leaf.parent.mkdir(parents=True, exist_ok=True)
    leaf.write_text(text)
    (leaf.parent / "attribution.txt").write_bytes(ATTRIBUTION)
    return leaf


CASES = {
    "rooted-pattern": ("knowledge/science/rooted/qna.yaml",
                       KNOWLEDGE_REAL.replace("    - doc.md\n", "    - /docs/*.md\n")),
    "dot-folder": ("compositional_skills/.hidden/arithmetic/qna.yaml", SKILL),
    "tab-in-block-scalar": ("compositional_skills/math/tabbed/qna.yaml",
                            SKILL.replace("task_description: Answer arithmetic questions with one short sentence.",
                                          "task_description: |\n  \tAnswer arithmetic questions briefly.")),
}


def _reference(path):
    try:
        from instructlab.schema.taxonomy import TaxonomyParser
    except ImportError:
        return None
    import logging
    logging.getLogger("instructlab.schema").setLevel(logging.CRITICAL)
    return TaxonomyParser(schema_version=0, message_format="logging").parse(path).errors


@pytest.mark.parametrize("case", sorted(CASES))
def test_accepted_like_the_reference(case, tmp_path):
    rel, text = CASES[case]
    leaf = _tree(tmp_path, rel, text)
    results = validate_paths([tmp_path])
    assert [r.path for r in results] == [rel], "the walk must visit the leaf"
    assert results[0].ok, [(x.rule, x.line, x.message) for x in results[0].diagnostics]
    errors = _reference(leaf)
    if errors is not None:
        assert errors == 0, "the reference validator must accept this leaf too"


def test_rooted_pattern_warns_and_strict_rejects(tmp_path):
    from pipeline.taxonomy import Options
    rel, text = CASES["rooted-pattern"]
    _tree(tmp_path, rel, text)
    [lenient] = validate_paths([tmp_path])
    assert [x.rule for x in lenient.diagnostics] == ["document-pattern-rooted"]
    [strict] = validate_paths([tmp_path], Options(strict=True))
    assert not strict.ok


def test_git_folder_is_still_skipped(tmp_path):
    _tree(tmp_path, "compositional_skills/.git/arithmetic/qna.yaml", SKILL)
    assert validate_paths([tmp_path]) == []
