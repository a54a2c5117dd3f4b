"""`sprout validate`: check leaves the way CI and the bot do."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


EXAMPLES_VALIDATE = """\
examples:
  sprout validate                       validate ./taxonomy (or the current folder)
  sprout validate path/to/taxonomy      validate every leaf of a taxonomy
  sprout validate knowledge/x/qna.yaml  validate one leaf
  sprout validate --diff origin/main    validate only the leaves changed since origin/main
  sprout validate --format github       print annotations for a GitHub Actions log
  sprout validate --strict              turn the warnings of Sprout's extra rules into errors

exit status: 0 all valid, 1 some leaf invalid, 2 usage or I/O error
"""


def _default_paths() -> list[Path]:
    return [Path("taxonomy")] if Path("taxonomy").is_dir() else [Path(".")]


def cmd_validate(args: argparse.Namespace) -> int:
    from ..taxonomy import render
    from ..taxonomy.diff import GitError, changed_leaves, repo_root
    from ..taxonomy.reader import expand, read_leaf
    from ..taxonomy.rules import Limits
    from ..taxonomy.validate import Options

    options = Options(strict=args.strict, max_bytes=args.max_bytes,
                      limits=Limits(token_budget=args.token_budget))
    paths = [Path(p) for p in args.paths] or _default_paths()
    for p in paths:
        if not p.exists() and not p.is_symlink():
            print(f"sprout validate: {p}: no such file or folder", file=sys.stderr)
            return 2
    deleted: list[str] = []
    if args.diff:
        try:
            targets = []
            for p in paths:
                root = repo_root(p.resolve())
                under = os.path.relpath(p.resolve(), root)
                for change in changed_leaves(root, args.diff, under="" if under == "." else under):
                    if change.status == "deleted":
                        deleted.append(change.path)
                    else:
                        targets.append(root / change.path)
        except GitError as e:
            print(f"sprout validate: --diff {args.diff}: {e}", file=sys.stderr)
            return 2
    else:
        targets = list(expand(paths))
    results = [read_leaf(t, options) for t in targets]
    if args.check_documents:
        from ..taxonomy.documents import check_documents
        from ..taxonomy.reader import split_taxonomy_path
        for i, r in enumerate(results):
            if r.kind == "knowledge" and r.data is not None:
                print(f"checking documents {i + 1}/{len(results)}: {r.file}", file=sys.stderr)
                root, _ = split_taxonomy_path(Path(os.path.abspath(targets[i])))
                r.diagnostics.extend(check_documents(r, root))
    fmt = args.format
    if fmt == "auto":
        fmt = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
    if fmt == "json":
        print(render.to_json(results))
    elif fmt == "github":
        print(render.github(results))
    else:
        if args.diff:
            print(f"{len(results)} changed leaves since {args.diff}"
                  + (f" ({len(deleted)} deleted, not checked)" if deleted else ""))
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                           and not os.environ.get("NO_COLOR"))
        print(render.text(results, color=color, show_hints=not args.no_hints))
    return 0 if all(r.ok for r in results) else 1


def register(sub) -> None:
    v = sub.add_parser(
        "validate", help="check qna.yaml leaves: YAML, schema and content rules",
        description="Check taxonomy leaves (qna.yaml) the way CI and the Sprout bot do: YAML "
                    "syntax and hygiene, the JSON Schema of the leaf's version, and content "
                    "rules. Each finding names file:line:column, a rule id and a hint.",
        epilog=EXAMPLES_VALIDATE, formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("paths", nargs="*", metavar="PATH",
                   help="taxonomy folders or leaf files (default: ./taxonomy, else .)")
    v.add_argument("--diff", metavar="BASE_REF",
                   help="only leaves changed between BASE_REF and the working tree (git)")
    v.add_argument("--format", choices=["auto", "text", "json", "github"], default="auto",
                   help="output: text for people, json for machines, github for workflow "
                        "annotations (auto: github inside GitHub Actions, else text)")
    v.add_argument("--strict", action="store_true",
                   help="treat the warnings of rules beyond InstructLab's as errors")
    v.add_argument("--check-documents", action="store_true",
                   help="also fetch each knowledge leaf's document repo at its commit and check "
                        "that its patterns match readable Markdown (needs git access)")
    v.add_argument("--max-bytes", type=int, default=1_000_000, metavar="N",
                   help="refuse leaf files larger than N bytes (default: 1000000)")
    v.add_argument("--token-budget", type=int, default=2048, metavar="N",
                   help="warn when context + question + answer exceed about N tokens "
                        "(default: 2048)")
    v.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="colour the text output (default: auto)")
    v.add_argument("--no-hints", action="store_true", help="leave out the fix-it hints")
    v.set_defaults(func=cmd_validate)
