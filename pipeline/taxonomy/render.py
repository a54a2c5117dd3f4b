"""Turn validation results into text for people, JSON for machines, GitHub workflow commands,
check-run annotations and Markdown."""

from __future__ import annotations

import json
from typing import Iterable

from .. import mdescape as md
from .diagnostics import Diagnostic, Severity
from .validate import LeafResult


def summary(results: list[LeafResult]) -> dict:
    return {
        "leaves": len(results),
        "valid": sum(r.ok for r in results),
        "invalid": sum(not r.ok for r in results),
        "errors": sum(r.errors for r in results),
        "warnings": sum(r.warnings for r in results),
    }


def _color(enabled: bool):
    codes = {"error": "\033[31m", "warning": "\033[33m", "notice": "\033[36m", "dim": "\033[2m",
             "bold": "\033[1m", "green": "\033[32m"}

    def paint(text: str, what: str) -> str:
        return f"{codes[what]}{text}\033[0m" if enabled else text
    return paint


def text(results: list[LeafResult], color: bool = False, show_hints: bool = True) -> str:
    paint = _color(color)
    out = []
    for r in results:
        for x in sorted(r.diagnostics):
            sev = x.severity.value
            where = f"{x.file}:{x.line}:{x.column}"
            path = f" {x.yaml_path}" if x.yaml_path and x.yaml_path != "." else ""
            out.append(f"{paint(where, 'bold')}: {paint(sev, sev)} [{x.rule}]{path} {x.message}")
            if show_hints and x.hint:
                out.append(f"    {paint('hint:', 'dim')} {x.hint}")
    s = summary(results)
    verdict = paint("OK", "green") if s["invalid"] == 0 else paint("FAILED", "error")
    out.append(f"{verdict}: {s['leaves']} leaves checked, {s['valid']} valid, {s['invalid']} invalid "
               f"({s['errors']} errors, {s['warnings']} warnings)")
    return "\n".join(out)


def to_json(results: list[LeafResult]) -> str:
    return json.dumps({"summary": summary(results), "results": [r.to_dict() for r in results]},
                      indent=2, ensure_ascii=False)


def _escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def github(results: list[LeafResult]) -> str:
    """GitHub Actions workflow commands; each becomes an annotation on the pull request."""
    out = []
    for r in results:
        for x in sorted(r.diagnostics):
            cmd = {"error": "error", "warning": "warning"}.get(x.severity.value, "notice")
            props = (f"file={_escape_property(x.file)},line={x.line},col={x.column},"
                     f"title={_escape_property(f'sprout: {x.rule}')}")
            msg = x.message + (f"\n\nHint: {x.hint}" if x.hint else "")
            out.append(f"::{cmd} {props}::{_escape_data(msg)}")
    s = summary(results)
    out.append(f"sprout validate: {s['leaves']} leaves, {s['invalid']} invalid, "
               f"{s['errors']} errors, {s['warnings']} warnings")
    return "\n".join(out)


def annotations(diagnostics: Iterable[Diagnostic], path_of=lambda d: d.file) -> list[dict]:
    """Check-run annotations (GitHub REST shape); the caller sends at most 50 per request."""
    level = {Severity.ERROR: "failure", Severity.WARNING: "warning", Severity.NOTICE: "notice"}
    out = []
    for x in sorted(diagnostics):
        # plain text on GitHub; values quoted from a leaf keep no control or bidi characters
        a = {"path": path_of(x), "start_line": x.line, "end_line": x.line,
             "annotation_level": level[x.severity], "title": md.plain(f"sprout: {x.rule}", 255, keep_lines=False),
             "message": md.plain(x.message + (f"\nHint: {x.hint}" if x.hint else ""), 64_000)}
        a["start_column"] = a["end_column"] = x.column
        out.append(a)
    return out


def markdown(results: list[LeafResult], limit: int = 50) -> str:
    s = summary(results)
    icon = "✅" if s["invalid"] == 0 else "❌"
    lines = [f"{icon} **{s['valid']}/{s['leaves']} leaves valid** — {s['errors']} errors, "
             f"{s['warnings']} warnings", ""]
    rows = [(r, x) for r in results for x in sorted(r.diagnostics)]
    if rows:
        lines += ["| | Location | Rule | Message |", "|---|---|---|---|"]
        for r, x in rows[:limit]:
            mark = "❌" if x.severity is Severity.ERROR else "⚠️"
            # file names and messages quote the leaf: escaped, never raw
            lines.append(f"| {mark} | {md.code(f'{x.file}:{x.line}:{x.column}', table=True)} | "
                         f"{md.code(x.rule, table=True)} | {md.cell(x.message, 1000)} |")
        if len(rows) > limit:
            lines.append(f"\n…and {len(rows) - limit} more findings.")
    return "\n".join(lines)
