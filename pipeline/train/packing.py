"""Multipack-style bin packing: whole samples into micro-batches of at most ``max_tokens``,
balanced across ranks, with per-sample position ids so attention stays inside each sample."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .data import IGNORE, Sample


@dataclass
class Bin:
    samples: list[int]
    tokens: int


def pack(lengths: list[int], max_tokens: int) -> list[Bin]:
    """First-fit decreasing. A sample longer than ``max_tokens`` gets a bin of its own (the data
    step drops or truncates those first)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[Bin] = []
    for i in order:
        n = lengths[i]
        for b in bins:
            if b.tokens + n <= max_tokens:
                b.samples.append(i)
                b.tokens += n
                break
        else:
            bins.append(Bin([i], n))
    return bins


def plan_epoch(lengths: list[int], max_tokens: int, world: int, epoch: int, seed: int) -> list[list[Bin | None]]:
    """Micro-batches for each rank for one epoch: every rank gets the same number of steps
    (collectives must match); a rank short of data gets ``None`` (an empty, zero-loss step) —
    never an endless wait, whatever the dataset size (one sample and two workers included)."""
    bins = pack(lengths, max_tokens)
    rng = random.Random(seed * 1_000_003 + epoch)
    rng.shuffle(bins)
    # balance tokens: give each bin to the rank with the fewest tokens so far, in rounds
    per_rank: list[list[Bin]] = [[] for _ in range(world)]
    for start in range(0, len(bins), world):
        group = sorted(bins[start:start + world], key=lambda b: -b.tokens)
        loads = sorted(range(world), key=lambda r: sum(b.tokens for b in per_rank[r]))
        for b, r in zip(group, loads):
            per_rank[r].append(b)
    steps = max(len(x) for x in per_rank)
    return [[*x, *([None] * (steps - len(x)))] for x in per_rank]


def collate(samples: list[Sample], bin_: Bin | None, pad_id: int, min_len: int = 1, device=None):
    """One packed row: (input_ids, labels, position_ids) as 1 x L tensors on ``device``. Labels
    are already aligned to the next-token targets; the first token of each sample never learns
    from the sample before it."""
    import torch
    ids, labels, pos = [], [], []
    for i in (bin_.samples if bin_ else []):
        s = samples[i]
        ids += s.input_ids
        shifted = s.labels[1:] + [IGNORE]  # target for position t is token t+1 of the same sample
        labels += shifted
        pos += list(range(len(s)))
    if not ids:  # an empty step: one pad token, nothing to learn
        ids, labels, pos = [pad_id] * min_len, [IGNORE] * min_len, list(range(min_len))
    t = lambda x: torch.tensor([x], dtype=torch.long, device=device)  # noqa: E731
    return t(ids), t(labels), t(pos)


def block_causal_mask(position_ids, dtype):
    """A 4D additive mask (1, 1, L, L): causal within each packed sample, blocked across them."""
    import torch
    pos = position_ids[0]  # built where the ids are (the engine's device), not on the CPU
    seg = torch.cumsum((pos == 0).long(), 0)
    same = seg[:, None] == seg[None, :]
    causal = torch.ones(len(pos), len(pos), dtype=torch.bool, device=pos.device).tril()
    allowed = same & causal
    mask = torch.zeros(allowed.shape, dtype=dtype, device=pos.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def loss_sum(model, input_ids, labels, position_ids):
    """Sum of token cross-entropies over labelled positions, and their count."""
    import torch
    dtype = next(model.parameters()).dtype
    out = model(input_ids=input_ids, position_ids=position_ids,
                attention_mask=block_causal_mask(position_ids, dtype), use_cache=False)
    logits = out.logits.float()
    loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1),
                                             ignore_index=IGNORE, reduction="sum")
    return loss, int((labels != IGNORE).sum())
