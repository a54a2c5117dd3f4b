"""Looks at an open pull request before it is merged.

`sprout preview` runs checkout -> validate -> diff -> generate -> filter on the leaves the pull
request changes (against its base) and writes a sample of the synthetic data with the filter
funnel. `sprout precheck` asks the current student (the last accepted model, or the base) the
changed leaves' seed questions and sets its answers beside the expected ones, so reviewers see
the gap the contribution should close. Both reuse `sprout run`'s stages and run folder layout.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

from . import mdescape as md
from .run import Run, RunConfig, RunError


def _cell(text: str | None, limit: int = 240) -> str:
    """Text for a Markdown table cell: one line, nothing active, long text cut."""
    return md.cell(text, limit)


def _block(text: str | None, limit: int = 400) -> str:
    """Text for a Markdown paragraph that keeps its line breaks (a haiku is its lines)."""
    t = md.clean(text, keep_lines=True).strip()
    t = t if len(t) <= limit else t[: limit - 1] + "…"
    return "<br>".join(md.text(line) for line in t.split("\n") if line.strip())


def _refs(r: Run) -> str:
    head, base = r.state.get("taxonomy_sha"), r.state.get("last_trained")
    return ((md.code(head[:7]) if head else md.text(r.state["taxonomy_path"]))
            + (f" against {md.code(base[:7])}" if base else ""))


# -- preview ---------------------------------------------------------------------------------
def preview(config: RunConfig, samples: int = 3, log=print) -> tuple[Path, dict]:
    r = Run(replace(config, changed_only=True), log, kind="preview")
    r.execute(until="filter")
    from .sdg.generate import read_jsonl
    data = r.out / "data"
    frep = json.loads((data / "filter_report.json").read_text())
    kept = read_jsonl(data / "filtered.jsonl")
    rng = random.Random(config.seed)
    leaves = []
    for path in r.state["changed"]:
        fl = frep["leaves"].get(path, {"in": 0, "out": 0, "filters": {}})
        rows = sorted((x for x in kept if x["leaf"] == path), key=lambda x: x["id"])
        dropped = [{"filter": name, **ex} for name, f in fl["filters"].items() for ex in f.get("examples", [])]
        leaves.append({"path": path, "generated": fl["in"], "kept": fl["out"],
                       "dropped_by": {n: f["dropped"] for n, f in fl["filters"].items() if f["dropped"]},
                       "emptied_by": fl.get("emptied_by"),
                       "samples": [{k: x.get(k) for k in ("shape", "context", "question", "answer")}
                                   for x in rng.sample(rows, min(samples, len(rows)))],
                       "dropped_examples": dropped[:samples]})
    result = {"schema": 1, "kind": "preview", "run_id": r.manifest["run_id"],
              "ref": r.state.get("taxonomy_sha"), "base_ref": r.state.get("last_trained"),
              "teacher": config.teacher if not config.teacher_model else f"{config.teacher} ({config.teacher_model})",
              "leaves": leaves, "funnel": {"in": frep["totals"]["in"], "out": frep["totals"]["out"],
                                           "filters": {k: v["dropped"] for k, v in frep["totals"]["filters"].items()}}}
    (r.out / "preview.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    (r.out / "preview.md").write_text(preview_markdown(result, _refs(r)))
    r.place.push()  # to the run's folder in object storage (nothing with a local one)
    return r.out, result


def preview_markdown(p: dict, refs: str = "") -> str:
    if not p["leaves"]:
        return "## Sprout preview: this pull request changes no leaves\n"
    f = p["funnel"]
    lines = [f"## 🌱 Sprout preview: {len(p['leaves'])} leaf(s), {f['in']} samples generated → {f['out']} kept",
             "", f"Teacher {md.code(p['teacher'])} on {refs}. Nothing here is trained yet: this is the data the "
             "leaves would add on merge.", "",
             "| leaf | generated → kept | dropped by |", "|---|---:|---|"]
    for leaf in p["leaves"]:
        why = ", ".join(f"{md.text(k)} −{v}" for k, v in leaf["dropped_by"].items())
        if leaf["emptied_by"]:
            why += f" — **emptied by {md.text(leaf['emptied_by']['filter'])}**"
        lines.append(f"| {md.code(leaf['path'], table=True)} | {leaf['generated']} → {leaf['kept']} | {why} |")
    for leaf in p["leaves"]:
        lines += ["", f"<details><summary><code>{md.html_text(leaf['path'])}</code>: {len(leaf['samples'])} of "
                      f"{leaf['kept']} kept samples</summary>", ""]
        for s in leaf["samples"]:
            if s.get("context"):
                lines.append(f"> {_cell(s['context'], 300)}")
                lines.append("")
            lines += [f"**Q** ({md.text(s['shape'])}): {_block(s['question'], 300)}", "",
                      f"**A**: {_block(s['answer'], 400)}", ""]
        if leaf["dropped_examples"]:
            lines.append("Dropped, for example:")
            lines += [f"- **{md.text(d['filter'])}**: {_cell(d['reason'], 120)} — _{_cell(d['question'], 120)}_"
                      for d in leaf["dropped_examples"]]
        lines.append("</details>")
    lines += ["", f"<sub>run {md.code(p['run_id'])} · funnel: "
                  + (", ".join(f"{md.text(k)} −{v}" for k, v in f["filters"].items() if v) or "nothing dropped") + "</sub>"]
    return "\n".join(lines) + "\n"


# -- precheck --------------------------------------------------------------------------------
def current_student(r: Run) -> tuple[Path, str]:
    """The current student: the last accepted model (what users talk to today), else the base."""
    named = r.config.student not in ("default", "smollm2", "tiny")  # a folder the caller chose
    last = None if named else r.last_accepted()
    if last is not None:
        return r.place.local_model(last["path"]), f"last accepted model {md.code(last['id'])}"
    base, _ = r._base_student()
    return base, md.code(r.config.student) if named else "the base student"


def precheck(config: RunConfig, log=print) -> tuple[Path, dict]:
    from .eval.evaluate import EvalConfig, answer_all, questions_for
    from .eval.scoring import score
    from .mix import SYSTEM
    from .sdg.generate import leaf_info
    from .taxonomy.reader import read_leaf
    r = Run(config, log, kind="precheck")
    r.execute(until="diff")
    tax = Path(r.state["taxonomy_path"])  # validated already: read just the changed leaves
    leaves = [leaf_info(read_leaf(tax / p, root=tax)) for p in sorted(r.state["changed"])]
    model, described = current_student(r) if leaves else (None, "none")
    # every seed question (nothing is trained yet); the retrain evaluates its held-out share
    items = [(leaf["path"], it) for leaf in leaves for it in questions_for({**leaf, "heldout": leaf["seeds"]}, SYSTEM)]
    log(f"[precheck] asking {described} {len(items)} seed questions from {len(leaves)} leaves ...")
    answers = answer_all(model, [it["messages"] for _, it in items], EvalConfig()) if items else []
    per_leaf: dict[str, dict] = {}
    for (path, it), answer in zip(items, answers):
        leaf = per_leaf.setdefault(path, {"path": path, "score": 0.0, "questions": []})
        s = score(answer, it["reference"])
        leaf["questions"].append({"question": it["user"], "expected": it["reference"], "answer": answer,
                                  "score": round(s, 4)})
    for leaf in per_leaf.values():
        leaf["score"] = round(sum(q["score"] for q in leaf["questions"]) / len(leaf["questions"]), 4)
    result = {"schema": 1, "kind": "precheck", "run_id": r.manifest["run_id"], "student": str(model) if model else None,
              "student_described": described, "ref": r.state.get("taxonomy_sha"),
              "base_ref": r.state.get("last_trained"), "leaves": [per_leaf[p] for p in sorted(per_leaf)]}
    (r.out / "precheck.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    (r.out / "precheck.md").write_text(precheck_markdown(result, _refs(r)))
    r.place.push()  # to the run's folder in object storage (nothing with a local one)
    return r.out, result


def precheck_markdown(p: dict, refs: str = "") -> str:
    if not p["leaves"]:
        return "## Sprout precheck: this pull request changes no leaves\n"
    lines = [f"## 🔎 Sprout precheck: what {p['student_described']} answers today",
             "", f"The seed questions of the leaves changed on {refs}, asked before training. Scores are "
             "the mean of content-word F1 and ROUGE-L against the expected answer (0 to 1); after the "
             "merge, the retrain report asks the held-out share of them (never trained on) again."]
    for leaf in p["leaves"]:
        lines += ["", f"### {md.code(leaf['path'])} — score {leaf['score']:.3f}", "",
                  "| question | expected | student | score |", "|---|---|---|---:|"]
        for q in leaf["questions"]:
            lines.append(f"| {_cell(q['question'], 200)} | {_cell(q['expected'])} | {_cell(q['answer']) or '_(no answer)_'} | "
                         f"{q['score']:.2f} |")
    lines += ["", f"<sub>run {md.code(p['run_id'])} · student {md.code(p['student'])}</sub>"]
    return "\n".join(lines) + "\n"


__all__ = ["preview", "precheck", "preview_markdown", "precheck_markdown", "RunError"]
