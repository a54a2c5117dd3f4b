"""`sprout` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__

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
    from .taxonomy import render
    from .taxonomy.diff import GitError, changed_leaves, repo_root
    from .taxonomy.reader import expand, read_leaf
    from .taxonomy.rules import Limits
    from .taxonomy.validate import Options

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
        from .taxonomy.documents import check_documents
        from .taxonomy.reader import split_taxonomy_path
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


def cmd_bot_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from bot.app import create_app
        from bot.settings import Settings, SettingsError
    except ImportError as e:
        print(f"sprout bot serve: {e}; install the bot with: pip install 'sprout[bot]'", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"sprout bot serve: {e}", file=sys.stderr)
        return 2
    dispatcher = None
    if not args.no_retrain:
        from bot.dispatch import Dispatcher
        dispatcher = Dispatcher.from_settings(settings)
    app = create_app(settings, dispatcher=dispatcher, workers=args.workers)
    print(f"Sprout bot on http://{args.host}:{args.port} (webhook: POST /webhook, status: /, "
          f"metrics: /metrics); store {settings.database_path}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sprout",
        description="Sprout grows a language model from a taxonomy of community contributions "
                    "(InstructLab's qna.yaml format): validate leaves, generate data, train, "
                    "evaluate.",
        epilog="Run 'sprout COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"sprout {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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

    b = sub.add_parser("bot", help="the GitHub webhook bot",
                       description="The GitHub-facing bot: validates pull requests, answers "
                                   "/sprout commands, dispatches retraining on merge.")
    bsub = b.add_subparsers(dest="bot_command", metavar="COMMAND")
    serve = bsub.add_parser(
        "serve", help="run the webhook server and its worker",
        description="Serve POST /webhook, GET /healthz, GET /metrics and a status page at /. "
                    "Deliveries are stored durably (SQLite) before GitHub gets its 202, and a "
                    "worker thread processes them.",
        epilog="settings (environment): SPROUT_WEBHOOK_SECRET; SPROUT_GITHUB_TOKEN, or "
               "SPROUT_GITHUB_APP_ID with SPROUT_GITHUB_PRIVATE_KEY or SPROUT_GITHUB_PRIVATE_KEY_PATH; "
               "SPROUT_GITHUB_API_URL (default https://api.github.com); SPROUT_DATABASE_URL "
               "(default sqlite:///.sprout/bot.db); RAY_ADDRESS; SPROUT_COMMAND_PREFIX; "
               "SPROUT_APP_NAME; SPROUT_TRUSTED_TEAMS (org/team,...); SPROUT_MAX_ATTEMPTS; "
               "SPROUT_RETRAIN_ENTRYPOINT.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker threads (default: 1)")
    serve.add_argument("--no-retrain", action="store_true",
                       help="do not dispatch retraining jobs to Ray on merge")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_bot_serve)
    b.set_defaults(func=lambda a: (b.print_help(), 2)[1])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
