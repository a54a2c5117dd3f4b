"""Validate the leaves a pull request changes, at its head SHA, and report on GitHub."""

from __future__ import annotations

import posixpath

from pipeline import mdescape as md
from pipeline.taxonomy import render
from pipeline.taxonomy.rules import KNOWN_TREES
from pipeline.taxonomy.validate import LeafResult, Options, validate_leaf

from .github import Client

CHECK_NAME = "sprout/validate"
COMMENT_MARKER = "sprout:validate"
LEAF_FILES = ("qna.yaml", "qna.yml")


def taxonomy_path(path: str) -> str | None:
    """The path inside the taxonomy (from its known top folder), or None for other files."""
    parts = path.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in KNOWN_TREES:
            return "/".join(parts[i:])
    return None


def changed_leaves(files: list[tuple[str, str, str | None]]) -> list[str]:
    """Repository paths of leaves to validate: changed qna files, and leaves whose
    attribution.txt changed. Removed leaves are not validated."""
    leaves, removed = [], set()
    for name, status, _ in files:
        base = posixpath.basename(name)
        if taxonomy_path(name) is None:
            continue
        if base in LEAF_FILES:
            (removed.add(name) if status == "removed" else leaves.append(name))
        elif base == "attribution.txt":
            leaves.append(posixpath.join(posixpath.dirname(name), "qna.yaml"))
    seen, out = set(), []
    for leaf in leaves:
        if leaf not in seen and leaf not in removed:
            seen.add(leaf)
            out.append(leaf)
    return out


def validate_pull(gh: Client, repo: str, number: int, head_sha: str,
                  options: Options = Options()) -> tuple[list[LeafResult], int]:
    """(results, number of changed files) for the leaves a pull request touches."""
    files = gh.changed_files(repo, number)
    results = []
    for path in changed_leaves(files):
        raw = gh.read_file(repo, path, head_sha, options.max_bytes)
        if raw is None:  # an attribution.txt changed beside a leaf that does not exist
            continue
        sibling = posixpath.join(posixpath.dirname(path), "attribution.txt")
        results.append(validate_leaf(taxonomy_path(path), raw, file=path, options=options,
                                     attribution=lambda s=sibling: gh.read_file(repo, s, head_sha, options.max_bytes)))
    return results, len(files)


def report(gh: Client, repo: str, number: int, head_sha: str, results: list[LeafResult],
           changed_files: int, run, max_annotations: int = 50) -> str:
    """Complete the check run and upsert the one PR comment; returns the conclusion."""
    if not results:
        conclusion, title = "neutral", "No taxonomy leaves changed"
        summary = f"This pull request changes {changed_files} files and no `qna.yaml` leaf."
    else:
        s = render.summary(results)
        conclusion = "success" if s["invalid"] == 0 else "failure"
        title = (f"{s['valid']}/{s['leaves']} leaves valid" if conclusion == "success"
                 else f"{s['invalid']} of {s['leaves']} leaves invalid")
        summary = render.markdown(results)
    annotations = render.annotations([x for r in results for x in r.diagnostics])
    if len(annotations) > max_annotations:
        # GitHub shows 50; sending 190,000 would take 3,800 requests of the App's quota
        summary += (f"\n\n{len(annotations) - max_annotations} more findings are not annotated on the "
                    f"changed lines (the first {max_annotations} are); run `sprout validate` locally for all.")
        annotations = annotations[:max_annotations]
    gh.finish_check_run(run, conclusion, title, summary, annotations)
    if results:
        gh.upsert_comment(repo, number, COMMENT_MARKER, comment_body(head_sha, results))
    return conclusion


def comment_body(head_sha: str, results: list[LeafResult]) -> str:
    """The one validation comment on the pull request."""
    return (f"### Sprout validation for {md.code(head_sha[:7])}\n\n{render.markdown(results, limit=200)}\n\n"
            "Every finding is also annotated on the changed lines (Files changed tab). "
            "Comment `/sprout help` for commands.")


def run_validation(gh: Client, repo: str, number: int, head_sha: str, max_annotations: int = 50) -> str:
    run = gh.start_check_run(repo, CHECK_NAME, head_sha, "Validating taxonomy leaves",
                             "Sprout is reading the changed leaves.")
    results, changed = validate_pull(gh, repo, number, head_sha)
    return report(gh, repo, number, head_sha, results, changed, run, max_annotations)
