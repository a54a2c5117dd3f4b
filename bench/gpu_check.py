"""The one-shot GPU check behind bench/gpu_train.sh (read its header first).

Each part runs in its own process (a crash or a CUDA error in one leaves the others standing, and
every HF arm starts from a clean allocator), under its own time limit inside a total one; the
cumulative result is rewritten after every part as one JSON line in $OUT/gpu_train.json, so even
a run cut short leaves what it measured. Parts, in order:

  probe        environment, fails fast: CUDA, native bf16, torch's varlen_attn (a tiny forward
               and backward), DeepSpeed + its dependencies, transformers, the SmolLM2 tokenizer
  prepare      two Llama-style students with SmolLM2's real 49,152-token vocabulary, random init:
               ~113M (hidden 768, 12 layers; 75M without embeddings) and ~1.07B (TinyLlama's
               shape: hidden 2048, 22 layers, GQA 32/4), and chat data from the sample taxonomy's words
  correctness  bf16: one packed row of 12 samples vs each sample alone (sdpa), loss and gradients
  kernel       attention alone, packed q/k/v at 16k and 32k tokens with 50 and 300 samples,
               forward + backward, CUDA events: torch's varlen_attn vs one sdpa call per sample vs
               sdpa with the dense block-causal mask (what HF's flattening path runs)
  sprout-100m  Sprout's loop end to end (DeepSpeed ZeRO-2, bf16, packed, varlen kernel)
  hf-sdpa      HF Trainer + DataCollatorWithFlattening, default attention (sdpa), bf16 autocast
  hf-varlen    the same Trainer with Sprout's varlen kernel (its flash-attention kwargs): an ablation
  sprout-1b    Sprout's loop at ~1B, micro-batch tokens from the recipe (token_budget)
  zero3        ZeRO-3 and ZeRO-2, bf16, bottom half frozen, two phases: exports reload to the
               same loss, frozen layers bit for bit, GPU memory back to its baseline after each phase

End-to-end arms: >= 5 warm-up and >= 30 timed optimizer steps, one micro-batch per step. MFU
counts the non-embedding matmuls (6 N per token), the output layer at the positions it is
computed (Sprout: target positions only; HF: every position) and causal attention
(12 x layers x attention width x sum of L(L+1)/2 per sample), over the GPU's dense bf16 peak
(PEAK_TFLOPS, 989 for H100/H200 SXM); recomputation from checkpointing is not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SMOKE = os.environ.get("SMOKE") == "1"
PEAK = float(os.environ.get("PEAK_TFLOPS", "989")) * 1e12
TOKENIZER = ROOT / "bench" / "gpu-wheels" / "smollm2-tokenizer"
WARMUP, TIMED = (1, 2) if SMOKE else (5, 30)

# (name, seconds allowed): the sum stays under the 8-minute goal with room for start-up
PARTS = [("probe", 60), ("prepare", 90), ("correctness", 60), ("kernel", 60), ("sprout-100m", 90),
         ("hf-sdpa", 90), ("hf-varlen", 75), ("sprout-1b", 150), ("zero3", 120)]
TOTAL_S = float(os.environ.get("GPU_CHECK_SECONDS", "470"))

SHAPES = {  # hidden, intermediate, layers, heads, kv heads
    "100m": (768, 2048, 12, 12, 4),
    "1b": (2048, 5632, 22, 32, 4),
    "smoke": (64, 128, 2, 4, 2),
}


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- shared helpers (in the parts)

def tokenizer_dir() -> Path:
    if TOKENIZER.is_dir():
        return TOKENIZER
    if SMOKE:  # a CPU check of the script without the builder's output: Sprout's tiny tokenizer
        from pipeline.train.student import taxonomy_texts, train_tokenizer
        d = Path(os.environ["GPU_CHECK_WORK"]) / "tokenizer"
        if not d.is_dir():
            train_tokenizer(taxonomy_texts(ROOT / "taxonomy"), 2048).save_pretrained(d)
        return d
    raise SystemExit(f"{TOKENIZER} missing: run bench/gpu_wheels.sh where the package index is, and carry "
                     "bench/gpu-wheels with the tree")


def student(work: Path, size: str) -> Path:
    return work / f"student-{size}"


def sizes() -> list[str]:
    return ["smoke"] if SMOKE else ["100m", "1b"]


def e2e_size(part: str) -> str:
    return "smoke" if SMOKE else part.rsplit("-", 1)[1]


def count_flops_params(config) -> tuple[int, int]:
    from pipeline.train.recipe import count_parameters
    total, embed = count_parameters(config)
    return total, total - embed


def attention_flops(config, lengths) -> float:
    width = config.num_attention_heads * (getattr(config, "head_dim", None) or config.hidden_size //
                                          config.num_attention_heads)
    return 12 * config.num_hidden_layers * width * sum(n * (n + 1) / 2 for n in lengths)


def step_flops(config, lengths, logit_positions: int) -> float:
    _, non_embed = count_flops_params(config)
    return 6 * non_embed * sum(lengths) + 6 * config.hidden_size * config.vocab_size * logit_positions \
        + attention_flops(config, lengths)


def device():
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync():
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory_gib() -> float | None:
    import torch
    return torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None


def load_samples(work: Path):
    from transformers import AutoTokenizer

    from pipeline.train.data import read_messages, tokenize_dataset
    tok = AutoTokenizer.from_pretrained(tokenizer_dir())
    samples, _ = tokenize_dataset(tok, read_messages(work / "data" / "phase1.jsonl"), 4096)
    return tok, samples


# ---------------------------------------------------------------- parts

def part_probe(work: Path) -> dict:
    import platform

    import torch
    r = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    import transformers
    r["transformers"] = transformers.__version__
    try:
        import deepspeed
        r["deepspeed"] = deepspeed.__version__
        import hjson  # noqa: F401
        import pydantic
        r["pydantic"] = pydantic.__version__
    except Exception as e:  # noqa: BLE001
        raise SystemExit(f"DeepSpeed or its dependencies do not import ({e!r}): run bench/gpu_wheels.sh and "
                         "carry bench/gpu-wheels with the tree")
    r["tokenizer"] = str(tokenizer_dir())
    from transformers import AutoTokenizer
    r["vocab"] = len(AutoTokenizer.from_pretrained(tokenizer_dir()))
    from pipeline.train.attention import native_kernel, varlen_call
    from pipeline.train.loop import native_bf16
    kernel = native_kernel()
    r["varlen_attn_params"] = sorted(kernel[1]) if kernel else None
    if not torch.cuda.is_available():
        if not SMOKE:
            raise SystemExit("no CUDA device visible to torch")
        r["device"] = "cpu (smoke)"
        return r
    r["device"] = torch.cuda.get_device_name(0)
    r["capability"] = list(torch.cuda.get_device_capability(0))
    r["memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)
    r["native_bf16"] = native_bf16()
    if not r["native_bf16"]:
        raise SystemExit(f"{r['device']}: no native bf16 (compute capability {r['capability']})")
    if kernel is None:
        raise SystemExit(f"torch {torch.__version__} has no torch.nn.attention.varlen.varlen_attn")
    q = torch.randn(64, 4, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(64, 2, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(64, 2, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    cu = torch.tensor([0, 20, 64], dtype=torch.int32, device="cuda")
    out = varlen_call(kernel[0], kernel[1], q, k, v, cu, 44, 64 ** -0.5)
    out.float().sum().backward()
    ref = torch.nn.functional.scaled_dot_product_attention(
        q[20:].transpose(0, 1)[None], k[20:].transpose(0, 1).repeat_interleave(2, 0)[None],
        v[20:].transpose(0, 1).repeat_interleave(2, 0)[None], is_causal=True)[0].transpose(0, 1)
    r["varlen_attn_max_error"] = float((out[20:].float() - ref.float()).abs().max())
    if r["varlen_attn_max_error"] > 2e-2 or q.grad is None:
        raise SystemExit(f"varlen_attn disagrees with sdpa: {r['varlen_attn_max_error']}")
    return r


def part_prepare(work: Path) -> dict:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from pipeline.train.student import taxonomy_texts
    tok = AutoTokenizer.from_pretrained(tokenizer_dir())
    made = {}
    for size in sizes():
        h, inter, layers, heads, kv = SHAPES[size]
        config = LlamaConfig(vocab_size=len(tok), hidden_size=h, intermediate_size=inter, num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=8192,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                             tie_word_embeddings=True)
        torch.manual_seed(0)
        with device():  # initialise on the GPU: a 1B model's init on the CPU takes longer than its training here
            model = LlamaForCausalLM(config)
        folder = student(work, size)
        model.save_pretrained(folder, safe_serialization=True)
        tok.save_pretrained(folder)
        (folder / "sprout_student.json").write_text(json.dumps({"name": f"bench {size}", "pretrained": True}))
        total, non_embed = count_flops_params(config)
        made[size] = {"parameters": sum(p.numel() for p in model.parameters()), "estimated": total,
                      "non_embedding": non_embed, "vocab": config.vocab_size}
        del model
    # chat data: questions and answers drawn from the sample taxonomy's words; answers 20-800 words
    rng = random.Random(0)
    words = " ".join(taxonomy_texts(ROOT / "taxonomy")).split()
    n = 120 if SMOKE else 3000
    (work / "data").mkdir(exist_ok=True)
    with open(work / "data" / "phase1.jsonl", "w") as f:
        for _ in range(n):
            q = " ".join(rng.choice(words) for _ in range(rng.randint(10, 60)))
            a = " ".join(rng.choice(words) for _ in range(rng.randint(20, 120 if SMOKE else 800)))
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
                    + "\n")
    import shutil
    shutil.copy(work / "data" / "phase1.jsonl", work / "data" / "phase2.jsonl")
    _, samples = load_samples(work)
    lengths = [len(s) for s in samples]
    return {"students": made, "samples": len(samples), "mean_tokens": sum(lengths) / len(lengths),
            "max_tokens": max(lengths)}


def part_correctness(work: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from pipeline.train.attention import register
    from pipeline.train.packing import Bin, collate_micro, micro_loss
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    size = sizes()[0]
    tok, samples = load_samples(work)
    samples = samples[:12]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def grads(attention: str, packed: bool):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(student(work, size), dtype=dtype,
                                                     attn_implementation=attention).to(device())
        total = 0.0
        rows = [Bin(list(range(len(samples))), 0)] if packed else [Bin([i], 0) for i in range(len(samples))]
        for b in rows:
            loss = micro_loss(model, collate_micro(samples, b, pad, device=device()))
            loss.backward()
            total += float(loss.detach())
        return total, {k: p.grad.float().clone() for k, p in model.named_parameters()}
    ref_loss, ref = grads("sdpa", packed=False)
    loss, got = grads(register(), packed=True)
    rel = {k: float((got[k] - ref[k]).norm() / ref[k].norm().clamp_min(1e-12)) for k in ref}
    worst = max(rel, key=rel.get)
    result = {"dtype": str(dtype).replace("torch.", ""), "samples": len(samples),
              "loss_unpacked": ref_loss, "loss_packed": loss, "loss_rel_diff": abs(loss - ref_loss) / ref_loss,
              "grad_rel_err_max": rel[worst], "grad_rel_err_worst_param": worst,
              "grad_rel_err_median": sorted(rel.values())[len(rel) // 2]}
    # bf16 rounding differs between one long row and many short ones; a leak across samples would
    # move the loss by whole percents
    result["ok"] = result["loss_rel_diff"] < 1e-2 and result["grad_rel_err_max"] < 0.1
    return result


def part_kernel(work: Path) -> dict:
    import torch

    from pipeline.train.attention import native_kernel, varlen_call
    gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if gpu else torch.float32
    heads, kv, dim = (32, 4, 64) if not SMOKE else (4, 2, 16)
    cases = [(16384, 50), (16384, 300), (32768, 50), (32768, 300)] if not SMOKE else [(512, 5), (512, 20)]
    kernel = native_kernel() if gpu else None
    rows = []
    for total, n in cases:
        g = torch.Generator().manual_seed(total + n)
        cuts = sorted(torch.randperm(total - 1, generator=g)[:n - 1].add(1).tolist())
        bounds = [0, *cuts, total]
        lengths = [b - a for a, b in zip(bounds, bounds[1:])]
        cu = torch.tensor(bounds, dtype=torch.int32, device=device())
        q = torch.randn(total, heads, dim, device=device(), dtype=dtype, requires_grad=True)
        k = torch.randn(total, kv, dim, device=device(), dtype=dtype, requires_grad=True)
        v = torch.randn(total, kv, dim, device=device(), dtype=dtype, requires_grad=True)
        grad_out = torch.randn(total, heads, dim, device=device(), dtype=dtype)

        def native():
            return varlen_call(kernel[0], kernel[1], q, k, v, cu, max(lengths), dim ** -0.5)

        def per_sample():
            outs = []
            for qs, ks, vs in zip(q.split(lengths), k.split(lengths), v.split(lengths)):
                outs.append(torch.nn.functional.scaled_dot_product_attention(
                    qs.transpose(0, 1)[None], ks.transpose(0, 1)[None], vs.transpose(0, 1)[None], is_causal=True,
                    enable_gqa=True)[0].transpose(0, 1))
            return torch.cat(outs)

        def dense():
            seg = torch.repeat_interleave(torch.arange(n, device=device()), torch.tensor(lengths, device=device()))
            mask = (seg[:, None] == seg[None, :]) & torch.ones(total, total, dtype=torch.bool, device=device()).tril()
            return torch.nn.functional.scaled_dot_product_attention(
                q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], attn_mask=mask,
                enable_gqa=True)[0].transpose(0, 1)

        arms = {"varlen_attn": native} if kernel else {}
        arms.update({"sdpa_per_sample": per_sample, "sdpa_dense_mask": dense})
        row = {"tokens": total, "samples": n}
        outs = {}
        for name, fn in arms.items():
            for _ in range(2):  # warm-up: kernel selection, allocator
                q.grad = k.grad = v.grad = None
                fn().backward(grad_out)
            reps = 3 if SMOKE else 10
            if gpu:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            t0 = time.perf_counter()
            for _ in range(reps):
                q.grad = k.grad = v.grad = None
                out = fn()
                out.backward(grad_out)
            if gpu:
                end.record()
                torch.cuda.synchronize()
                ms = start.elapsed_time(end) / reps
            else:
                ms = (time.perf_counter() - t0) * 1000 / reps
            row[f"{name}_ms"] = round(ms, 3)
            outs[name] = out.detach().float()
        row["max_diff_vs_per_sample"] = {n_: float((o - outs["sdpa_per_sample"]).abs().max()) for n_, o in outs.items()}
        if kernel:
            row["speedup_vs_per_sample"] = round(row["sdpa_per_sample_ms"] / row["varlen_attn_ms"], 2)
            row["speedup_vs_dense_mask"] = round(row["sdpa_dense_mask_ms"] / row["varlen_attn_ms"], 2)
        rows.append(row)
        del q, k, v, grad_out, outs
    return {"timer": "cuda events" if gpu else "perf_counter (cpu smoke)", "fwd_bwd": rows,
            "heads": [heads, kv, dim], "dtype": str(dtype).replace("torch.", "")}


def part_sprout(work: Path, size: str) -> dict:
    import torch

    from pipeline.train.loop import TrainConfig, train
    from pipeline.train.packing import plan_epoch
    from pipeline.train.recipe import Phase
    from pipeline.train.shared_data import _unpack
    from transformers import AutoConfig
    folder = student(work, size)
    out = work / f"run-sprout-{size}"
    steps = WARMUP + TIMED
    # one micro-batch per optimizer step (effective batch 1 sample: accumulation 1)
    phase = Phase("knowledge", "phase1.jsonl", epochs=1, lr=3e-4, effective_batch=1, warmup_ratio=0.05)
    budget = {"100m": 16384, "smoke": 2048}.get(size)  # 100M: the HF arms' batch; 1B: the recipe's (None)
    config = TrainConfig(student=str(folder), out=str(out), phases=(phase,), data_dir=str(work / "data"),
                         max_len=4096, tokens_per_micro_batch=budget, zero_stage=2,
                         precision="bf16" if torch.cuda.is_available() else "fp32", checkpoint_every=10 ** 9,
                         max_steps=steps, log_every=WARMUP)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train(config, progress=False)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    info = json.loads((out / "knowledge" / "sprout_phase.json").read_text())
    assert len(rows) >= steps, f"{len(rows)} steps logged, {steps} wanted"
    # the steps' exact sample lengths: the loop's own plan (same lengths, budget, seed), one bin a step
    blob = next((out / "tokens").glob("phase1-*.npz")).read_bytes()
    samples, _ = _unpack(blob)
    plan = plan_epoch([len(s) for s in samples], info["tokens_per_micro_batch"], 1, 0, config.seed)[0]
    timed = rows[WARMUP:steps]
    hf_config = AutoConfig.from_pretrained(folder)
    flops = 0.0
    for i, r in enumerate(timed, start=WARMUP):
        b = plan[i]
        lengths = [len(samples[j]) for j in b.samples]
        assert sum(lengths) == r["tokens"], (i, sum(lengths), r["tokens"])
        flops += step_flops(hf_config, lengths, r["loss_tokens"])
    seconds = sum(r["seconds"] for r in timed)
    return {"arm": "sprout", "size": size, "steps_timed": len(timed), "warmup_steps": WARMUP,
            "tokens_per_micro_batch": info["tokens_per_micro_batch"],
            "gradient_checkpointing": info["gradient_checkpointing"], "precision": info["precision"],
            "attention": info["attention"], "seconds": seconds,
            "tokens_per_s": sum(r["tokens"] for r in timed) / seconds,
            "loss_tokens_per_s": sum(r["loss_tokens"] for r in timed) / seconds,
            "tflops": flops / seconds / 1e12, "mfu": flops / seconds / PEAK,
            "peak_memory_gib": peak_memory_gib(), "loss_first": rows[0]["loss"], "loss_last": rows[steps - 1]["loss"]}


def part_hf(work: Path, attention: str) -> dict:
    import torch
    from transformers import (AutoModelForCausalLM, DataCollatorWithFlattening, Trainer, TrainerCallback,
                              TrainingArguments)

    from pipeline.train.attention import register
    gpu = torch.cuda.is_available()
    size = sizes()[0]
    tok, samples = load_samples(work)
    mean = sum(len(s) for s in samples) / len(samples)
    batch = max(1, round((16384 if not SMOKE else 2048) / mean))  # ~ Sprout's 100M micro-batch
    steps = WARMUP + TIMED
    impl = register() if attention == "varlen" else "sdpa"
    model = AutoModelForCausalLM.from_pretrained(student(work, size), dtype=torch.float32, attn_implementation=impl)
    rows = [{"input_ids": s.input_ids, "labels": s.labels} for s in samples]
    flat = DataCollatorWithFlattening(return_flash_attn_kwargs=attention == "varlen")
    seen: list[tuple[list[int], int]] = []
    from transformers import AutoConfig
    hf_config = AutoConfig.from_pretrained(student(work, size))

    def collate(features):
        seen.append(([len(f["input_ids"]) for f in features], sum(sum(1 for x in f["labels"][1:] if x != -100)
                                                                 for f in features)))
        return flat(features)
    marks = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step in (WARMUP, steps):
                sync()
                marks[state.global_step] = time.perf_counter()
    args = TrainingArguments(output_dir=str(work / f"hf-{attention}"), per_device_train_batch_size=batch,
                             max_steps=steps, learning_rate=3e-4, lr_scheduler_type="cosine", warmup_steps=1,
                             bf16=gpu, use_cpu=not gpu, adam_beta2=0.95, max_grad_norm=1.0, save_strategy="no",
                             report_to=[], logging_steps=10 ** 9, disable_tqdm=True, dataloader_num_workers=0,
                             seed=42)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Clock()]).train()
    seconds = marks[steps] - marks[WARMUP]
    timed = seen[WARMUP:steps]
    tokens = sum(sum(lengths) for lengths, _ in timed)
    loss_tokens = sum(n for _, n in timed)
    # HF computes the output layer at every position
    flops = sum(step_flops(hf_config, lengths, sum(lengths)) for lengths, _ in timed)
    return {"arm": f"hf-{attention}", "attention": impl, "batch": batch, "steps_timed": len(timed),
            "warmup_steps": WARMUP, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "loss_tokens_per_s": loss_tokens / seconds, "tflops": flops / seconds / 1e12, "mfu": flops / seconds / PEAK,
            "peak_memory_gib": peak_memory_gib(), "optim": args.optim if isinstance(args.optim, str) else str(args.optim)}


def part_zero3(work: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    from pipeline.train.loop import TrainConfig, train
    from pipeline.train.packing import Bin, collate_micro, micro_loss
    from pipeline.train.recipe import Phase
    gpu = torch.cuda.is_available()
    size = sizes()[0]
    folder = student(work, size)
    layers = SHAPES[size][2]
    phases = (Phase("knowledge", "phase1.jsonl", 1, 3e-4, 1, 0.1), Phase("skills", "phase2.jsonl", 1, 1e-4, 1, 0.1))
    mem = lambda: torch.cuda.memory_allocated() if gpu else None  # noqa: E731
    sync()
    result = {"train_layers": layers // 2, "baseline_bytes": mem(), "arms": {}}
    tok, samples = load_samples(work)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    held = samples[-16:]
    base = load_file(str(folder / "model.safetensors"))
    for stage in (3, 2):
        out = work / f"run-zero{stage}"
        after: list = []

        def report(tag: str) -> None:
            sync()
            after.append((tag, mem()))
        config = TrainConfig(student=str(folder), out=str(out), phases=phases, data_dir=str(work / "data"),
                             max_len=4096, tokens_per_micro_batch=8192 if not SMOKE else 1024, zero_stage=stage,
                             precision="bf16" if gpu or SMOKE else "fp32", train_layers=layers // 2,
                             checkpoint_every=10 ** 9, max_steps=3 if SMOKE else 8, log_every=4)
        train(config, progress=False, on_checkpoint=report)
        sync()
        # the last report of each phase comes after its engine was released (train() calls it then)
        phase_end = {t.split("-")[0]: m for t, m in after}
        exported = out / "skills"
        weights = load_file(str(exported / "model.safetensors"))
        frozen = [k for k in weights if any(f".layers.{i}." in k for i in range(layers // 2))
                  or "embed_tokens" in k]
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).to(device())
        with torch.no_grad():
            total, count = 0.0, 0
            for i in range(len(held)):
                b = collate_micro(held, Bin([i], 0), pad, device=device())
                total += float(micro_loss(model, b))
                count += b.targets
        del model
        sync()
        result["arms"][f"zero{stage}"] = {
            "reload_loss": total / count, "dtype": str(weights[frozen[0]].dtype),
            "frozen_bit_for_bit": all(torch.equal(weights[k], base[k]) for k in frozen), "frozen_tensors": len(frozen),
            "bytes_after_knowledge": phase_end.get("knowledge"), "bytes_after_skills": phase_end.get("skills")}
    a, b = result["arms"]["zero3"], result["arms"]["zero2"]
    result["reload_loss_rel_diff"] = abs(a["reload_loss"] - b["reload_loss"]) / b["reload_loss"]
    base_bytes = result["baseline_bytes"]
    if gpu:
        worst = max(x[f"bytes_after_{p}"] - base_bytes for x in result["arms"].values() for p in ("knowledge", "skills"))
        result["max_bytes_over_baseline_after_a_phase"] = worst
        memory_ok = worst < 64 * 2 ** 20  # a few allocator blocks, not a model
    else:
        memory_ok = None
    result["ok"] = bool(result["reload_loss_rel_diff"] < 2e-2 and a["frozen_bit_for_bit"] and b["frozen_bit_for_bit"]
                        and memory_ok is not False)
    return result


def run_part(name: str, work: Path) -> dict:
    if name == "probe":
        return part_probe(work)
    if name == "prepare":
        return part_prepare(work)
    if name == "correctness":
        return part_correctness(work)
    if name == "kernel":
        return part_kernel(work)
    if name.startswith("sprout-"):
        return part_sprout(work, e2e_size(name))
    if name.startswith("hf-"):
        return part_hf(work, name.split("-", 1)[1])
    if name == "zero3":
        return part_zero3(work)
    raise ValueError(name)


# ---------------------------------------------------------------- orchestration

def summarise(results: dict) -> dict:
    s, h = results.get("sprout-100m" if not SMOKE else "sprout-smoke", {}), results.get("hf-sdpa", {})
    out = {}
    if "loss_tokens_per_s" in s and "loss_tokens_per_s" in h:
        out["ratio"] = round(s["loss_tokens_per_s"] / h["loss_tokens_per_s"], 3)
    big = results.get("sprout-1b", {})
    if "mfu" in big:
        out["mfu_1b"] = round(big["mfu"], 4)
    out["goals"] = {"mfu_1b>=0.40": big.get("mfu", 0) >= 0.40 if "mfu" in big else None,
                    "sprout/hf_sdpa>=1.2": out["ratio"] >= 1.2 if "ratio" in out else None}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--only", help="comma-separated parts to run (default: all)")
    args = ap.parse_args()
    if args.part:
        os.environ["GPU_CHECK_WORK"] = args.work
        try:
            r = run_part(args.part, Path(args.work))
        except SystemExit as e:
            print("RESULT " + json.dumps({"error": str(e.code)}), flush=True)
            return 2
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            print("RESULT " + json.dumps({"error": f"{type(e).__name__}: {e}"[:2000]}), flush=True)
            return 1
        print("RESULT " + json.dumps(r), flush=True)
        return 0

    import tempfile
    out_dir = Path(os.environ.get("OUT") or ROOT / "bench" / "out")
    out_dir.mkdir(parents=True, exist_ok=True)
    out_file = out_dir / "gpu_train.json"
    work = Path(tempfile.mkdtemp(prefix="sprout-gpu-check-"))
    parts = PARTS if not SMOKE else [(n if not n.startswith("sprout-") else "sprout-smoke", t) for n, t in PARTS
                                     if n != "sprout-1b"]
    if args.only:
        keep = set(args.only.split(",")) | {"probe", "prepare"}
        parts = [p for p in parts if p[0] in keep]
    started = time.perf_counter()
    results: dict = {}
    record = {"bench": "gpu_train", "smoke": SMOKE, "peak_tflops": PEAK / 1e12, "parts": results}
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    for name, limit in parts:
        left = TOTAL_S - (time.perf_counter() - started)
        if left < 15:
            results[name] = {"skipped": "out of time"}
            continue
        log(f"{name} (up to {min(limit, left):.0f} s)")
        t0 = time.perf_counter()
        try:
            p = subprocess.run([sys.executable, __file__, "--part", name, "--work", str(work)], env=env,
                               capture_output=True, text=True, timeout=min(limit, left))
            lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
            results[name] = json.loads(lines[-1][7:]) if lines else {"error": f"exit {p.returncode}: "
                                                                               f"{p.stderr[-1500:]}"}
            if p.returncode and "error" in results[name]:
                results[name]["stderr_tail"] = p.stderr[-1500:]
        except subprocess.TimeoutExpired as e:
            results[name] = {"error": f"timed out after {min(limit, left):.0f} s",
                             "stderr_tail": (e.stderr or b"")[-1500:].decode("utf-8", "replace")
                             if isinstance(e.stderr, bytes) else str(e.stderr or "")[-1500:]}
        results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
        log(f"{name}: {json.dumps(results[name])[:400]}")
        record.update(summarise(results), total_s=round(time.perf_counter() - started, 1))
        out_file.write_text(json.dumps(record) + "\n")  # cumulative: a run cut short keeps what it measured
        if name in ("probe", "prepare") and "error" in results[name]:
            log(f"{name} failed: stopping here")
            break
    record.update(summarise(results), total_s=round(time.perf_counter() - started, 1))
    out_file.write_text(json.dumps(record) + "\n")
    print_table(record)
    print(json.dumps(record))
    failed = [n for n, r in results.items() if "error" in r or r.get("ok") is False]
    return 1 if failed else 0


def print_table(record: dict) -> None:
    parts = record["parts"]
    probe = parts.get("probe", {})
    print(f"\ndevice: {probe.get('device')}  torch {probe.get('torch')}  deepspeed {probe.get('deepspeed')}  "
          f"transformers {probe.get('transformers')}  total {record.get('total_s')} s")
    print(f"{'arm':<14}{'tokens/s':>12}{'loss tok/s':>12}{'MFU':>8}{'peak GiB':>10}{'steps':>7}")
    for name, r in parts.items():
        if "loss_tokens_per_s" in r:
            mem = r.get("peak_memory_gib")
            print(f"{name:<14}{r['tokens_per_s']:>12,.0f}{r['loss_tokens_per_s']:>12,.0f}{r['mfu']:>8.1%}"
                  f"{(f'{mem:.1f}' if mem is not None else '-'):>10}{r['steps_timed']:>7}")
    for row in parts.get("kernel", {}).get("fwd_bwd", []):
        print("kernel " + json.dumps(row))
    for name in ("correctness", "zero3"):
        if name in parts:
            print(f"{name}: " + json.dumps(parts[name])[:600])
    errors = {n: r["error"][:200] for n, r in parts.items() if "error" in r}
    if errors:
        print("errors: " + json.dumps(errors))
    print(f"ratio (loss tokens/s, sprout / HF flattening + sdpa): {record.get('ratio')}   goals: {record.get('goals')}")


if __name__ == "__main__":
    sys.exit(main())
