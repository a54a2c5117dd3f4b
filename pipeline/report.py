"""report.json -> Markdown for a pull request comment, and a standalone HTML page.

report.json (schema version 1):
  run_id, verdict ("accepted" | "rejected"), reasons[], taxonomy {path, ref, base_ref},
  started_from {kind: "base" | "last", model}, new_model,
  leaves[]: {path, class, samples_generated, samples_kept, base_score, new_score, delta, questions,
             examples[], and judge_base, judge_new with a model teacher}, scores are the mean of
             token F1 and ROUGE-L in [0, 1]; judge scores are the judge's 1-5 grade scaled to [0, 1];
  forgetting {base, new, threshold, passed}: mean token loss on the replay probe;
  funnel {in, out, filters {name: dropped}}; training {phase: [{step, loss}]}; timings {stage: s}
"""

from __future__ import annotations

import html
import json
from pathlib import Path

ICON = {"Improved": "🟢", "Regressed": "🔴", "No change": "⚪", "New": "🆕"}


def _curve(report: dict, points: int = 40) -> tuple[list[str], list[float]]:
    losses = [p for phase in report["training"].values() for p in phase]
    if not losses:
        return [], []
    step = max(1, len(losses) // points)
    picked = losses[::step]
    return [str(i * step + 1) for i in range(len(picked))], [round(p["loss"], 3) for p in picked]


def markdown(report: dict) -> str:
    ok = report["verdict"] == "accepted"
    lines = [f"## {'✅' if ok else '❌'} Sprout retrain: {report['verdict']}"]
    if report.get("reasons"):
        lines.append("\n" + "\n".join(f"- {r}" for r in report["reasons"]))
    judged = any("judge_new" in leaf for leaf in report["leaves"])
    lines += ["", "| leaf | class | samples generated → kept | base | new | Δ |" + (" judge base → new |" if judged else ""),
              "|---|---|---:|---:|---:|---:|" + ("---:|" if judged else "")]
    for leaf in report["leaves"]:
        j = (f" {leaf['judge_base']:.2f} → {leaf['judge_new']:.2f} |" if "judge_new" in leaf else " – |") if judged else ""
        lines.append(f"| `{leaf['path']}` | {ICON.get(leaf['class'], '')} {leaf['class']} | "
                     f"{leaf['samples_generated']} → {leaf['samples_kept']} | {leaf['base_score']:.3f} | "
                     f"{leaf['new_score']:.3f} | {leaf['delta']:+.3f} |{j}")
    f = report["funnel"]
    lines += ["", f"**Data funnel:** {f['in']} generated → {f['out']} kept — " +
              ", ".join(f"{k} −{v}" for k, v in f["filters"].items() if v)]
    xs, ys = _curve(report)
    if ys:
        lines += ["", "```mermaid", "xychart-beta", '    title "Training loss"',
                  f"    x-axis [{', '.join(xs)}]", f'    y-axis "loss" {min(ys) * 0.95:.2f} --> {max(ys) * 1.05:.2f}',
                  f"    line [{', '.join(str(y) for y in ys)}]", "```"]
    fg = report["forgetting"]
    lines += ["", f"**Forgetting check:** replay loss {fg['base']:.3f} → {fg['new']:.3f} "
                  f"(limit +{fg['threshold']:.0%}): {'passed' if fg['passed'] else 'FAILED'}"]
    t = report["taxonomy"]
    lines += ["", f"<sub>run `{report['run_id']}` · taxonomy {t.get('ref') or t['path']} · "
                  f"started from {report['started_from']['kind']} · "
                  + " · ".join(f"{k} {v:.0f}s" for k, v in report["timings"].items()) + "</sub>"]
    return "\n".join(lines) + "\n"


def _svg(xs: list[float], ys: list[float], width: int = 640, height: int = 220) -> str:
    if not ys:
        return "<p>No training steps.</p>"
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or 1.0
    pts = " ".join(f"{40 + i * (width - 60) / max(1, len(ys) - 1):.1f},{height - 30 - (y - lo) / span * (height - 50):.1f}"
                   for i, y in enumerate(ys))
    return (f'<svg id="loss-chart" width="{width}" height="{height}" role="img" aria-label="training loss">'
            f'<rect width="100%" height="100%" fill="#fafafa"/>'
            f'<polyline fill="none" stroke="#2b6cb0" stroke-width="2" points="{pts}"/>'
            f'<text x="5" y="20" font-size="12">{hi:.2f}</text><text x="5" y="{height - 30}" font-size="12">{lo:.2f}</text>'
            f'<text x="{width // 2}" y="{height - 8}" font-size="12">optimizer step</text></svg>')


def html_page(report: dict) -> str:
    e = html.escape
    judged = any("judge_new" in leaf for leaf in report["leaves"])

    def judge_cell(leaf: dict) -> str:
        if not judged:
            return ""
        return (f"<td>{leaf['judge_base']:.2f} → {leaf['judge_new']:.2f}</td>" if "judge_new" in leaf
                else "<td>–</td>")
    rows = "".join(
        f"<tr class='{e(leaf['class'].replace(' ', '-').lower())}'><td><code>{e(leaf['path'])}</code></td>"
        f"<td>{e(leaf['class'])}</td><td>{leaf['samples_generated']} → {leaf['samples_kept']}</td>"
        f"<td>{leaf['base_score']:.3f}</td><td class='new-score'>{leaf['new_score']:.3f}</td><td>{leaf['delta']:+.3f}</td>"
        f"{judge_cell(leaf)}</tr>"
        for leaf in report["leaves"])
    examples = "".join(
        f"<details><summary><code>{e(leaf['path'])}</code></summary>" + "".join(
            f"<p><b>Q:</b> {e(x['question'])}<br><b>expected:</b> {e(x['expected'])}<br>"
            f"<b>base:</b> {e(x['base'])}<br><b>new:</b> {e(x['new'])}</p>" for x in leaf.get("examples", []))
        + "</details>" for leaf in report["leaves"])
    _, ys = _curve(report, points=200)
    fg = report["forgetting"]
    funnel = "".join(f"<li>{e(k)}: −{v}</li>" for k, v in report["funnel"]["filters"].items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Sprout report {e(report['run_id'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left}}tr.regressed td{{background:#fee}}
tr.improved td{{background:#efe}}</style></head><body>
<h1 id="verdict">Sprout retrain: {e(report['verdict'])}</h1>
<ul>{''.join(f'<li>{e(r)}</li>' for r in report.get('reasons', []))}</ul>
<h2>Leaves</h2><table id="leaves"><tr><th>leaf</th><th>class</th><th>samples</th><th>base</th><th>new</th><th>Δ</th>{"<th>judge base → new</th>" if judged else ""}</tr>{rows}</table>
<h2>Training loss</h2>{_svg([], ys)}
<h2>Data funnel</h2><p>{report['funnel']['in']} generated → {report['funnel']['out']} kept</p><ul>{funnel}</ul>
<h2>Forgetting</h2><p id="forgetting">replay loss {fg['base']:.3f} → {fg['new']:.3f}: {'passed' if fg['passed'] else 'FAILED'}</p>
<h2>Answers</h2>{examples}
<p><small>run {e(report['run_id'])}</small></p></body></html>"""


def write(report: dict, out_dir: Path) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (out_dir / "report.md").write_text(markdown(report))
    (out_dir / "report.html").write_text(html_page(report))
