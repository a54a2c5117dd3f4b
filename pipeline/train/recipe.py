"""The training recipe, in one place: which phases, how long, how fast, which weights.

Three named recipes, chosen by ``--recipe`` (default ``auto``) and named in every report:

- ``lab``: InstructLab's published phases, for real students at scale on GPUs. Knowledge: 7
  epochs, LR 2e-5, effective batch 128; skills with knowledge replay: 10 epochs, LR 6e-6,
  effective batch 3840, longer warm-up; AdamW betas (0.9, 0.95), cosine decay after linear
  warm-up, gradient clipping 1.0. Every weight trained.
- ``cpu``: a pretrained student on a few CPU cores (SmolLM2-135M in ``make demo``). Full
  fine-tuning runs ~60 tokens/s on 2 cores; this recipe trains the top ``CPU_TRAIN_LAYERS``
  layers (half of SmolLM2's 30: ~190 tokens/s here in fp32; in bf16 with fp32 masters where the
  CPU has AMX, ~1.5x that at the same loss and facts learnt) at a learning rate high enough to store new
  facts in 2-4 + 1 epochs (3e-4, then 5e-5 so that skills do not wash the facts out): minutes, not
  hours. 3e-4 over 2e-4 and 4e-4, measured on Brenvik Isle alone after phase 1 (its 15 held-out
  items + 28 other questions on its facts, key facts right / wrong of 43): 2e-4 23 / 13, 3e-4
  26 / 6; with the offline teacher's number questions also tried: 2e-4 21 / 9, 3e-4 21 / 8, 4e-4
  19 / 10. Knowledge epochs follow the data size (``cpu_knowledge_epochs``: about 1,200 samples seen):
  a fact is learnt after roughly 20 presentations (answers that state it x epochs), and more passes
  do not help: in bf16 on Brenvik Isle alone 4, 6 and 8 epochs gave 10, 9 and 10 of 15 held-out
  facts (2, 1, 2 wrong); on the whole sample taxonomy with the skills phase, 6 epochs 7 of 15 (3
  wrong) against 4 epochs' 6 (6 wrong), within the spread between runs. Measured on
  Brenvik Isle's held-out key facts after phase 1 alone (2 loaded cores): the old offline data
  (61 Brenvik samples) at 4 epochs 4 of 15 (8 wrong, 19 min); denser data (96) at 2 epochs 1 of
  15 (8 wrong, 16 min: too few presentations, and its short answers taught it to stop after one
  fact). Top 6 layers at 3e-4 learnt less than top 15 at 2e-4 (word overlap 0.26 against 0.40,
  untrained 0.13). ``--train-layers 0`` trains every weight.
- ``tiny``: the randomly initialised smoke student only (never chosen by size): LR x50 and 50
  epochs per phase, which a model that starts from nothing needs to learn anything.

``auto`` is ``tiny`` for a random-init student, ``lab`` on a GPU, ``cpu`` otherwise. Every
recipe keeps LAB's shape and shrinks the batch: it never exceeds an eighth of the dataset, so a
phase has at least eight optimizer steps an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Phase:
    name: str
    data: str
    """Messages JSONL for this phase."""
    epochs: int
    lr: float
    effective_batch: int
    """Samples per optimizer step, across all workers (reached by gradient accumulation)."""
    warmup_ratio: float
    """Share of the phase's optimizer steps spent warming up linearly."""
    min_lr_ratio: float = 0.1
    """The cosine decays to this share of ``lr``."""


LAB_PHASE1 = Phase("knowledge", "phase1.jsonl", epochs=7, lr=2e-5, effective_batch=128, warmup_ratio=0.05)
LAB_PHASE2 = Phase("skills", "phase2.jsonl", epochs=10, lr=6e-6, effective_batch=3840, warmup_ratio=0.15)
BETAS = (0.9, 0.95)
GRAD_CLIP = 1.0


CPU_PHASE1 = Phase("knowledge", "phase1.jsonl", epochs=4, lr=3e-4, effective_batch=16, warmup_ratio=0.05)
CPU_PHASE2 = Phase("skills", "phase2.jsonl", epochs=1, lr=5e-5, effective_batch=16, warmup_ratio=0.1)
CPU_TRAIN_LAYERS = 15
CPU_KNOWLEDGE_PASSES = 1200
"""Knowledge epochs by data size on a CPU: about this many samples seen in phase 1, between 2
and ``CPU_PHASE1.epochs`` epochs. More varied samples of each fact teach it better than more
passes over fewer (measured on Brenvik Isle, see the module doc), at the same cost."""


