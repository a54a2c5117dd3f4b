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


def parse(body: str, prefix: str, app_name: str) -> tuple[str, list[str]] | None:
    """(command, arguments) from the first line that addresses the bot, or None."""
    pattern = re.compile(rf"^\s*(?:{re.escape(prefix)}|@{re.escape(app_name)}(?:\[bot\])?)(?:\s+(\S+)(.*))?\s*$",
                         re.IGNORECASE)
    in_fence = False
    for line in (body or "").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence  # a command quoted in a code block is not a command
            continue
        if in_fence or line.lstrip().startswith(">"):
            continue
        m = pattern.match(line)
        if m:
            return (m.group(1) or "help").lower(), (m.group(2) or "").split()
    return None


def help_text(prefix: str) -> str:
    rows = "\n".join(f"| `{prefix} {c.name}` | {c.summary} | {'write access' if c.privileged else 'anyone'} |"
                     for c in COMMANDS.values())
    return f"Sprout commands:\n\n| command | what it does | who |\n|---|---|---|\n{rows}"
