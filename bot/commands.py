"""Chat-ops: `/sprout <command>` (or `@app-name <command>`) in pull request comments."""

from __future__ import annotations

import re
from dataclasses import dataclass

PRIVILEGED_ROLES = ("admin", "maintain", "write")


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    privileged: bool


COMMANDS = {c.name: c for c in [
    Command("help", "list the commands", False),
    Command("validate", "validate this pull request's leaves again", False),
    Command("status", "show the retraining queue and the running job", False),
    Command("precheck", "ask the current student this pull request's seed questions", True),
    Command("generate", "preview synthetic data for this pull request's leaves", True),
    Command("retrain", "retrain the student on this merged pull request's merge commit", True),
    Command("cancel", "cancel this pull request's queued or running jobs (`cancel all`: every job "
            "of the repository, maintain or admin only)", True),
]}


_FENCE = re.compile(r"^(`{3,}|~{3,})")


def command_lines(body: str):
    """The lines of a comment that a reader sees as plain paragraph text, stripped of up to three
    leading spaces. Lines are split on '\\n' only (as Markdown does: U+2028, U+0085 and friends
    are not line breaks there). Left out: fenced code (``` and ~~~), indented code, block quotes
    (with their lazy continuation lines), HTML comments, HTML blocks and everything inside
    <details>. When in doubt a line is left out: a command hidden from readers is never run."""
    fence: str | None = None
    in_comment = in_html = in_quote = False
    details = 0
    for raw in (body or "").split("\n"):
        line = raw.rstrip("\r")
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        blank = not line.strip()
        if fence is not None:
            close = _FENCE.match(stripped)
            if indent <= 3 and close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence) \
                    and not stripped[len(close.group(1)):].strip():
                fence = None
            continue
        if in_comment:
            in_comment = "-->" not in line
            continue
        low = line.lower()
        if "<!--" in line:
            in_comment = "-->" not in line[line.index("<!--"):]
            continue
        if "<details" in low or "</details" in low:
            details = max(0, details + low.count("<details") - low.count("</details"))
            continue
        if details:
            continue
        if blank:
            in_html = in_quote = False
            continue
        if in_html or in_quote:
            continue
        if indent >= 4 or stripped.startswith("\t"):
            continue  # indented code (or so deep in a list that it is not plain text)
        m = _FENCE.match(stripped)
        if m:
            fence = m.group(1)
            continue
        if stripped.startswith(">"):
            in_quote = True
            continue
        if stripped.startswith("<"):
            in_html = True  # an HTML block runs to the next blank line, raw
            continue
        yield stripped


def parse(body: str, prefix: str, app_name: str) -> tuple[str, list[str]] | None:
    """(command, arguments) from the first plain paragraph line that addresses the bot, or None."""
    pattern = re.compile(rf"^(?:{re.escape(prefix)}|@{re.escape(app_name)}(?:\[bot\])?)(?:[ \t]+(\S+)(.*?))?[ \t]*$",
                         re.IGNORECASE | re.ASCII)
    for line in command_lines(body):
        m = pattern.match(line)
        if m:
            return (m.group(1) or "help").lower(), (m.group(2) or "").split()
    return None


def help_text(prefix: str) -> str:
    rows = "\n".join(f"| `{prefix} {c.name}` | {c.summary} | {'write access' if c.privileged else 'anyone'} |"
                     for c in COMMANDS.values())
    return f"Sprout commands:\n\n| command | what it does | who |\n|---|---|---|\n{rows}"
