"""Our verdicts on the real InstructLab taxonomy agree with the reference validator's."""

import re
import shutil
from pathlib import Path

import pytest

from pipeline.taxonomy.reader import read_leaf, validate_paths
from pipeline.taxonomy.schema import fast_check, _validator
from pipeline.taxonomy.loader import load
from tests.conftest import TAXONOMY_CORPUS, need_shared


def reference_verdicts(name: str) -> dict[str, str]:
    out = {}
    for line in need_shared(TAXONOMY_CORPUS / "reference-verdicts" / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        path, verdict = line.split("\t")[:2]
        out[path.split("/", 1)[1]] = verdict
    return out


@pytest.mark.parametrize("corpus,verdicts", [
    ("main-2025-04-25", "ref_results_taxonomy.txt"),
    ("snapshot-2024-08-20", "ref_results_taxonomy_2024-08-20.txt"),
])
def test_public_taxonomy_matches_reference(corpus, verdicts):
    root = need_shared(TAXONOMY_CORPUS / corpus)
    expected = reference_verdicts(verdicts)
    results = validate_paths([root])
    ours = {r.path: ("OK" if r.ok else "ERROR") for r in results}
    assert set(ours) == set(expected)
    disagree = {p: (ours[p], expected[p]) for p in ours if ours[p] != expected[p]}
    assert not disagree, disagree
    if corpus == "snapshot-2024-08-20":
        bad = [r for r in results if not r.ok]
        assert [r.path for r in bad] == ["knowledge/textbook/history/ibm_history/qna.yaml"]
        assert bad[0].diagnostics[0].rule == "version-unsupported"


# Each broken leaf: the rule and line (and column where it matters) of its first error. Lines
# for schema errors are where the offending key or value is written; the reference says 1:1.
INVALID = {
    "01_yamllint_trailing_spaces_no_eol": [("trailing-spaces", 100, 71), ("trailing-spaces", 118, 15),
                                           ("trailing-spaces", 124, 1), ("new-line-at-end-of-file", 124, 7)],
    "02_yaml_syntax_mapping_values": [("yaml-syntax", 69, 15)],
    "03_knowledge_v1_unsupported": [("version-unsupported", None, None)],
    "04_seed_examples_missing_question_answer": [("schema", 5, 5), ("schema", 6, 5)],
    "05_created_by_null": [("schema", 5, 13)],
    "06_typo_seed_example_key": [("schema", 1, 1), ("schema", 2, 1)],
    "07_empty_question_answer": [("schema", 4, 13), ("schema", 5, 15)],
    "08_yaml_syntax_markdown_fence": [("yaml-syntax", 5, 1)],
    "09_too_few_seed_examples": [("schema", 6, 3)],
    "10_knowledge_v3_missing_questions_and_answers": [("schema", 51, 5), ("schema", 73, 5),
                                                      ("schema", 95, 5), ("schema", 119, 1)],
    "11_answer_not_string_percent_in_message": [("schema", 34, 13), ("schema", 45, 13)],
    "12_missing_attribution_txt": [("attribution-missing", None, None)],
}
STILL_INVALID_AFTER = {"09_too_few_seed_examples", "10_knowledge_v3_missing_questions_and_answers",
                       "11_answer_not_string_percent_in_message", "12_missing_attribution_txt"}


def _leaf(example: str) -> Path:
    found = list((need_shared(TAXONOMY_CORPUS / "invalid") / example).rglob("qna.yaml"))
    assert len(found) == 1
    return found[0]


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text("utf-8", "replace").splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


@pytest.mark.parametrize("example", sorted(INVALID))
def test_invalid_leaf_rejected_at_the_right_line(example):
    path = _leaf(example)
    result = read_leaf(path)
    assert not result.ok
    errors = sorted(x for x in result.diagnostics if x.is_error)
    for rule, line, col in INVALID[example]:
        hits = [x for x in errors if x.rule == rule and (line is None or x.line == line)
                and (col is None or x.column == col)]
        assert hits, (rule, line, col, [(x.rule, x.line, x.column, x.message) for x in errors])
    for x in errors:
        assert x.message and "%s" not in x.message  # issue 11: a '%' in data must not break formatting
    if example == "03_knowledge_v1_unsupported":
        assert errors[0].message.startswith("Version 1 is not supported for knowledge")
    if example == "06_typo_seed_example_key":
        typo = next(x for x in errors if "seed_example'" in x.message)
        assert "seed_examples" in typo.hint  # a did-you-mean hint
    if example == "11_answer_not_string_percent_in_message":
        assert _line_of(path, "answer:") <= 34


def test_schema_errors_point_at_the_offending_node():
    # The reference reports every schema error at 1:1; we point at the node itself.
    path = _leaf("05_created_by_null")
    x = next(x for x in read_leaf(path).diagnostics if x.rule == "schema")
    assert x.line == _line_of(path, "created_by:") and x.yaml_path == ".created_by"


def test_warning_only_leaf_passes_with_its_warning():
    result = read_leaf(_leaf("13_warning_only_too_many_blank_lines"))
    assert result.ok
    assert [(x.rule, x.line, x.severity.value) for x in result.diagnostics] == [("empty-lines", 199, "warning")]


@pytest.mark.parametrize("example", sorted(INVALID) + ["13_warning_only_too_many_blank_lines"])
def test_fixed_version_passes_where_it_was_fixed(example, tmp_path):
    before = _leaf(example)
    rel = before.relative_to(TAXONOMY_CORPUS / "invalid" / example)
    dest = tmp_path / rel
    dest.parent.mkdir(parents=True)
    shutil.copy(before.with_name("qna.yaml.after"), dest)
    if before.with_name("attribution.txt").exists():
        shutil.copy(before.with_name("attribution.txt"), dest.with_name("attribution.txt"))
    result = read_leaf(dest)
    assert result.ok == (example not in STILL_INVALID_AFTER), [
        (x.rule, x.line, x.message) for x in result.diagnostics if x.is_error]


def test_fast_schema_check_agrees_with_jsonschema_on_the_corpus():
    root = need_shared(TAXONOMY_CORPUS)
    checked = 0
    for path in sorted(root.rglob("qna.yaml*")):
        try:
            data = load(path.read_bytes()).data
        except Exception:
            continue
        if not isinstance(data, dict):
            continue
        for kind in ("compositional_skills", "knowledge"):
            for version in (1, 2, 3):
                fast = fast_check(kind, version)
                if fast is None:
                    continue
                assert fast(data) == _validator(kind, version).is_valid(data), (path, kind, version)
                checked += 1
    assert checked > 300