def cpu_knowledge_epochs(samples: int) -> int:
    return max(2, min(CPU_PHASE1.epochs, round(CPU_KNOWLEDGE_PASSES / max(1, samples))))
RECIPES = ("auto", "lab", "cpu", "tiny")


@dataclass(frozen=True)
class Plan:
    """A recipe resolved for one student on one machine."""
    recipe: str
    phases: tuple
    train_layers: int
    """0: every weight; N: the top N layers and the final norm."""
    precision: str = "auto"
    """'auto' (the loop's choice: bf16 on a GPU that has it natively, else fp32), 'bf16' or 'fp32'."""

    def describe(self, layers_total: int | None = None) -> str:
        what = "every weight" if not self.train_layers else \
            f"top {self.train_layers}{f' of {layers_total}' if layers_total else ''} layers"
        if self.precision != "auto":
            what += f", {self.precision}"
        return f"{self.recipe} ({what}; " + ", ".join(
            f"{p.name}: {p.epochs} epoch{'s' if p.epochs != 1 else ''}, lr {p.lr:g}, batch {p.effective_batch}"
            for p in self.phases) + ")"


def choose(recipe: str, pretrained: bool, gpu: bool) -> str:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    if recipe != "auto":
        return recipe
    return "tiny" if not pretrained else ("lab" if gpu else "cpu")


