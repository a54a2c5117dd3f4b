"""One broken leaf per rule: each yields its rule id at the right line, never a traceback."""

import pytest

from pipeline.taxonomy import RULES, validate_leaf, Options
from pipeline.taxonomy.rules import Limits
from tests.taxonomy.leaves import ATTRIBUTION, SKILL, knowledge

SKILL_PATH = "compositional_skills/math/arithmetic/qna.yaml"
KNOWLEDGE_PATH = "knowledge/testing/basics/qna.yaml"


def run(text, path=SKILL_PATH, attribution=ATTRIBUTION, **opts):
    raw = text.encode() if isinstance(text, str) else text
    return validate_leaf(path, raw, attribution=attribution, options=Options(**opts))


def findings(result, rule):
    return [(x.line, x.column, x.severity.value) for x in result.diagnostics if x.rule == rule]


def test_valid_leaves_have_no_findings():
    assert run(SKILL).diagnostics == []
    assert run(knowledge(), KNOWLEDGE_PATH).diagnostics == []


CASES = [
    # (rule, text, path, expected line, severity)
    ("yaml-syntax", SKILL.replace("answer: 3 + 5 is 8.", "answer: note: 8"), SKILL_PATH, 8, "error"),
    ("yaml-duplicate-key", SKILL + "created_by: someone\n", SKILL_PATH, 15, "error"),
    ("yaml-top-level", "- just\n- a list\n", SKILL_PATH, 1, "error"),
    ("yaml-multiple-documents", SKILL + "---\nversion: 3\n", SKILL_PATH, 15, "error"),
    ("trailing-spaces", SKILL.replace("tester\n", "tester  \n"), SKILL_PATH, 2, "error"),
    ("new-line-at-end-of-file", SKILL.rstrip("\n"), SKILL_PATH, 14, "error"),
    ("new-lines", SKILL.replace("\n", "\r\n"), SKILL_PATH, 1, "error"),
    ("empty-lines", SKILL.replace("seed_examples:\n", "seed_examples:\n\n\n\n"), SKILL_PATH, 7, "warning"),
    ("schema", SKILL.replace("created_by: tester", "created_by:"), SKILL_PATH, 2, "error"),
    ("version-unsupported", SKILL.replace("version: 3", "version: 7"), SKILL_PATH, 1, "error"),
    ("version-unsupported", knowledge().replace("version: 3", "version: 2"), KNOWLEDGE_PATH, 1, "error"),
    ("leaf-name", SKILL, "compositional_skills/math/skill.yaml", 1, "error"),
    ("leaf-name-yml", SKILL, "compositional_skills/math/qna.yml", 1, "warning"),
    ("leaf-tree", SKILL, "skills/math/qna.yaml", 1, "warning"),
    ("leaf-path-style", SKILL, "compositional_skills/Math Skills/qna.yaml", 1, "warning"),
    ("duplicate-question", SKILL.replace("What is 3 + 5?", "what is  2 + 2?"), SKILL_PATH, 7, "warning"),
    ("knowledge-qna-count", knowledge(qnas=4), KNOWLEDGE_PATH, 14, "warning"),
    ("context-words", knowledge().replace("tests catch bugs early.", "word " * 501, 1), KNOWLEDGE_PATH, 6, "warning"),
    ("qna-words", knowledge().replace("Answer 0.0.", "word " * 251), KNOWLEDGE_PATH, 9, "warning"),
    ("skill-words", SKILL.replace("2 + 2 is 4.", "word " * 2400), SKILL_PATH, 4, "warning"),
    ("token-budget", SKILL.replace("2 + 2 is 4.", "word " * 1600), SKILL_PATH, 5, "warning"),
    ("mixed-grounding", SKILL.replace("  - question: What is 3 + 5?", "  - context: Five apples.\n    question: What is 3 + 5?"), SKILL_PATH, 7, "warning"),
    ("document-commit", knowledge(commit="main"), KNOWLEDGE_PATH, 48, "warning"),
    ("document-pattern", knowledge(patterns="    - ../../etc/passwd\n"), KNOWLEDGE_PATH, 50, "error"),
    ("document-pattern", knowledge(patterns="    - ~/abs/*.md\n"), KNOWLEDGE_PATH, 50, "error"),
    # real leaves write '/docs/*.md' and the reference accepts it: a warning, read from the root
    ("document-pattern-rooted", knowledge(patterns="    - /abs/*.md\n"), KNOWLEDGE_PATH, 50, "warning"),
    # the one deliberate divergence: a commit git would read as an option is an error
    ("document-commit-unsafe", knowledge(commit="--upload-pack=touch /tmp/pwned;git-upload-pack"),
     KNOWLEDGE_PATH, 48, "error"),
    ("document-commit-unsafe", knowledge(commit="'abc def'"), KNOWLEDGE_PATH, 48, "error"),
    ("yaml-tab", SKILL.replace("task_description: Answer", "task_description: |\n  Answer\n  \tindented with a tab\n "), SKILL_PATH, 5, "warning"),
    ("file-empty", "", SKILL_PATH, 1, "warning"),
    ("file-binary", b"version: 3\x00\x01\x02", SKILL_PATH, 1, "error"),
    ("file-encoding", SKILL.replace("tester", "t\u00e9ster").encode("latin-1"), SKILL_PATH, 2, "error"),
    ("yaml-bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n", SKILL_PATH, 5, "error"),
    ("attribution-missing", SKILL, SKILL_PATH, 1, "error"),
    ("file-too-large", b"a" * 2_000_001, SKILL_PATH, 1, "error"),
]


