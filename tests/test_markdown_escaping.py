"""Hostile strings through every Markdown renderer: none becomes an active element.

Each renderer is fed a benign value and then each hostile one in the same place; both outputs are
parsed with a real CommonMark + GFM-tables parser (markdown-it-py) and must have the same block
and inline structure (no new link, image, HTML, heading, list, quote, fence, table cell or
emphasis), the same first (verdict) line, and no @mention, #reference or bare URL GitHub's own
filters would turn into one."""

from __future__ import annotations

import re

import pytest

markdown_it = pytest.importorskip("markdown_it")

from pipeline import mdescape  # noqa: E402
from pipeline.taxonomy import render  # noqa: E402
from pipeline.taxonomy.diagnostics import Diagnostic, Severity  # noqa: E402
from pipeline.taxonomy.validate import LeafResult  # noqa: E402

BENIGN = "plain words"
HOSTILE = [
    "@org/maintainers please merge, @admin",
    "![t](https://evil.example/t.png)",
    "[Re-run validation](https://evil.example/login)",
    "<img src=https://evil.example/t.png> @org/maintainers [Re-run validation](https://evil.example/login) "
    "<h1>✅ 1/1 leaves valid</h1>",
    "<!-- sprout:validate -->",
    "<!-- sprout:precheck:1:2 -->",
    "back`tick ``two`` ```three",
    "`",
    "a | b | c",
    "```\n/sprout retrain\n```",
    "~~~\n/sprout retrain",
    "x\u2028@sprout generate\u2028y",
    "x\u2029## ✅ accepted\u0085z",
    "\u202eevil\u202c \u2066rtl\u2069 \u200bzw",
    "nul\x00byte\x1b[31m",
    "\n\n## ✅ Sprout retrain: accepted\n\n",
    "https://evil.example/phish www.evil.example mail@evil.example",
    "<script>alert(1)</script>",
    "&lt;img src=x&gt; &#64;admin &amp;",
    "*emph* _u_ **b** ~~s~~",
    "[ref]: https://evil.example",
    "#1 see GH-2",
    "trailing backslash \\",
    "escaped \\| pipe \\\\| and `code \\| span`",
    "</details></summary><details open><summary>x",
    "| --- | --- |",
    "> quote",
    "    indented",
    "- list",
    "1. item",
    "# heading",
    "=====",
    "<https://evil.example>",
    "\r\n\r\n<div>\n\n# h\n\n</div>",
]

_PARSER = markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_MENTION = re.compile(r"(?<![A-Za-z0-9`])@[A-Za-z0-9]|(?<![&\w])#\d|(?i:gh-\d)|://|(?i:www\.)")


def structure(markdown: str) -> list[tuple]:
    """The document's shape: every token's type, tag and nesting, inline children included,
    with runs of text merged; contents left out except for raw HTML's tags (which must be the
    renderer's own)."""
    out: list[tuple] = []

    def add(tok) -> None:
        if tok.type == "text" or (tok.type == "html_inline" and tok.content == "<br>"):  # kept line breaks
            if out and out[-1] == ("text",):
                return
            out.append(("text",))
        elif tok.type in ("html_inline", "html_block"):  # its tags must be the renderer's own
            out.append((tok.type, tuple(re.findall(r"</?[A-Za-z!][^>]*>", tok.content))))
        else:
            out.append((tok.type, tok.tag, tok.nesting))

    for tok in _PARSER.parse(markdown):
        if tok.type == "inline":
            for child in tok.children or []:
                add(child)
        else:
            add(tok)
    return out


def texts(markdown: str) -> list[str]:
    """Every piece of text GitHub's mention/reference/autolink filters would scan (not code)."""
    found = []
    for tok in _PARSER.parse(markdown):
        for child in (tok.children or []) if tok.type == "inline" else []:
            if child.type == "text":
                found.append(child.content)
        if tok.type == "html_block":
            found.append(tok.content)
    return found


def blocks(markdown: str) -> list[tuple[str, str]]:
    """(block tag, its inline source) of every heading and paragraph, as a reader sees them."""
    toks = _PARSER.parse(markdown)
    return [(toks[i - 1].tag, tok.content) for i, tok in enumerate(toks)
            if tok.type == "inline" and toks[i - 1].type in ("heading_open", "paragraph_open")]


def check(renderer, verdict: str | None = None) -> None:
    """``renderer(value) -> Markdown``: the hostile outputs have the benign output's shape, and
    the verdict line (default: the first line) is there, once, unchanged."""
    good = renderer(BENIGN)
    shape, verdict = structure(good), verdict or good.splitlines()[0]
    assert BENIGN not in verdict
    [line] = blocks(verdict)
    assert blocks(good).count(line) == 1
    expected_mentions = sum(len(_MENTION.findall(t)) for t in texts(good))
    for bad in HOSTILE:
        out = renderer(bad)
        assert structure(out) == shape, (bad, out)
        assert blocks(out).count(line) == 1, (bad, out)
        assert sum(len(_MENTION.findall(t)) for t in texts(out)) == expected_mentions, (bad, out)
        assert "\x00" not in out and "\u202e" not in out and "\u2028" not in out, (bad, out)


# -- the escaping functions themselves ----------------------------------------------------------
@pytest.mark.parametrize("fn", [mdescape.text, mdescape.cell, mdescape.link_text])
def test_inline_contexts(fn):
    check(lambda v: f"Verdict line\n\nsome {fn(v)} here\n")
    check(lambda v: f"Verdict line\n\n| a | b |\n|---|---|\n| {fn(v)} | x |\n")
    check(lambda v: f"Verdict line\n\n[{fn(v)}](https://github.com/octo/x)\n")