def plan(recipe: str, sizes: dict[str, int], pretrained: bool, gpu: bool = False, epochs: int | None = None,
         train_layers: int | None = None, lr: float | None = None, precision: str = "auto",
         cpu_bf16: bool | None = None) -> Plan:
    """``sizes``: samples per phase name present ('knowledge', 'skills'), in order. ``precision``:
    'bf16' or 'fp32' as asked, or 'auto': the cpu recipe trains in bf16 (fp32 masters and gradient
    sums, as on a GPU) where the CPU has bf16 matrix units (``cpu_bf16``; None: ask
    ``loop.cpu_bf16`` on this machine, the driver's, which every worker then follows), in fp32
    elsewhere; the other recipes leave it to the loop."""
    name = choose(recipe, pretrained, gpu)
    base = {"lab": (LAB_PHASE1, LAB_PHASE2), "cpu": (CPU_PHASE1, CPU_PHASE2),
            "tiny": (LAB_PHASE1, LAB_PHASE2)}[name]
    phases = []
    for p in base:
        if p.name not in sizes:
            continue
        batch = max(1, min(p.effective_batch, sizes[p.name] // 8 or 1))
        rate = p.lr * (50 if name == "tiny" else 1)
        n_epochs = max(p.epochs, 50) if name == "tiny" else p.epochs
        if name == "cpu" and p.name == "knowledge":
            n_epochs = cpu_knowledge_epochs(sizes[p.name])
        phases.append(replace(p, effective_batch=batch, lr=lr if lr is not None else rate, epochs=epochs or n_epochs))
    layers = train_layers if train_layers is not None else (CPU_TRAIN_LAYERS if name == "cpu" else 0)
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}: choose auto, bf16 or fp32")
    if precision == "auto" and name == "cpu":
        if cpu_bf16 is None:
            from .loop import cpu_bf16 as probe
            cpu_bf16 = probe()
        precision = "bf16" if cpu_bf16 else "fp32"
    return Plan(name, tuple(phases), layers, precision)


def estimate_parameters(config) -> int:
    """Parameters of a decoder-only transformer from its HF config (12·d²·layers + embeddings):
    enough to tell a tiny student from a real model without loading weights."""
    return 12 * config.hidden_size ** 2 * config.num_hidden_layers + config.vocab_size * config.hidden_size


def scaled(phase: Phase, samples: int, pretrained: bool = True, epochs: int | None = None) -> Phase:
    """One LAB phase scaled to the data (``tiny`` rates for a random-init student)."""
    p = plan("lab" if pretrained else "tiny", {phase.name: samples}, pretrained, epochs=epochs).phases[0]
    return replace(p, data=phase.data)


CPU_TOKENS_PER_MICRO_BATCH = 1024
"""On a CPU a bigger micro-batch barely raises throughput and makes each step (progress,
checkpoints) slower: 1,024 tokens."""
CHECKPOINTING_BELOW = 8192
"""Gradient checkpointing goes on when a GPU cannot hold this many tokens per micro-batch
(or twice the longest sample) without it: a 7B model on an 80 GB GPU, not a 1B one."""
MAX_TOKENS_PER_MICRO_BATCH = 65536


@dataclass(frozen=True)
class TokenBudget:
    """How much one micro-batch holds on one worker, and whether layers recompute activations."""
    tokens: int
    gradient_checkpointing: bool
    why: str


def count_parameters(config) -> tuple[int, int]:
    """(parameters, of which embeddings and output layer) of a Llama-style HF config."""
    h, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    kv = (getattr(config, "num_key_value_heads", None) or heads) * head_dim
    inter = getattr(config, "intermediate_size", None) or 4 * h
    per_layer = 2 * h * heads * head_dim + 2 * h * kv + 3 * h * inter + 2 * h
    embed = vocab * h * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    return per_layer * layers + embed + h, embed


def token_budget(config, gpu_bytes: int | None, workers: int = 1, zero_stage: int = 2, max_len: int = 1024,
                 offload: bool = False, checkpointing: bool | None = None) -> TokenBudget:
    """Tokens per micro-batch from the GPU's memory (None: a CPU) and the model's size, bf16 with
    fp32 masters, Adam and fp32 gradient accumulation:

    - model states per GPU: bf16 weights (2 B/param, sharded under ZeRO-3) + bf16 gradients
      (2 B) + fp32 accumulated gradients (4 B, sharded from ZeRO-2) + fp32 master and Adam's two
      moments (12 B, sharded from ZeRO-1; on the CPU with offload);
    - activations per token: each layer keeps ~2 x (8 hidden + 5 intermediate) bytes (inputs
      of its matmuls, attention output, MLP intermediates; flash-style attention keeps no
      L x L matrix), or only its 2 x hidden-byte input with gradient checkpointing (plus one
      layer recomputed); logits in bf16 and fp32 with their gradients: 12 B x vocabulary;
    - 10% and 2 GB kept back (CUDA context, allocator fragmentation, communication buckets).

    Gradient checkpointing goes on (unless ``checkpointing`` says) when fewer than
    CHECKPOINTING_BELOW tokens (or 2 x max_len) fit without it. Never below ``max_len``: every
    sample must fit in a micro-batch."""
    if gpu_bytes is None:
        return TokenBudget(max(max_len, CPU_TOKENS_PER_MICRO_BATCH), bool(checkpointing), "CPU")
    params, _ = count_parameters(config)
    n = max(1, workers)
    shard = lambda stage: n if zero_stage >= stage else 1  # noqa: E731
    states = params * (2 / shard(3) + 2 + 4 / shard(2) + (0 if offload else 12 / shard(1)))
    h, layers = config.hidden_size, config.num_hidden_layers
    inter = getattr(config, "intermediate_size", None) or 4 * h
    layer_bytes = 2 * (8 * h + 5 * inter)
    logits = 12 * config.vocab_size
    free = gpu_bytes * 0.9 - 2 * 2 ** 30 - states

    def fit(per_token: float) -> int:
        return int(max(0.0, free) // per_token) // 256 * 256
    want = max(CHECKPOINTING_BELOW, 2 * max_len)
    plain = fit(layers * layer_bytes + logits)
    if checkpointing is None:
        checkpointing = plain < want
    tokens = fit(layers * 2 * h + layer_bytes + logits) if checkpointing else plain
    tokens = min(tokens, MAX_TOKENS_PER_MICRO_BATCH)
    why = (f"{params / 1e9:.2f}B parameters, {gpu_bytes / 2 ** 30:.0f} GiB per GPU, ZeRO-{zero_stage} over {n}: "
           f"{states / 2 ** 30:.1f} GiB of model states, {tokens:,} tokens per micro-batch"
           f"{' with gradient checkpointing' if checkpointing else ''}")
    if tokens < max_len:
        why += f" (less than one {max_len}-token sample: raised to it; it may not fit, add GPUs or ZeRO-3/offload)"
        tokens = max_len
    return TokenBudget(tokens, checkpointing, why)
