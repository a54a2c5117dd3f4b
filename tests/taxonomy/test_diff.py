import pytest

from pipeline.taxonomy.diff import Change, GitError, changed_leaves, read_at
from tests.conftest import run_git
from tests.taxonomy.leaves import SKILL, knowledge


@pytest.fixture
def repo(tmp_path):
    run_git(tmp_path, "init", "-q", "-b", "main")
    for name in ("a", "b", "c", "d"):
        p = tmp_path / "compositional_skills" / name / "qna.yaml"
        p.parent.mkdir(parents=True)
        p.write_text(SKILL.replace("tester", name))
        (p.parent / "attribution.txt").write_text("x\n")
    (tmp_path / "README.md").write_text("hi\n")
    run_git(tmp_path, "add", "-A")
    run_git(tmp_path, "commit", "-qm", "base")
    return tmp_path


def test_added_modified_deleted_renamed_and_side_file(repo):
    base = run_git(repo, "rev-parse", "HEAD").strip()
    cs = repo / "compositional_skills"
    (cs / "a" / "qna.yaml").write_text(SKILL.replace("tester", "changed"))
    run_git(repo, "rm", "-q", "-r", "compositional_skills/b")
    run_git(repo, "mv", "compositional_skills/c", "compositional_skills/c2")
    (cs / "d" / "attribution.txt").write_text("new attribution\n")
    (cs / "e").mkdir()
    (cs / "e" / "qna.yaml").write_text(knowledge())  # unlike b, so git sees no rename
    (repo / "README.md").write_text("changed\n")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "change")
    got = changed_leaves(repo, base, "HEAD")
    assert got == [
        Change("compositional_skills/a/qna.yaml", "modified"),
        Change("compositional_skills/b/qna.yaml", "deleted"),
        Change("compositional_skills/c2/qna.yaml", "renamed", "compositional_skills/c/qna.yaml"),
        Change("compositional_skills/d/qna.yaml", "modified"),
        Change("compositional_skills/e/qna.yaml", "added"),
    ]
    assert read_at(repo, base, "compositional_skills/b/qna.yaml", 10_000) == SKILL.replace("tester", "b").encode()
    assert read_at(repo, "HEAD", "compositional_skills/b/qna.yaml", 10_000) is None
    assert len(read_at(repo, "HEAD", "compositional_skills/a/qna.yaml", 10)) == 11


def test_working_tree_includes_untracked(repo):
    new = repo / "compositional_skills" / "z" / "qna.yaml"
    new.parent.mkdir()
    new.write_text(SKILL)
    assert changed_leaves(repo, "HEAD") == [Change("compositional_skills/z/qna.yaml", "added")]


def test_bad_ref_is_a_clear_error(repo):
    with pytest.raises(GitError, match="nope"):
        changed_leaves(repo, "nope")
