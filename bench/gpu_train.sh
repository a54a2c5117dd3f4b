#!/usr/bin/env bash
# Prepared GPU check (not a CI test): train a ~100M-parameter Llama-style model from a config with
# Sprout's packed DeepSpeed loop (bf16, ZeRO-2) for a few hundred steps on one GPU, then print
# tokens/s and MFU. Run it where a GPU is lent:  bash bench/gpu_train.sh [STEPS] [PEAK_TFLOPS]
# PEAK_TFLOPS is the GPU's dense bf16 peak (H100/H200 SXM: 989).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-300}"
PEAK="${2:-989}"
python - "$STEPS" "$PEAK" <<'PY'
import json, os, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, ".")
steps, peak = int(sys.argv[1]), float(sys.argv[2])
from pipeline.train.student import StudentConfig, build_student, taxonomy_texts
from pipeline.train.loop import TrainConfig, train
from pipeline.train.recipe import Phase
tmp = Path(tempfile.mkdtemp())
cfg = StudentConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                    num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=4096)
student = build_student(taxonomy_texts(Path("taxonomy")) * 50, tmp / "student", cfg)
import random
rng = random.Random(0)
words = " ".join(taxonomy_texts(Path("taxonomy"))).split()
(tmp / "data").mkdir()
with open(tmp / "data/phase1.jsonl", "w") as f:
    for i in range(20000):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(10, 60)))
        a = " ".join(rng.choice(words) for _ in range(rng.randint(20, 400)))
        f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
phase = Phase("knowledge", "phase1.jsonl", epochs=1, lr=3e-4, effective_batch=64, warmup_ratio=0.05)
train(TrainConfig(student=str(student), out=str(tmp / "run"), phases=(phase,), data_dir=str(tmp / "data"),
                  max_len=4096, tokens_per_micro_batch=16384, zero_stage=2, precision="bf16",
                  checkpoint_every=10**9, max_steps=steps), progress=True)
rows = [json.loads(x) for x in (tmp / "run/metrics.jsonl").read_text().splitlines()][5:]  # skip warm-up
import torch
from transformers import AutoModelForCausalLM
n = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(student).parameters())
tps = sum(r["tokens"] for r in rows) / sum(r["seconds"] for r in rows)
mfu = 6 * n * tps / (peak * 1e12)
print(f"gpu: {torch.cuda.get_device_name(0)}  params: {n/1e6:.1f}M  steps: {len(rows)}  "
      f"tokens/s: {tps:,.0f}  MFU: {mfu:.1%}  final loss: {rows[-1]['loss']:.3f}")
print(json.dumps({"bench": "gpu_train", "params": n, "tokens_per_s": tps, "mfu": mfu}))
PY
