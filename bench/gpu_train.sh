#!/usr/bin/env bash
# Prepared GPU check (not a CI test; CI has no GPU): a ~100M-parameter Llama-style model built
# from a config, trained with Sprout's packed DeepSpeed loop (bf16, ZeRO-2, padding-free attention:
# flash_attention_2 when flash-attn is installed, else Sprout's varlen sdpa) and with the best
# Hugging Face arm (Trainer + DataCollatorWithFlattening, same attention, bf16, same effective
# batch and steps), on the same synthetic data. Prints loss tokens/s, tokens/s and MFU, both as
# 6*N*tokens/s and with the attention FLOPs of the packed samples counted, over the GPU's dense
# bf16 peak. Meant to finish in under 8 minutes on one H200:
#
#   bash bench/gpu_train.sh [STEPS] [PEAK_TFLOPS]       # H100/H200 SXM dense bf16 peak: 989
#   SMOKE=1 bash bench/gpu_train.sh 3                   # tiny model, runs on a CPU: checks the script
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-200}"
PEAK="${2:-989}"
PY="${PYTHON:-python}"
[ -x .venv/bin/python ] && PY="${PYTHON:-.venv/bin/python}"
"$PY" - "$STEPS" "$PEAK" <<'PY'
import json, math, os, random, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, ".")
steps, peak = int(sys.argv[1]), float(sys.argv[2])
smoke = os.environ.get("SMOKE") == "1"
import torch
from pipeline.train.student import StudentConfig, build_student, taxonomy_texts
from pipeline.train.loop import TrainConfig, train
from pipeline.train.recipe import Phase
gpu = torch.cuda.is_available()
if not gpu and not smoke:
    sys.exit("no CUDA device: run this where a GPU is lent (SMOKE=1 checks the script on a CPU)")
tmp = Path(tempfile.mkdtemp())
if smoke:
    cfg = StudentConfig(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096)
    n_samples, batch, budget, max_answer = 64, 8, 2048, 200
else:
    cfg = StudentConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                        num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=4096)
    n_samples, batch, budget, max_answer = 64 * (steps + 10), 64, 32768, 800
student = build_student(taxonomy_texts(Path("taxonomy")) * (1 if smoke else 50), tmp / "student", cfg)
rng = random.Random(0)
words = " ".join(taxonomy_texts(Path("taxonomy"))).split()
(tmp / "data").mkdir()
with open(tmp / "data/phase1.jsonl", "w") as f:
    for i in range(n_samples):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(10, 60)))
        a = " ".join(rng.choice(words) for _ in range(rng.randint(20, max_answer)))
        f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")

from transformers import AutoModelForCausalLM, AutoTokenizer
from pipeline.train.data import read_messages, tokenize_dataset
tok = AutoTokenizer.from_pretrained(student)
samples, _ = tokenize_dataset(tok, read_messages(tmp / "data/phase1.jsonl"), 4096)
n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(student).parameters())
layers, hidden = cfg.num_hidden_layers, cfg.hidden_size
# causal attention, fwd+bwd: 12 * layers * hidden FLOPs per (query token, attended key) pair
attn_per_sample = {id(s): 12 * layers * hidden * len(s) * (len(s) + 1) / 2 for s in samples}
mean_attn_per_token = sum(attn_per_sample.values()) / sum(len(s) for s in samples)
precision = "bf16" if gpu else "fp32"

def mfu(tokens_per_s: float) -> tuple[float, float]:
    return 6 * n_params * tokens_per_s / (peak * 1e12), (6 * n_params + mean_attn_per_token) * tokens_per_s / (peak * 1e12)

# Sprout: packed, padding-free, DeepSpeed ZeRO-2
phase = Phase("knowledge", "phase1.jsonl", epochs=1, lr=3e-4, effective_batch=batch, warmup_ratio=0.05)
train(TrainConfig(student=str(student), out=str(tmp / "run"), phases=(phase,), data_dir=str(tmp / "data"),
                  max_len=4096, tokens_per_micro_batch=budget, zero_stage=2, precision=precision,
                  checkpoint_every=10**9, max_steps=steps), progress=True)
