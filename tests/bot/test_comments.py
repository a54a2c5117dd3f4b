"""Comments over GitHub's 65,536-character limit are split, and upserts stay idempotent."""

from bot.github import GitHub, MAX_COMMENT, split_comment
from tests.bot.conftest import REPO


def test_split_keeps_every_line_and_fits():
    body = "".join(f"| row {i} | {'x' * 90} |\n" for i in range(2000))  # ~200 KB
    parts = split_comment(body, "m")
    assert len(parts) >= 3 and all(len(p) <= MAX_COMMENT for p in parts)
    assert parts[0].startswith("<!-- m -->") and parts[1].startswith("<!-- m:2 -->")
    joined = "".join(p.split("\n", 1)[1].rsplit("\n_(part", 1)[0] for p in parts)
    assert joined == body


def test_single_huge_line_is_cut():
    parts = split_comment("y" * 200_000, "m")
    assert all(len(p) <= MAX_COMMENT for p in parts) and len(parts) == 4


def test_upsert_long_comment_against_the_emulator(emulator, settings):
    emulator.add_pull(REPO, 1, "b" * 40, "h" * 40, {}, {})
    gh = GitHub(settings, seconds_between_writes=None).client(42)
    long_body = "".join(f"line {i} {'z' * 100}\n" for i in range(1500))
    first = gh.upsert_comment(REPO, 1, "sprout:report", long_body)
    again = gh.upsert_comment(REPO, 1, "sprout:report", long_body)
    assert len(first) == 3 and first == again
    assert len(emulator.comments(REPO, 1)) == 3  # a rerun adds nothing
    short = gh.upsert_comment(REPO, 1, "sprout:report", "all good now")
    assert short == first[:1]
    bodies = sorted(c["body"] for c in emulator.comments(REPO, 1))
    assert len(bodies) == 3 and any("all good now" in b for b in bodies)
    assert sum("nothing more" in b for b in bodies) == 2
