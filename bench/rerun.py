"""Benchmark: a one-leaf change and `sprout run` again, against the first run (the baseline,
measured in the same invocation). Each run is its own `sprout run` process, as a user runs it;
the stage times come from the runs' manifests, which also show which leaves were regenerated.

    python bench/rerun.py            # generate + filter (sprout run --until filter)
    python bench/rerun.py --full     # whole runs, training included (~3 min per run on 2 cores)
    python bench/rerun.py --full --start-from last   # reruns continue from the accepted model
                                                     # and train only the changed leaf + replay

Changes measured: a skill leaf (haiku: one seed reworded) and a knowledge leaf (water cycle: one
seed question reworded), each against the first run of the unchanged sample taxonomy.
The last line is one JSON object for machines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHANGES = {
    "skill leaf (haiku)": ("compositional_skills/writing/freeform/haiku/qna.yaml",
                           "Write a haiku about an autumn river.", "Write a haiku about an autumn stream."),
    "knowledge leaf (water cycle)": ("knowledge/science/earth/water_cycle/qna.yaml",
                                     "What is evaporation?", "What is evaporation, in a few words?"),
}


def sprout_run(tax: Path, out: Path, runs: Path, env: dict, full: bool, start_from: str) -> dict:
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(tax), "--out", str(out), "--runs-root", str(runs),
           "--start-from", start_from]
    if not full:
        cmd += ["--until", "filter"]
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode not in (0, 1) or not (out / "manifest.json").exists():
        sys.exit(f"sprout run failed ({p.returncode}):\n{p.stderr[-3000:]}")
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    return {"wall_s": round(wall, 2), "generate_s": stages["generate"]["seconds"],
            "filter_s": stages["filter"]["seconds"],
            "stages_s": round(sum(s.get("seconds", 0) for s in stages.values()), 2),
            "generated": stages["generate"]["generated_leaves"], "filtered": stages["filter"]["filtered_leaves"],
            "trained": stages.get("mix", {}).get("leaves_trained"),
            "verdict": json.loads((out / "report.json").read_text())["verdict"] if (out / "report.json").exists() else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="whole runs (training and evaluation included)")
    ap.add_argument("--start-from", choices=["base", "last"], default="base",
                    help="what reruns train from (sprout run --start-from); 'last' trains only the changed leaf")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sprout-bench-rerun-"))
    try:
        env = {**os.environ, "SPROUT_CACHE": str(work / "cache"), "TQDM_DISABLE": "1"}
        tax = work / "taxonomy"
        shutil.copytree(ROOT / "taxonomy", tax)
        git = ["git", "-C", str(tax), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
        for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "sample taxonomy"]):
            subprocess.run(git + step, check=True)  # a repository: reruns diff against the trained commit
        runs = work / "runs"
        rows = {"first run (all leaves)": sprout_run(tax, work / "first", runs, env, args.full, args.start_from)}
        for name, (leaf, old, new) in CHANGES.items():
            path = tax / leaf
            original = path.read_text()
            assert old in original, f"{leaf} no longer contains {old!r}"
            path.write_text(original.replace(old, new, 1))
            rows[name] = sprout_run(tax, work / name.split()[0], runs, env, args.full, args.start_from)
            path.write_text(original)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    first = rows["first run (all leaves)"]
    base = first["generate_s"] + first["filter_s"]
    print(f"{'run':<30} {'generated':>9} {'filtered':>8} {'generate s':>10} {'filter s':>8} "
          f"{'gen+filter s':>12} {'ratio':>6} {'stages s':>8} {'ratio':>6} {'process s':>9} {'trained':>7} verdict")
    out = []
    for name, r in rows.items():
        gf = r["generate_s"] + r["filter_s"]
        ratio, whole = base / max(gf, 1e-3), first["stages_s"] / max(r["stages_s"], 1e-3)
        print(f"{name:<30} {len(r['generated']):>9} {len(r['filtered']):>8} {r['generate_s']:>10.2f} "
              f"{r['filter_s']:>8.2f} {gf:>12.2f} {ratio:>5.1f}x {r['stages_s']:>8.1f} {whole:>5.1f}x "
              f"{r['wall_s']:>9.1f} {len(r['trained']) if r['trained'] is not None else '-':>7} "
              f"{r['verdict'] or '-'}")
        out.append({"run": name, **r, "gen_filter_s": round(gf, 2), "ratio": round(ratio, 1),
                    "whole_ratio": round(whole, 2)})
    print("ratio: first run's generate + filter seconds / this run's (stages s: all stages run, "
          + ("training included" if args.full else "up to filter") + "); "
          "process s includes interpreter start and imports")
    print(json.dumps({"bench": "rerun", "full": args.full, "start_from": args.start_from, "rows": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
