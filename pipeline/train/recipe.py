"""The training recipe, in one place: LAB's published phases, scaled to the model and data.

LAB (InstructLab) tunes in two phases: knowledge (7 epochs, LR 2e-5, effective batch 128), then
skills with knowledge replay (10 epochs, LR 6e-6, effective batch 3840, longer warm-up);
AdamW with betas (0.9, 0.95), cosine decay after a linear warm-up, gradient clipping at 1.0.
Those numbers are for 7B models and tens of thousands of samples. ``scaled`` keeps their shape
and shrinks what must shrink: the effective batch never exceeds an eighth of the dataset (so a
phase has at least eight optimizer steps an epoch), and a model under 100M parameters — the
embedded tiny student, which starts from random weights rather than a model that already speaks —
gets a learning rate 50x higher and 50 epochs per phase, which such models need to learn anything
(about two minutes for the sample taxonomy on 2 CPU cores).
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


def estimate_parameters(config) -> int:
    """Parameters of a decoder-only transformer from its HF config (12·d²·layers + embeddings):
    enough to tell a tiny student from a real model without loading weights."""
    return 12 * config.hidden_size ** 2 * config.num_hidden_layers + config.vocab_size * config.hidden_size


def scaled(phase: Phase, samples: int, parameters: int, epochs: int | None = None) -> Phase:
    tiny = parameters < 100_000_000
    batch = max(1, min(phase.effective_batch, samples // 8 or 1))
    lr = phase.lr * (50 if tiny else 1)
    default_epochs = max(phase.epochs, 50) if tiny else phase.epochs
    return replace(phase, effective_batch=batch, lr=lr, epochs=epochs or default_epochs)
