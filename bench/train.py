"""Benchmark: training throughput, Sprout's packed DeepSpeed loop against the strongest Hugging
Face `Trainer` set-ups, on the same model, data, effective batch, optimiser, precision and timer.

    python bench/train.py            # 1000 samples per run, 3 interleaved repeats of each arm
    python bench/train.py --quick    # 250 samples per run, 3 repeats
    python bench/train.py --arms sprout,hf-group-length   # a subset (sprout + one HF arm at least)

Arms (each run a fresh process; the timer covers the training loop only, from the first step to
the last, and leaves out imports, model loading and saving):
  sprout          packed micro-batches (multipack), padding-free attention from position ids,
                  logits (and the softmax) only at the positions that carry a target,
                  DeepSpeed ZeRO-2, one optimizer step per ~16 samples
  hf-padding      Trainer, batch 16, dynamic padding to the longest sample of each batch
  hf-group-length Trainer, batch 16, dynamic padding, batches of similar lengths
                  (train_sampling_strategy="group_by_length")
  hf-flattening   Trainer, batch 16 flattened into one row without padding
                  (DataCollatorWithFlattening: transformers' own padding-free path)
  hf-flattening+varlen  the same with Sprout's attention (pipeline/train/attention.py): not a
                  baseline but an ablation, showing how much of the gap is the attention kernel
                  and how much the rest of the loop

Same for all: a config-built Llama (4 layers, hidden 128), fp32 on the CPU, torch AdamW
(betas 0.9/0.95), lr 1e-3 cosine with 5% warm-up, gradient clipping 1.0, one epoch. The figure is
**loss tokens per second** (tokens that carry a training target: the assistant turns), median of
the repeats, with the spread (min-max). Repeats are interleaved (arm order rotates each round)
so that a noisy machine hits every arm alike. The samples are the sample taxonomy's own generated
and mixed data (offline teacher): short answers, long answers and reading-comprehension prompts.
A `packer:` line times the packer itself (first-fit decreasing over a free-space tree) against
the textbook first-fit scan on 20,000 chat-like lengths, after checking both make the same bins.
The last line is one JSON object; its ratio is Sprout over the best HF baseline arm.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ARMS = ("sprout", "hf-padding", "hf-group-length", "hf-flattening", "hf-flattening+varlen")
HF_BASELINES = ("hf-padding", "hf-group-length", "hf-flattening")
BATCH = 16
LR = 1e-3


def make_data(tmp: Path, samples: int) -> Path:
    from pipeline.filter.run import FilterConfig, run_filters
    from pipeline.mix import Recipe, mix
    from pipeline.sdg.generate import generate, read_jsonl, write_jsonl
    from pipeline.sdg.teachers import OfflineTeacher

    os.environ["SPROUT_CACHE"] = str(tmp / "cache")
    generate(ROOT / "taxonomy", tmp / "gen", OfflineTeacher())
    records = [r for f in sorted((tmp / "gen/generated").glob("*.jsonl")) for r in read_jsonl(f)]
    leaves = {x["path"]: x for x in read_jsonl(tmp / "gen/leaves.jsonl")}
    kept, _ = run_filters(records, leaves, FilterConfig(use_embeddings=False))
    mix(kept, leaves, tmp / "mix", Recipe(min_per_leaf=1, max_per_leaf=10_000))
    rows = read_jsonl(tmp / "mix/phase1.jsonl") + read_jsonl(tmp / "mix/phase2.jsonl")
    data = [rows[i % len(rows)] for i in range(samples)]
    write_jsonl(tmp / "data/phase1.jsonl", data)
    return tmp / "data"


def model(tmp: Path) -> Path:
    from pipeline.train.student import StudentConfig, build_student, taxonomy_texts
    return build_student(taxonomy_texts(ROOT / "taxonomy"), tmp / "student",
                         StudentConfig(vocab_size=1024, hidden_size=128, intermediate_size=344,
                                       num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2))


def samples_of(student: Path, data: Path):
    from transformers import AutoTokenizer

    from pipeline.train.data import read_messages, tokenize_dataset
    tok = AutoTokenizer.from_pretrained(student)
    samples, _ = tokenize_dataset(tok, read_messages(data / "phase1.jsonl"), 2048)
    return tok, samples


def run_sprout(student: Path, data: Path, out: Path) -> dict:
    from pipeline.train.loop import TrainConfig, train
    from pipeline.train.recipe import Phase
    _, samples = samples_of(student, data)
    # one micro-batch holds ~BATCH samples' worth of tokens, as the HF arms' one batch does
    budget = int(math.ceil(BATCH * statistics.mean(len(s) for s in samples) / 64) * 64)
    phase = Phase("knowledge", "phase1.jsonl", epochs=1, lr=LR, effective_batch=BATCH, warmup_ratio=0.05)
    train(TrainConfig(student=str(student), out=str(out), phases=(phase,), data_dir=str(data), max_len=2048,
                      tokens_per_micro_batch=budget, zero_stage=2, checkpoint_every=10 ** 9, precision="fp32"),
          progress=False)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {"loss_tokens": sum(r["loss_tokens"] for r in rows), "tokens": sum(r["tokens"] for r in rows),
            "seconds": sum(r["seconds"] for r in rows), "steps": len(rows),
            "padding_efficiency": sum(r["tokens"] for r in rows) / max(1, sum(r["tokens"] / max(1e-9, r["padding_efficiency"]) for r in rows)),
            "final_loss": statistics.mean(r["loss"] for r in rows[-3:])}


def run_hf(arm: str, student: Path, data: Path, out: Path) -> dict:
    import torch
    from transformers import (AutoModelForCausalLM, DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer,
                              TrainerCallback, TrainingArguments)

    tok, samples = samples_of(student, data)
    rows = [{"input_ids": s.input_ids, "labels": s.labels} for s in samples]
    counts = {"loss_tokens": 0, "tokens": 0, "processed": 0}

    def count(batch):
        labels = batch["labels"]
        counts["loss_tokens"] += int((labels[:, 1:] != -100).sum())  # the model shifts: targets 1..L-1
        if "attention_mask" in batch:
            counts["tokens"] += int(batch["attention_mask"].sum())
        else:
            counts["tokens"] += int(batch["input_ids"].numel())
        counts["processed"] += int(batch["input_ids"].numel())
        return batch

    if arm.startswith("hf-flattening"):
        inner = DataCollatorWithFlattening()
    else:
        inner = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100)
        for r in rows:
            r["attention_mask"] = [1] * len(r["input_ids"])

    class Timer(TrainerCallback):
        start = end = 0.0
        steps = 0

        def on_train_begin(self, *a, **k):
            Timer.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            Timer.steps += 1

        def on_train_end(self, *a, **k):
            Timer.end = time.perf_counter()

    losses = []

    class Losses(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **k):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    from pipeline.train.attention import register
    attention = register() if arm == "hf-flattening+varlen" else "sdpa"
    m = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32, attn_implementation=attention)
    steps = math.ceil(len(rows) / BATCH)
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=BATCH, gradient_accumulation_steps=1, num_train_epochs=1,
        learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=max(1, int(steps * 0.05)), adam_beta1=0.9,
        adam_beta2=0.95, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=42,
        train_sampling_strategy="group_by_length" if arm == "hf-group-length" else "random")
    trainer = Trainer(model=m, args=args, train_dataset=rows, data_collator=lambda f: count(inner(f)),
                      callbacks=[Timer(), Losses()])
    trainer.train()
    return {"loss_tokens": counts["loss_tokens"], "tokens": counts["tokens"], "seconds": Timer.end - Timer.start,
            "steps": Timer.steps, "padding_efficiency": counts["tokens"] / max(1, counts["processed"]),
            "final_loss": statistics.mean(losses[-3:]) if losses else float("nan")}


def bench_packer(n: int = 20_000, budget: int = 2880) -> dict:
    """The packer (first-fit decreasing over a free-space tree) against the textbook scan over
    every bin, on lengths like the chat data's (same bins, checked)."""
    import random

    from pipeline.train.packing import pack, pack_scan
    rng = random.Random(0)
    lengths = [min(2048, int(rng.lognormvariate(5, 0.6))) + 1 for _ in range(n)]
    t = time.perf_counter()
    tree = pack(lengths, budget)
    tree_s = time.perf_counter() - t
    t = time.perf_counter()
    bins = pack_scan(lengths, budget)
    scan_s = time.perf_counter() - t
    assert bins == tree, "the tree packer differs from the scan"
    return {"samples": n, "bins": len(bins), "tree_s": round(tree_s, 4), "scan_s": round(scan_s, 4)}


