"""Benchmark: useful (non-pad) tokens/s training the same tiny model on the same samples —
Sprout's packed DeepSpeed loop against Hugging Face `Trainer` with its default dynamic padding
(pad each batch to its longest sample) — in one run, on the CPU.

    python bench/train.py            # ~120k useful tokens
    python bench/train.py --quick    # ~30k useful tokens

The samples are the sample taxonomy's own generated and mixed data (offline teacher), which
mixes short answers, long answers and reading-comprehension prompts: lengths vary as in real
synthetic data. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


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


def ours(student: Path, data: Path, out: Path, budget: int) -> dict:
    from pipeline.train.loop import TrainConfig, train
    from pipeline.train.recipe import Phase
    phase = Phase("knowledge", "phase1.jsonl", epochs=1, lr=1e-3, effective_batch=16, warmup_ratio=0.05)
    train(TrainConfig(student=str(student), out=str(out), phases=(phase,), data_dir=str(data), max_len=2048,
                      tokens_per_micro_batch=budget, zero_stage=2, checkpoint_every=10 ** 9), progress=False)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    tokens, seconds = sum(r["tokens"] for r in rows), sum(r["seconds"] for r in rows)
    eff = sum(r["padding_efficiency"] * r["tokens"] for r in rows) / max(1, tokens)
    return {"useful_tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "padding_efficiency": eff, "final_loss": rows[-1]["loss"]}


def baseline(student: Path, data: Path, out: Path, batch: int) -> dict:
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments)

    from pipeline.train.data import read_messages, tokenize_dataset
    tok = AutoTokenizer.from_pretrained(student)
    samples, _ = tokenize_dataset(tok, read_messages(data / "phase1.jsonl"), 2048)
    rows = [{"input_ids": s.input_ids, "labels": s.labels, "attention_mask": [1] * len(s)} for s in samples]

    class Padded(DataCollatorForSeq2Seq):
        real = processed = 0

        def __call__(self, features, return_tensors=None):
            batch_ = super().__call__(features, return_tensors)
            Padded.real += int(batch_["attention_mask"].sum())
            Padded.processed += int(batch_["attention_mask"].numel())
            return batch_

    collator = Padded(tok, padding="longest", label_pad_token_id=-100)
    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=batch, num_train_epochs=1,
                             learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=max(1, len(rows) // batch // 20),
                             adam_beta1=0.9, adam_beta2=0.95, max_grad_norm=1.0, logging_steps=10 ** 9,
                             save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
                             disable_tqdm=True, seed=42)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator)
    result = trainer.train()
    seconds = result.metrics["train_runtime"]
    return {"useful_tokens": Padded.real, "seconds": seconds, "tokens_per_s": Padded.real / seconds,
            "padding_efficiency": Padded.real / max(1, Padded.processed), "final_loss": result.training_loss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--samples", type=int)
    ap.add_argument("--budget", type=int, default=1024, help="packing budget in tokens per micro-batch")
    ap.add_argument("--batch", type=int, default=8, help="baseline batch size")
    args = ap.parse_args()
    samples = args.samples or (250 if args.quick else 1000)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        data = make_data(tmp, samples)
        student = model(tmp)
        # the baseline first: our loop starts torch.distributed in this process, and Trainer would
        # then wrap the model in DDP and pay for it
        b = baseline(student, data, tmp / "hf", args.batch)
        a = ours(student, data, tmp / "ours", args.budget)
    ratio = a["tokens_per_s"] / b["tokens_per_s"]
    print(f"{'trainer':<44}{'useful tokens':>14}{'seconds':>9}{'tokens/s':>10}{'padding eff.':>14}")
    print(f"{'sprout (packed, DeepSpeed ZeRO-2)':<44}{a['useful_tokens']:>14,}{a['seconds']:>9.1f}{a['tokens_per_s']:>10,.0f}{a['padding_efficiency']:>14.1%}")
    print(f"{'HF Trainer (dynamic padding, batch ' + str(args.batch) + ')':<44}{b['useful_tokens']:>14,}{b['seconds']:>9.1f}{b['tokens_per_s']:>10,.0f}{b['padding_efficiency']:>14.1%}")
    from _shared import goal
    print(f"ratio (useful tokens/s): {ratio:.2f}x")
    print(goal("padding efficiency", round(a["padding_efficiency"] * 100, 1), 95, unit="%"))
    print(goal("useful tokens/s over the baseline", round(ratio, 2), 1.5, unit="x"))
    print(json.dumps({"bench": "train", "ratio": round(ratio, 3), "samples": samples,
                      "sprout": {k: round(v, 4) if isinstance(v, float) else v for k, v in a.items()},
                      "baseline": {k: round(v, 4) if isinstance(v, float) else v for k, v in b.items()}}))


if __name__ == "__main__":
    main()
