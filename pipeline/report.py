"""report.json -> Markdown for a pull request comment, and a standalone HTML page.

report.json (schema version 1; fields are only ever added):
  run_id, sprout (the version that made it), verdict ("accepted" | "rejected"), reasons[], taxonomy {path, ref, base_ref},
  student {name, pretrained}, teacher {name, smoke}, judge {judge, asked, unparseable} | null,
  recipe {name, train_layers, layers, text}, deployed_model (what the new model is compared with:
  the last accepted model, else the base), started_from {kind: "base" | "last", model}, new_model,
  leaves[]: {path, class ("Improved" | "Regressed" | "No change"), changed, samples_generated,
             samples_kept, deployed_score, new_score, delta (mean paired gain over the deployed
             model), interval [lo, hi] (90%; schema-1 reports: paired bootstrap), base_score (the original base),
             constant_score (a constant topic-word answer), questions, token_f1, rouge_l,
             heldout[] {question, reference, deployed_answer, new_answer, deployed_score,
             new_score}, examples[], and judge_deployed, judge_new, judged with a judge};
             scores are the mean of content-word F1 and ROUGE-L in [0, 1], on held-out items only;
             Added with key facts: kind, measure ("key facts" | "answer score"), gain (of the
             measure), interval (90% sign-flip interval of the score gain; null for key facts and
             below 10 items), restated_score (the question restated: the baseline), scored,
             p_up, p_down, p_down_holm, p_baseline, lower (No change, lower but not
             significant), repetition (the mix's upsampling factor), ledger_dropped[],
             key_facts {items, deployed, new, new_wrong, deployed_wrong, base, restated} and
             per held-out item facts[], hit_deployed, hit_new, wrong_deployed[], wrong_new[];
             class may be "Not enough evidence" (fewer than 10 scored items);
  forgetting {probe, questions, base, new, threshold, loss_passed, passed, and with the fact probe
             kind, facts_deployed, facts_new, facts_passed, alpha, min_lost, against {deployed,
             original_base: {right, right_new, lost, gained, p, loss, loss_new, facts_passed,
             loss_passed, text_loss, text_loss_new}}, items[]}: base/new are the deployed/new model's mean
             choice loss on the probe (-log of the right ending's share among its endings;
             older reports: the token loss of generated probe answers, with f1_*);
  funnel {in, out, filters {name: dropped}}; training {phase: [{step, loss}]}; timings {stage: s};
  cost {stage: {requests, retries, throttled, errors, prompt_tokens, completion_tokens, seconds}}
  (teacher/judge requests per stage; per leaf in manifest.json)
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from . import mdescape as md

HELDOUT_BUDGET = 40_000
ICON = {"Improved": "🟢", "Regressed": "🔴", "No change": "⚪", "New": "🆕", "Not enough evidence": "⚫"}


def _curve(report: dict, points: int = 40) -> tuple[list[str], list[float]]:
    losses = [p for phase in report["training"].values() for p in phase]
    if not losses:
        return [], []
    step = max(1, len(losses) // points)
    picked = losses[::step]
    return [str(i * step + 1) for i in range(len(picked))], [round(p["loss"], 3) for p in picked]


def smoke_line(report: dict) -> str | None:
    st = report.get("student") or {}
    if st and not st.get("pretrained", True):
        return (f"⚠️ **Smoke run, not evidence**: the student is {md.text(st.get('name', '?'))}, a randomly "
                "initialised model that knows nothing; these scores only show that the pipeline runs.")
    return None


def provenance(report: dict) -> str:
    st, te = report.get("student") or {}, report.get("teacher") or {}
    parts = [f"**Student:** {md.text(st.get('name', '?'))} ({'pretrained' if st.get('pretrained', True) else 'random init, smoke'})"]
    if report.get("recipe"):
        parts.append(f"**Recipe:** {md.text(report['recipe']['text'])}")
    if te:
        parts.append(f"**Teacher:** {md.text(te.get('name'))}" + (" — smoke-level, not a model" if te.get("smoke") else ""))
    j = report.get("judge")
    parts.append(f"**Judge:** {md.text(j['judge'])} ({j['unparseable']} of {j['asked']} replies unreadable)" if j
                 else "**Judge:** none")
    if report.get("sprout"):
        parts.append(f"**Sprout:** {report['sprout']}")
    return " · ".join(parts)


def _interval(leaf: dict) -> str:
    iv = leaf.get("interval")
    return f"{leaf['delta']:+.3f} [{iv[0]:+.3f}, {iv[1]:+.3f}]" if iv else f"{leaf['delta']:+.3f}"


def _cell(text: str, limit: int = 160) -> str:
    return md.cell(text, limit, empty="(empty)")


def verdict_line(report: dict) -> str:
    """The verdict and its reason in one sentence: the first thing a pull request shows."""
    leaves = report["leaves"]
    if report.get("reasons"):
        return f"Rejected: {report['reasons'][0]}" + (f" (and {len(report['reasons']) - 1} more)"
                                                        if len(report["reasons"]) > 1 else "")
    by = {c: [leaf["path"].removesuffix("/qna.yaml").split("/")[-1] for leaf in leaves if leaf["class"] == c]
          for c in ("Improved", "No change", "Not enough evidence")}
    parts = ["no leaf regressed", "the forgetting check passed"]
    parts.append(f"learnt: {', '.join(by['Improved'])}" if by["Improved"] else "no leaf shown learnt")
    if by["Not enough evidence"]:
        parts.append(f"not enough evidence to judge: {', '.join(by['Not enough evidence'])}")
    return "Accepted: " + "; ".join(parts) + "."


def _class_text(leaf: dict) -> str:
    text = f"{ICON.get(leaf['class'], '')} {leaf['class']}"
    return text + (" (lower, not significant)" if leaf.get("lower") else "")


def _facts_cells(leaf: dict) -> tuple[str, str, str]:
    kf = leaf.get("key_facts")
    if not kf:
        return "–", "–", "–"
    n = kf["items"]
    return (f"{kf['deployed']} → **{kf['new']}** of {n}", f"{kf['new_wrong']}",
            f"{kf.get('restated', 0)} of {n}")


def _test_cell(leaf: dict) -> str:
    if leaf["class"] == "Not enough evidence":
        return f"{leaf.get('scored', leaf['questions'])} items: too few to test"
    iv = leaf.get("interval")
    p = f"p = {leaf['p_up']:.3f}" if (leaf.get("gain") or 0) >= 0 else f"p = {leaf['p_down']:.3f} (Holm {leaf['p_down_holm']:.3f})"
    return (f"{leaf['gain']:+.3f} [{iv[0]:+.3f}, {iv[1]:+.3f}], " if iv else f"{leaf['gain']:+.2f}, ") + p


def _samples_cell(leaf: dict) -> str:
    rep = leaf.get("repetition")
    return f"{leaf['samples_generated']} → {leaf['samples_kept']}" + (f" (each ×{rep:g})" if rep and rep > 1 else "")


def _fact_table(report: dict, judged: bool) -> list[str]:
    lines = ["", "Knowledge leaves are judged on **key facts** (numbers, dates, names, yes/no) of held-out "
                 "questions no model trained on: a hit carries every fact and no contradicting one; skills on "
                 "answer scores (content-word F1 and ROUGE-L). A leaf is Improved only when it beats the deployed "
                 "model *and* the question restated (exact sign-flip tests, 5%); Regressed needs the same "
                 "test Holm-adjusted over every leaf asked; fewer than 10 scored items: Not enough evidence.", "",
             "| leaf | class | key facts deployed → new | wrong facts (new) | restated question | "
             "answer score deployed → new | gain, test | original base | samples generated → kept |"
             + (" judge deployed → new |" if judged else ""),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if judged else "")]
    for leaf in report["leaves"]:
        jb = leaf.get("judge_deployed")
        j = (f" {jb:.2f} → {leaf['judge_new']:.2f} |" if "judge_new" in leaf else " – |") if judged else ""
        name = md.code(leaf['path'], table=True) + ("" if leaf.get("changed", True) else " (unchanged)")
        facts, wrong, restated = _facts_cells(leaf)
        if not leaf.get("key_facts"):
            restated = f"{leaf.get('restated_score', 0):.3f}"
        base = (f"{leaf['key_facts']['base']} of {leaf['key_facts']['items']}" if leaf.get("key_facts")
                else f"{leaf['base_score']:.3f}")
        lines.append(f"| {name} | {_class_text(leaf)} | {facts} | {wrong} | {restated} | "
                     f"{leaf['deployed_score']:.3f} → {leaf['new_score']:.3f} | {_test_cell(leaf)} | {base} | "
                     f"{_samples_cell(leaf)} |{j}")
    return lines


def markdown(report: dict) -> str:
    ok = report["verdict"] == "accepted"
    smoke = smoke_line(report)
    fact_style = any("measure" in leaf for leaf in report["leaves"])
    lines = ([smoke, ""] if smoke else []) + [f"## {'✅' if ok else '❌'} Sprout retrain: {report['verdict']}"]
    if fact_style:
        lines += ["", f"**{md.text(verdict_line(report))}**"]
    if report.get("reasons"):
        lines.append("\n" + "\n".join(f"- {md.text(r)}" for r in report["reasons"]))
    if report.get("student"):
        lines += ["", provenance(report)]
    judged = any("judge_new" in leaf for leaf in report["leaves"])
    new_style = any("deployed_score" in leaf for leaf in report["leaves"])
    if fact_style:
        lines += _fact_table(report, judged)
    elif new_style:
        lines += ["", "Scores on held-out seed questions no model trained on (content-word F1 and ROUGE-L, 0-1); "
                      "gain over the deployed model with its 90% bootstrap interval.", "",
                  "| leaf | class | samples generated → kept | deployed | new | gain [90% interval] | original base | constant answer |"
                  + (" judge deployed → new |" if judged else ""),
                  "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if judged else "")]
    else:
        lines += ["", "| leaf | class | samples generated → kept | base | new | Δ |" + (" judge base → new |" if judged else ""),
                  "|---|---|---:|---:|---:|---:|" + ("---:|" if judged else "")]
    for leaf in ([] if fact_style else report["leaves"]):
        jb = leaf.get("judge_deployed", leaf.get("judge_base"))
        j = (f" {jb:.2f} → {leaf['judge_new']:.2f} |" if "judge_new" in leaf else " – |") if judged else ""
        name = md.code(leaf["path"], table=True) + ("" if leaf.get("changed", True) else " (unchanged)")
        if new_style:
            lines.append(f"| {name} | {ICON.get(leaf['class'], '')} {leaf['class']} | "
                         f"{leaf['samples_generated']} → {leaf['samples_kept']} | {leaf['deployed_score']:.3f} | "
                         f"{leaf['new_score']:.3f} | {_interval(leaf)} | {leaf['base_score']:.3f} | "
                         f"{leaf.get('constant_score', 0):.3f} |{j}")
        else:
            lines.append(f"| {name} | {ICON.get(leaf['class'], '')} {leaf['class']} | "
                         f"{leaf['samples_generated']} → {leaf['samples_kept']} | {leaf['base_score']:.3f} | "
                         f"{leaf['new_score']:.3f} | {leaf['delta']:+.3f} |{j}")
    f = report["funnel"]
    lines += ["", f"**Data funnel:** {f['in']} generated → {f['out']} kept — " +
              ", ".join(f"{k} −{v}" for k, v in f["filters"].items() if v)]
    lines += _cost_lines(report)
    xs, ys = _curve(report)
    if ys:
        lines += ["", "```mermaid", "xychart-beta", '    title "Training loss"',
                  f"    x-axis [{', '.join(xs)}]", f'    y-axis "loss" {min(ys) * 0.95:.2f} --> {max(ys) * 1.05:.2f}',
                  f"    line [{', '.join(str(y) for y in ys)}]", "```"]
    lines += ["", "**Forgetting check:** " + forgetting_text(report["forgetting"])]
    answered = [leaf for leaf in report["leaves"] if leaf.get("heldout")]
    if answered:
        # Last, and within a budget: a PR comment holds 65,536 characters, and the verdict,
        # table and forgetting line above must never be what gets cut.
        lines += ["", "<details><summary>Held-out answers, deployed vs new</summary>", ""]
        used, left_out = 0, 0
        for leaf in answered:
            if fact_style:
                block = [f"**{md.code(leaf['path'])}**", "", "| question | reference (key facts) | deployed | new |",
                         "|---|---|---|---|"]
                block += [f"| {_cell(h['question'])} | {_cell(h['reference'])}{_facts_note(h)} | "
                          f"{_hit_mark(h, 'deployed')}{_cell(h['deployed_answer'])} | {_hit_mark(h, 'new')}"
                          f"{_cell(h['new_answer'])} |" for h in leaf["heldout"]]
            else:
                block = [f"**{md.code(leaf['path'])}**", "", "| question | reference | deployed | new |", "|---|---|---|---|"]
                block += [f"| {_cell(h['question'])} | {_cell(h['reference'])} | {_cell(h['deployed_answer'])} | "
                          f"{_cell(h['new_answer'])} |" for h in leaf["heldout"]]
            size = sum(len(b) + 1 for b in block)
            if used + size > HELDOUT_BUDGET:
                left_out += 1
                continue
            used += size
            lines += block + [""]
        if left_out:
            lines.append(f"_{left_out} more leaves' answers are in report.html and report.json._")
        lines.append("</details>")
    t = report["taxonomy"]
    lines += ["", f"<sub>run {md.code(report['run_id'])} · taxonomy {md.text(t.get('ref') or t['path'])} · "
                  f"started from {report['started_from']['kind']} · "
                  + " · ".join(f"{k} {v:.0f}s" for k, v in report["timings"].items()) + "</sub>"]
    return "\n".join(lines) + "\n"


def _cost_lines(report: dict) -> list[str]:
    from .sdg.cost import text
    return [f"**Teacher cost, {stage}:** {text(c)}" for stage, c in (report.get("cost") or {}).items()
            if c.get("requests") or c.get("errors")]


def _facts_note(h: dict) -> str:
    facts = h.get("facts") or []
    return (" (" + _cell("; ".join(f["text"] for f in facts), 80) + ")") if facts else " (no key fact)"


def _hit_mark(h: dict, model: str) -> str:
    if f"hit_{model}" not in h:
        return ""
    if h.get(f"wrong_{model}"):
        return "❌ "
    return "✅ " if h[f"hit_{model}"] else "▫️ "


def forgetting_text(fg: dict) -> str:
    if "against" in fg:
        parts = []
        for name, c in fg["against"].items():
            who = "deployed" if name == "deployed" else "original base"
            parts.append(f"{c['right']} → {c['right_new']} of {fg['questions']} general facts right vs the {who} "
                         f"({c['lost']} lost, {c['gained']} gained, p = {c['p']:.3f}; choice loss "
                         f"{c['loss']:.3f} → {c['loss_new']:.3f})")
        return ("; ".join(parts) + f" — limits: a net loss of {fg['min_lost']}+ facts at p ≤ {fg['alpha']}, "
                f"loss +{fg['threshold']:.0%}; facts ranked by likelihood against same-kind distractors, "
                f"a probe no replay file shares a template with: {'passed' if fg['passed'] else 'FAILED'}")
    text = (f"probe loss {fg['base']:.3f} → {fg['new']:.3f} (limit +{fg['threshold']:.0%})")
    if "f1_new" in fg:
        text += (f", probe answer F1 {fg['f1_base']:.3f} → {fg['f1_new']:.3f} (limit −{fg['f1_threshold']:.2f}) "
                 f"on {fg.get('questions', '?')} general questions none of the replay data holds")
    return text + f": {'passed' if fg['passed'] else 'FAILED'}"


def _svg(report: dict, width: int = 640, height: int = 240) -> str:
    """Loss over optimizer steps, both phases end to end, with axis ticks and the phase boundary
    marked (the loss jumps there: phase 2 is different data, and the LR warms up again)."""
    series = [(name, [p["loss"] for p in pts]) for name, pts in report["training"].items() if pts]
    ys = [y for _, pts in series for y in pts]
    if not ys:
        return "<p>No training steps.</p>"
    left, right, top, bottom = 50, 15, 15, 40
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or 1.0
    n = len(ys)
    x = lambda i: left + i * (width - left - right) / max(1, n - 1)  # noqa: E731
    y = lambda v: top + (hi - v) / span * (height - top - bottom)  # noqa: E731
    pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(ys))
    parts = [f'<svg id="loss-chart" width="{width}" height="{height}" role="img" aria-label="training loss" '
             'font-size="11" font-family="sans-serif">', '<rect width="100%" height="100%" fill="#fafafa"/>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#999"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#999"/>']
    for k in range(5):  # y ticks
        v = lo + span * k / 4
        parts.append(f'<text class="ytick" x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    for k in range(6):  # x ticks: optimizer steps across both phases
        i = round((n - 1) * k / 5)
        parts.append(f'<line x1="{x(i):.1f}" y1="{height - bottom}" x2="{x(i):.1f}" y2="{height - bottom + 4}" stroke="#999"/>'
                     f'<text class="xtick" x="{x(i):.1f}" y="{height - bottom + 15}" text-anchor="middle">{i + 1}</text>')
    offset = 0
    for name, pts_ in series:
        if offset:
            parts.append(f'<line class="phase-boundary" x1="{x(offset - 0.5):.1f}" y1="{top}" x2="{x(offset - 0.5):.1f}" '
                         f'y2="{height - bottom}" stroke="#c05621" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{x(offset) + 4:.1f}" y="{top + 10}" fill="#c05621">{html.escape(name)}</text>')
        offset += len(pts_)
    parts += [f'<polyline fill="none" stroke="#2b6cb0" stroke-width="2" points="{pts}"/>',
              f'<text x="{(left + width - right) // 2}" y="{height - 6}" text-anchor="middle">optimizer step</text>',
              "</svg>"]
    return "".join(parts)


def html_page(report: dict) -> str:
    e = html.escape
    judged = any("judge_new" in leaf for leaf in report["leaves"])
    new_style = any("deployed_score" in leaf for leaf in report["leaves"])

    def judge_cell(leaf: dict) -> str:
        if not judged:
            return ""
        jb = leaf.get("judge_deployed", leaf.get("judge_base"))
        return f"<td>{jb:.2f} → {leaf['judge_new']:.2f}</td>" if "judge_new" in leaf else "<td>–</td>"

    def row(leaf: dict) -> str:
        name = f"<code>{e(leaf['path'])}</code>" + ("" if leaf.get("changed", True) else " (unchanged)")
        head = (f"<tr class='{e(leaf['class'].replace(' ', '-').lower())}'><td class='leaf'>{name}</td>"
                f"<td>{e(leaf['class'])}</td><td>{leaf['samples_generated']} → {leaf['samples_kept']}</td>")
        if new_style:
            return (head + f"<td>{leaf['deployed_score']:.3f}</td><td class='new-score'>{leaf['new_score']:.3f}</td>"
                    f"<td>{e(_interval(leaf))}</td><td>{leaf['base_score']:.3f}</td>"
                    f"<td>{leaf.get('constant_score', 0):.3f}</td>{judge_cell(leaf)}</tr>")
        return (head + f"<td>{leaf['base_score']:.3f}</td><td class='new-score'>{leaf['new_score']:.3f}</td>"
                f"<td>{leaf['delta']:+.3f}</td>{judge_cell(leaf)}</tr>")
    fact_style = any("measure" in leaf for leaf in report["leaves"])

    def fact_row(leaf: dict) -> str:
        name = f"<code>{e(leaf['path'])}</code>" + ("" if leaf.get("changed", True) else " (unchanged)")
        facts, wrong, restated = _facts_cells(leaf)
        if not leaf.get("key_facts"):
            restated = f"{leaf.get('restated_score', 0):.3f}"
        return (f"<tr class='{e(leaf['class'].replace(' ', '-').lower())}'><td class='leaf'>{name}</td>"
                f"<td>{e(_class_text(leaf).strip())}</td><td class='key-facts'>{e(facts.replace('**', ''))}</td>"
                f"<td>{e(wrong)}</td><td>{e(restated)}</td>"
                f"<td>{leaf['deployed_score']:.3f} → <span class='new-score'>{leaf['new_score']:.3f}</span></td>"
                f"<td>{e(_test_cell(leaf))}</td><td>{e(_samples_cell(leaf))}</td>{judge_cell(leaf)}</tr>")
    if fact_style:
        header = ("<th>key facts deployed → new</th><th>wrong facts (new)</th><th>restated question</th>"
                  "<th>answer score deployed → new</th><th>gain, test</th>")
        rows = "".join(fact_row(leaf) for leaf in report["leaves"])
    else:
        header = ("<th>deployed</th><th>new</th><th>gain [90% interval]</th><th>original base</th><th>constant answer</th>"
                  if new_style else "<th>base</th><th>new</th><th>Δ</th>")
        rows = "".join(row(leaf) for leaf in report["leaves"])
    answers = "".join(
        f"<details><summary><code>{e(leaf['path'])}</code></summary><table class='heldout'><tr><th>question</th>"
        "<th>reference</th><th>deployed</th><th>new</th></tr>" + "".join(
            f"<tr><td>{e(h['question'])}</td><td>{e(h['reference'])}</td><td>{e(h['deployed_answer'])}</td>"
            f"<td>{e(h['new_answer'])}</td></tr>" for h in leaf["heldout"]) + "</table></details>"
        for leaf in report["leaves"] if leaf.get("heldout"))
    if not answers:
        answers = "".join(
            f"<details><summary><code>{e(leaf['path'])}</code></summary>" + "".join(
                f"<p><b>Q:</b> {e(x['question'])}<br><b>expected:</b> {e(x['expected'])}<br>"
                f"<b>base:</b> {e(x['base'])}<br><b>new:</b> {e(x['new'])}</p>" for x in leaf.get("examples", []))
            + "</details>" for leaf in report["leaves"])
    fg = report["forgetting"]
    funnel = "".join(f"<li>{e(k)}: −{v}</li>" for k, v in report["funnel"]["filters"].items())
    smoke = smoke_line(report)
    smoke_html = f'<p id="smoke" class="smoke">{e(smoke.replace("**", ""))}</p>' if smoke else ""
    prov = f'<p id="provenance">{e(provenance(report).replace("**", ""))}</p>' if report.get("student") else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Sprout report {e(report['run_id'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}}tr.regressed td{{background:#fee}}
tr.improved td{{background:#efe}}td.leaf{{overflow-wrap:anywhere}}.smoke{{background:#fff4d6;padding:.5rem;border:1px solid #e0b84c}}</style></head><body>
{smoke_html}<h1 id="verdict">Sprout retrain: {e(report['verdict'])}</h1>
{f'<p id="verdict-line"><b>{e(verdict_line(report))}</b></p>' if fact_style else ''}
<ul>{''.join(f'<li>{e(r)}</li>' for r in report.get('reasons', []))}</ul>{prov}
<h2>Leaves</h2><table id="leaves"><tr><th>leaf</th><th>class</th>{'' if fact_style else '<th>samples</th>'}{header}{'<th>samples</th>' if fact_style else ''}{"<th>judge deployed → new</th>" if judged else ""}</tr>{rows}</table>
<h2>Training loss</h2>{_svg(report)}
<h2>Data funnel</h2><p>{report['funnel']['in']} generated → {report['funnel']['out']} kept</p><ul>{funnel}</ul>
{''.join(f"<p>{e(line.replace('**', ''))}</p>" for line in _cost_lines(report))}
<h2>Forgetting</h2><p id="forgetting">{e(forgetting_text(fg))}</p>
<h2>Answers</h2>{answers}
<p><small>run {e(report['run_id'])}</small></p></body></html>"""


def write(report: dict, out_dir: Path) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (out_dir / "report.md").write_text(markdown(report))
    (out_dir / "report.html").write_text(html_page(report))