def child(arm: str, student: Path, data: Path, out: Path) -> None:
    r = run_sprout(student, data, out) if arm == "sprout" else run_hf(arm, student, data, out)
    r["loss_tokens_per_s"] = r["loss_tokens"] / r["seconds"]
    print("RESULT " + json.dumps(r), flush=True)


def one(arm: str, student: Path, data: Path, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    p = subprocess.run([sys.executable, __file__, "--arm", arm, "--student", str(student), "--data", str(data),
                        "--out", str(out)], capture_output=True, text=True, env=env)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{arm} failed:\n{p.stderr[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="250 samples per run")
    ap.add_argument("--samples", type=int, help="samples per run (default 1000; quick 250)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every arm (default 3)")
    ap.add_argument("--arms", default=",".join(ARMS),
                    help="comma-separated arms to run (default: all; the ratio needs sprout and one HF baseline)")
    ap.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # internal: run one arm in this process
    ap.add_argument("--student", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        child(args.arm, Path(args.student), Path(args.data), Path(args.out))
        return
    n = args.samples or (250 if args.quick else 1000)
    arms = tuple(a for a in ARMS if a in args.arms.split(","))
    unknown = set(args.arms.split(",")) - set(ARMS)
    if unknown or "sprout" not in arms or not set(arms) & set(HF_BASELINES):
        ap.error(f"--arms: choose from {', '.join(ARMS)}, with sprout and at least one of {', '.join(HF_BASELINES)}")
    packer = bench_packer()
    results: dict[str, list[dict]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        data = make_data(tmp, n)
        student = model(tmp)
        for r in range(args.repeats):
            order = arms[r % len(arms):] + arms[:r % len(arms)]
            for arm in order:
                res = one(arm, student, data, tmp / f"{arm}-{r}")
                results[arm].append(res)
                print(f"  repeat {r + 1} {arm:<16} {res['loss_tokens_per_s']:>9,.0f} loss tokens/s "
                      f"({res['seconds']:.1f} s, {res['steps']} steps)", file=sys.stderr, flush=True)
    summary = {}
    for arm, rs in results.items():
        tps = sorted(x["loss_tokens_per_s"] for x in rs)
        summary[arm] = {"loss_tokens_per_s": statistics.median(tps), "min": tps[0], "max": tps[-1],
                        "steps": rs[0]["steps"], "loss_tokens": rs[0]["loss_tokens"],
                        "padding_efficiency": statistics.mean(x["padding_efficiency"] for x in rs),
                        "final_loss": statistics.mean(x["final_loss"] for x in rs)}
    hf = {a: s for a, s in summary.items() if a in HF_BASELINES}
    best = max(hf, key=lambda a: hf[a]["loss_tokens_per_s"])
    ratio = summary["sprout"]["loss_tokens_per_s"] / hf[best]["loss_tokens_per_s"]
    print(f"{'arm':<18}{'loss tok/s':>11}{'spread':>17}{'steps':>7}{'loss tokens':>12}{'padding eff.':>13}{'final loss':>11}")
    for arm, s in summary.items():
        spread = f"{s['min']:,.0f}-{s['max']:,.0f}"
        print(f"{arm:<18}{s['loss_tokens_per_s']:>11,.0f}{spread:>17}{s['steps']:>7}"
              f"{s['loss_tokens']:>12,}{s['padding_efficiency']:>13.1%}{s['final_loss']:>11.3f}")
    from _shared import goal
    print(f"ratio (loss tokens/s, median of {args.repeats}): sprout / best HF arm ({best}) = {ratio:.2f}x")
    print(goal(f"loss tokens/s over the best HF arm ({best})", round(ratio, 2), 1.3, unit="x"))
    print(f"packer: {packer['samples']:,} samples into {packer['bins']:,} bins in {packer['tree_s'] * 1000:.0f} ms "
          f"(first-fit scan: {packer['scan_s'] * 1000:.0f} ms, {packer['scan_s'] / packer['tree_s']:.0f}x)")
    print(json.dumps({"bench": "train", "ratio": round(ratio, 3), "best_hf_arm": best, "samples": n,
                      "repeats": args.repeats, "packer": packer,
                      "arms": {a: {k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()}
                               for a, s in summary.items()}}))


if __name__ == "__main__":
    main()
