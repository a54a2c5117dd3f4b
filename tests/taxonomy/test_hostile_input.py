"""Hostile files: each gives a clear finding, never a traceback, in bounded time and memory."""

import os
import resource
import signal
import string

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.taxonomy import validate_leaf
from pipeline.taxonomy.loader import LoadError, load
from pipeline.taxonomy.reader import read_leaf, validate_paths
from tests.taxonomy.leaves import ATTRIBUTION, SKILL


@pytest.fixture(autouse=True)
def hang_guard():
    # Not a speed assertion: a guard that turns a hang (the reference took 214 s on a bomb) into
    # a failure instead of a stuck suite.
    def boom(*_):
        raise TimeoutError("took longer than 20 s")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def leaf_file(tmp_path, content: bytes, rel="compositional_skills/test/qna.yaml"):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    (path.parent / "attribution.txt").write_bytes(ATTRIBUTION)
    return path


def only(result, rule):
    hits = [x for x in result.diagnostics if x.rule == rule]
    assert hits, [(x.rule, x.message) for x in result.diagnostics]
    return hits[0]


def test_billion_laughs_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    bomb = ("\n".join(lines) + "\n").encode()
    assert len(bomb) < 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    x = only(read_leaf(leaf_file(tmp_path, bomb)), "yaml-bomb")
    assert x.line <= 6 and x.is_error
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 200_000


def test_recursive_alias_is_refused(tmp_path):
    x = only(read_leaf(leaf_file(tmp_path, b"a: &x [1, *x]\n")), "yaml-syntax")
    assert "alias" in x.message


def test_50_mb_file_is_refused_unread(tmp_path):
    path = leaf_file(tmp_path, b"")
    with open(path, "wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB of NULs without using the disk
    x = only(read_leaf(path), "file-too-large")
    assert "50" in x.message.replace(",", "")[:20] or "52,428,800" in x.message


def test_latin1_file_names_the_byte_and_line(tmp_path):
    raw = SKILL.replace("tester", "Jos\u00e9").encode("latin-1")
    x = only(read_leaf(leaf_file(tmp_path, raw)), "file-encoding")
    assert (x.line, x.column) == (2, 16) and "0xe9" in x.message and "UTF-8" in x.hint


def test_utf16_file_is_named(tmp_path):
    x = only(read_leaf(leaf_file(tmp_path, SKILL.encode("utf-16"))), "file-encoding")
    assert "UTF-16" in x.message


def test_binary_file(tmp_path):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(64)
    only(read_leaf(leaf_file(tmp_path, png)), "file-binary")


def test_utf8_bom_is_accepted(tmp_path):
    assert read_leaf(leaf_file(tmp_path, b"\xef\xbb\xbf" + SKILL.encode())).ok


def test_symlink_out_of_the_tree_is_refused(tmp_path):
    outside = tmp_path / "secret.yaml"
    outside.write_text(SKILL)
    tax = tmp_path / "tax"
    link = tax / "compositional_skills" / "x" / "qna.yaml"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    results = validate_paths([tax])
    assert len(results) == 1
    x = only(results[0], "path-escape")
    assert x.is_error


def test_symlinked_folder_is_not_followed(tmp_path):
    outside = tmp_path / "elsewhere" / "leaf"
    outside.mkdir(parents=True)
    (outside / "qna.yaml").write_text(SKILL)
    tax = tmp_path / "tax" / "compositional_skills"
    tax.mkdir(parents=True)
    (tax / "linked").symlink_to(outside)
    assert validate_paths([tmp_path / "tax"]) == []


def test_directory_and_missing_file(tmp_path):
    d = tmp_path / "compositional_skills" / "qna.yaml"
    d.mkdir(parents=True)
    only(read_leaf(d), "file-unreadable")
    only(read_leaf(tmp_path / "compositional_skills" / "nope" / "qna.yaml"), "file-unreadable")


@pytest.mark.parametrize("text", [
    "[" * 5000, "{a: " * 5000, "- " * 5000 + "x", "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 3000)),
    "!!python/object/apply:os.system ['echo hi']\n", "a: !!binary AAAA\n", "? [a, b]\n: c\n",
    "<<<<<<< HEAD\na: 1\n=======\na: 2\n>>>>>>> branch\n", "a: \"\\x00\"\n", "\ufeff\ufeffa: 1\n",
    "a: 1e999999\n", "a: 2001-13-45\n", "&a a: *a\n", "a: *nope\n", "%YAML 9.9\n---\na: 1\n",
])
def test_odd_yaml_gives_a_finding_not_a_traceback(text):
    result = validate_leaf("compositional_skills/x/qna.yaml", text.encode(), attribution=ATTRIBUTION)
    assert not result.ok or result.diagnostics
    for x in result.diagnostics:
        assert x.line >= 1 and x.column >= 1 and x.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_loader_raises_only_its_own_error_on_any_bytes(raw):
    try:
        load(raw)
    except LoadError as e:
        assert e.line >= 1 and e.column >= 1 and e.message


yaml_alphabet = st.sampled_from(list(string.ascii_letters[:6]) + list(" \t\n\r:-[]{},&*!|>'\"#%@`?") +
                                ["\u00e9", "\x00", "\x85", "\ufeff", "  ", "\n  ", "- ", ": "])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(yaml_alphabet, max_size=120).map("".join))
def test_loader_raises_only_its_own_error_on_yamlish_text(text):
    try:
        load(text.encode("utf-8", "surrogatepass"))
    except LoadError as e:
        assert e.line >= 1 and e.column >= 1


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
                    max_leaves=20))
def test_validator_never_raises_on_any_structure(data):
    import yaml
    text = yaml.safe_dump(data)
    for path in ("compositional_skills/x/qna.yaml", "knowledge/x/qna.yaml"):
        validate_leaf(path, text.encode(), attribution=ATTRIBUTION)
