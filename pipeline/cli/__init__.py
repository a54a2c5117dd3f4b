"""`sprout` command line: one module per command group, each with its commands and a
``register(sub)`` that adds their parsers."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import data, runs, serve, train, validate

GROUPS = (validate, data, train, runs, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sprout",
        description="Sprout grows a language model from a taxonomy of community contributions "
                    "(InstructLab's qna.yaml format): validate leaves, generate data, train, "
                    "evaluate.",
        epilog="Run 'sprout COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"sprout {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="let third-party warnings and progress bars through (quiet by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")


    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # options after '--' are passed through (sprout submit -> sprout run)
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    args.run_args = extra
    from ..quiet import quiet
    quiet(args.verbose)
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