rows = [json.loads(x) for x in (tmp / "run/metrics.jsonl").read_text().splitlines()]
rows = rows[min(5, len(rows) - 1):]  # skip the warm-up steps (kernel selection, allocator)
ours = {"tokens_per_s": sum(r["tokens"] for r in rows) / sum(r["seconds"] for r in rows),
        "loss_tokens_per_s": sum(r["loss_tokens"] for r in rows) / sum(r["seconds"] for r in rows),
        "steps": len(rows), "final_loss": rows[-1]["loss"]}
info = json.loads((tmp / "run/knowledge/sprout_phase.json").read_text())

# The best HF arm: Trainer, padding-free flattening, the same attention kernel, bf16
from transformers import DataCollatorWithFlattening, Trainer, TrainerCallback, TrainingArguments
from pipeline.train.attention import register
attention = info["attention"] if info["attention"] != "sprout_varlen" else register()
model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.bfloat16 if gpu else torch.float32,
                                             attn_implementation=attention)
rowsets = [{"input_ids": s.input_ids, "labels": s.labels} for s in samples]
count = {"tokens": 0, "loss_tokens": 0, "t": []}
flat = DataCollatorWithFlattening()
def collate(features):
    b = flat(features)
    count["tokens"] += int(b["input_ids"].numel())
    count["loss_tokens"] += int((b["labels"][:, 1:] != -100).sum())
    return b
class Clock(TrainerCallback):
    def on_step_end(self, *a, **k):
        if gpu:
            torch.cuda.synchronize()
        count["t"].append((time.perf_counter(), count["tokens"], count["loss_tokens"]))
args = TrainingArguments(output_dir=str(tmp / "hf"), per_device_train_batch_size=batch, max_steps=steps,
                         learning_rate=3e-4, lr_scheduler_type="cosine", warmup_steps=max(1, steps // 20), bf16=gpu,
                         use_cpu=not gpu, optim="adamw_torch", adam_beta2=0.95, max_grad_norm=1.0,
                         save_strategy="no", report_to=[], logging_steps=10**9, disable_tqdm=False,
                         dataloader_num_workers=0)
Trainer(model=model, args=args, train_dataset=rowsets, data_collator=collate, callbacks=[Clock()]).train()
t = count["t"]
skip = min(5, len(t) - 2)
(t0, k0, l0), (t1, k1, l1) = t[skip], t[-1]
hf = {"tokens_per_s": (k1 - k0) / (t1 - t0), "loss_tokens_per_s": (l1 - l0) / (t1 - t0), "steps": len(t) - skip - 1}
name = torch.cuda.get_device_name(0) if gpu else "cpu (smoke)"
print(f"\ndevice: {name}  params: {n_params / 1e6:.1f}M  attention: {info['attention']}  precision: {precision}")
print(f"{'arm':<34}{'tokens/s':>12}{'loss tok/s':>12}{'MFU 6N':>9}{'MFU +attn':>11}")
for arm, r in (("sprout (packed, ZeRO-2)", ours), ("HF Trainer + flattening", hf)):
    a, b = mfu(r["tokens_per_s"])
    print(f"{arm:<34}{r['tokens_per_s']:>12,.0f}{r['loss_tokens_per_s']:>12,.0f}{a:>9.1%}{b:>11.1%}")
ratio = ours["loss_tokens_per_s"] / hf["loss_tokens_per_s"]
print(f"ratio (loss tokens/s): {ratio:.2f}x   goal MFU >= 40%: {'met' if mfu(ours['tokens_per_s'])[1] >= 0.4 else 'MISSED'}")
print(json.dumps({"bench": "gpu_train", "device": name, "params": n_params, "ratio": round(ratio, 3),
                  "sprout": {**ours, "mfu_6n": mfu(ours["tokens_per_s"])[0], "mfu_with_attention": mfu(ours["tokens_per_s"])[1]},
                  "hf_flattening": {**hf, "mfu_6n": mfu(hf["tokens_per_s"])[0], "mfu_with_attention": mfu(hf["tokens_per_s"])[1]}}))
PY