@pytest.mark.parametrize("rule,text,path,line,severity", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_rule_fires_at_its_line(rule, text, path, line, severity):
    result = run(text, path, attribution=None if rule == "attribution-missing" else ATTRIBUTION)
    hits = findings(result, rule)
    assert hits, [(x.rule, x.line, x.message) for x in result.diagnostics]
    assert hits[0][0] == line, (hits, [(x.rule, x.line, x.message) for x in result.diagnostics])
    assert hits[0][2] == severity
    for x in result.diagnostics:
        assert x.rule in RULES and x.message


def test_every_rule_is_exercised():
    covered = {c[0] for c in CASES}
    untested_here = {"file-unreadable", "path-escape", "document-check", "schema"}  # in test_reader/test_documents
    assert set(RULES) - covered - untested_here == set()


def test_strict_turns_extra_rule_warnings_into_errors():
    text = SKILL.replace("What is 3 + 5?", "What is 2 + 2?")
    assert run(text).ok
    strict = run(text, strict=True)
    assert not strict.ok and findings(strict, "duplicate-question")[0][2] == "error"


def test_version_1_leaf_gets_hygiene_as_warnings_like_the_reference():
    # InstructLab lints only version > 1; a v1 leaf with trailing spaces still passes there.
    v1 = SKILL.replace("version: 3\n", "").replace("tester\n", "tester  \n")
    result = run(v1, attribution=None)
    assert result.ok and findings(result, "trailing-spaces")[0][2] == "warning"
    assert not run(v1, attribution=None, strict=True).ok


def test_empty_attribution_is_an_error():
    result = run(SKILL, attribution=b"  \n")
    assert findings(result, "attribution-missing")


def test_attribution_is_only_fetched_when_needed():
    calls = []
    run(SKILL.replace("version: 3\n", ""), attribution=lambda: calls.append(1))
    assert calls == []


def test_grounded_skill_may_repeat_a_question_over_different_contexts():
    text = SKILL
    for i, n in enumerate(["2 + 2", "3 + 5", "10 - 4", "6 x 7", "9 / 3"]):
        text = text.replace(f"  - question: What is {n}?", f"  - context: Case {i}.\n    question: Summarise.")
    assert findings(run(text), "duplicate-question") == []


def test_unexpected_key_gets_a_did_you_mean():
    result = run(SKILL.replace("seed_examples:", "seed_example:"))
    typo = [x for x in result.diagnostics if "unexpected key" in x.message]
    assert typo and typo[0].line == 4 and "seed_examples" in typo[0].hint


def test_token_budget_is_configurable():
    text = SKILL.replace("2 + 2 is 4.", "word " * 200)
    assert not findings(run(text), "token-budget")
    assert findings(run(text, limits=Limits(token_budget=100)), "token-budget")