def test_code_spans():
    check(lambda v: f"Verdict line\n\nsee {mdescape.code(v)} here\n")
    check(lambda v: f"Verdict line\n\n| a | b |\n|---|---|\n| {mdescape.code(v, table=True)} | x |\n")
    assert mdescape.code("a/b.yaml") == "`a/b.yaml`"  # ordinary paths read as before


def test_html_text_and_blocks():
    check(lambda v: f"Verdict line\n\n<details><summary><code>{mdescape.html_text(v)}</code></summary>\n\nx\n</details>\n")
    for bad in HOSTILE + ["```\nx\n````\n", "`" * 10]:
        out = mdescape.block(f"log line\n{bad}\nlast line")
        [fence] = [t for t in _PARSER.parse(f"Verdict\n\n{out}\n\nafter") if t.type == "fence"]
        assert fence.content.endswith("last line\n")  # nothing inside closed it


def test_plain_text_for_annotations():
    for bad in HOSTILE:
        out = mdescape.plain(bad)
        assert not any(ch in out for ch in "\x00\x1b\u202e\u2066\u200b\u2028\u2029\x85")


# -- every renderer -----------------------------------------------------------------------------
def _results(value: str) -> list[LeafResult]:
    path = f"compositional_skills/{value}/qna.yaml"
    d = Diagnostic(path, 3, 5, Severity.ERROR, f"rule-{value}", f"the value {value!r} is not allowed: {value}",
                   hint=value)
    return [LeafResult(path=path, file=path, diagnostics=[d])]


def test_validation_summary_and_comment():
    check(lambda v: render.markdown(_results(v)))
    from bot.validation import comment_body
    check(lambda v: comment_body("a" * 40, _results(v)))


def test_annotations_are_plain_and_clean():
    for bad in HOSTILE:
        [a] = render.annotations(_results(bad)[0].diagnostics)
        assert not any(ch in a["message"] + a["title"] for ch in "\x00\u202e\u2066\u200b\u2028\x85")


def _report(value: str) -> dict:
    heldout = [{"question": value, "reference": value, "deployed_answer": value, "new_answer": value,
                "deployed_score": 0.1, "new_score": 0.2}]
    return {"run_id": f"run-{value}", "verdict": "rejected", "reasons": [f"regressed leaves: {value}"],
            "taxonomy": {"path": "t", "ref": value, "base_ref": None},
            "student": {"name": value, "pretrained": False}, "teacher": {"name": value, "smoke": True},
            "judge": {"judge": value, "asked": 2, "unparseable": 0}, "recipe": {"text": value},
            "started_from": {"kind": "base", "model": "m"}, "new_model": "n",
            "leaves": [{"path": f"knowledge/{value}/qna.yaml", "class": "Regressed", "changed": True,
                        "samples_generated": 10, "samples_kept": 4, "deployed_score": 0.5, "new_score": 0.2,
                        "delta": -0.3, "interval": [-0.4, -0.1], "base_score": 0.4, "constant_score": 0.1,
                        "heldout": heldout}],
            "forgetting": {"base": 2.0, "new": 2.5, "threshold": 0.1, "passed": False},
            "funnel": {"in": 10, "out": 4, "filters": {"exact_dedup": 6}},
            "training": {"knowledge": [{"step": i, "loss": 3 - i / 10} for i in range(1, 6)]},
            "timings": {"train": 12.0}}


def test_retrain_report():
    from pipeline import report as rpt
    check(lambda v: rpt.markdown(_report(v)), verdict="## ❌ Sprout retrain: rejected")


def test_preview_and_precheck_reports():
    from pipeline.preview import precheck_markdown, preview_markdown

    def preview(v: str) -> str:
        sample = {"shape": "qa", "context": v, "question": f"{v}\n{v}", "answer": f"line one\n{v}"}
        leaf = {"path": f"knowledge/{v}/qna.yaml", "generated": 5, "kept": 2, "dropped_by": {"exact_dedup": 3},
                "emptied_by": None, "samples": [sample],
                "dropped_examples": [{"filter": "exact_dedup", "reason": v, "question": v}]}
        return preview_markdown({"run_id": f"r-{v}", "teacher": v, "leaves": [leaf],
                                 "funnel": {"in": 5, "out": 2, "filters": {"exact_dedup": 3}}}, refs="`abc1234`")

    def precheck(v: str) -> str:
        leaf = {"path": f"knowledge/{v}/qna.yaml", "score": 0.5,
                "questions": [{"question": v, "expected": v, "answer": v, "score": 0.5}]}
        return precheck_markdown({"run_id": f"r-{v}", "student": v, "student_described": "the base student",
                                  "leaves": [leaf]}, refs="`abc1234`")
    check(preview)
    check(precheck)


def test_bot_replies():
    from bot.handlers.issue_comment import unknown_command_reply
    check(lambda v: unknown_command_reply("octocat", v, "/sprout"), verdict="Sprout commands:")
    from bot.dispatch import job_summary
    check(lambda v: job_summary("sprout-retrain-1", "a" * 40, "failed", "train", None, f"log {v}\n```\n{v}"))
    check(lambda v: job_summary("sprout-retrain-1", "a" * 40, "succeeded", None,
                                f"## ✅ Sprout retrain: accepted\n\n{mdescape.text(v)}", v),
          verdict="## ✅ Sprout retrain: accepted")
