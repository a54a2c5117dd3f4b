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


def loss_sum(model, input_ids, labels, position_ids, explicit_mask: bool = False):
    """Sum of token cross-entropies over labelled positions, and their count.

    Padding-free by default: the packed row carries only position ids that restart at each
    sample, and the model's attention keeps samples apart from them (transformers finds the
    sample boundaries: flash-attention runs varlen kernels over them, flex attention a block-sparse
    mask, sdpa/eager a block-causal mask built on the device). ``explicit_mask`` passes our own
    4D block-causal mask instead, for a model that ignores packed position ids (see
    ``packing_aware``)."""
    import torch
    mask = block_causal_mask(position_ids, next(model.parameters()).dtype) if explicit_mask else None
    out = model(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, use_cache=False)
    logits = out.logits.float()
    loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1),
                                             ignore_index=IGNORE, reduction="sum")
    return loss, int((labels != IGNORE).sum())


def packing_aware(model, device=None, vocab: int | None = None) -> bool:
    """Whether ``model`` keeps packed samples apart given position ids alone: the logits of a
    sample packed after another must equal its logits alone. Checked once per load, because a
    model whose attention ignores them would let every sample attend to the ones packed before
    it, silently. All ranks must call it (under ZeRO-3 the forward gathers parameters)."""
    import torch
    vocab = vocab or getattr(model.config, "vocab_size", 100)
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(3, vocab, (7,), generator=gen)
    b = torch.randint(3, vocab, (9,), generator=gen)
    ids = torch.cat([a, b])[None].to(device)
    pos = torch.cat([torch.arange(7), torch.arange(9)])[None].to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0, 7:].float()
            alone = model(input_ids=b[None].to(device), position_ids=torch.arange(9)[None].to(device),
                          use_cache=False).logits[0].float()
    finally:
        model.train(was_training)
    scale = float(alone.abs().max()) or 1.0
    low_precision = next(model.parameters()).dtype in (torch.float16, torch.bfloat16)
    return float((packed - alone).abs().max()) <= (3e-2 if low_precision else 1e-4) * max(1.0, scale)
