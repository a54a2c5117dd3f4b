"""Multipack-style bin packing: whole samples into micro-batches of at most ``max_tokens``,
balanced across ranks, with per-sample position ids so attention stays inside each sample."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from .data import IGNORE, Sample


@dataclass
class Bin:
    samples: list[int]
    tokens: int


def pack(lengths: list[int], max_tokens: int) -> list[Bin]:
    """First-fit decreasing: each sample, longest first, goes into the first bin it fits. A
    sample longer than ``max_tokens`` gets a bin of its own (the data step drops or truncates
    those first).

    O(n log n): a max-tree over the bins' free space finds the first bin with room in log n steps
    instead of scanning every bin (the scan is quadratic: minutes for a million samples). The
    result is the same bins in the same order as the scan. Cached: every epoch packs the same
    lengths (only the order of the bins changes)."""
    return [Bin(list(samples), tokens) for samples, tokens in _pack(tuple(lengths), max_tokens)]


@functools.lru_cache(maxsize=4)
def _pack(lengths: tuple, max_tokens: int) -> tuple:
    n = len(lengths)
    order = sorted(range(n), key=lambda i: -lengths[i])
    size = 1
    while size < max(1, n):
        size *= 2
    # leaves: free tokens of bin j (a bin not yet opened is empty: max_tokens); inner nodes: max
    free = [max_tokens] * (2 * size)
    opened = 0
    samples: list[list[int]] = []
    tokens: list[int] = []
    for i in order:
        need = lengths[i]
        if free[1] >= need:
            node = 1
            while node < size:  # the leftmost leaf with room
                node = 2 * node if free[2 * node] >= need else 2 * node + 1
            j = node - size
        else:  # fits nowhere, not even in an empty bin: a bin of its own
            j = opened
            node = j + size
        if j == opened:
            samples.append([])
            tokens.append(0)
            opened += 1
        samples[j].append(i)
        tokens[j] += need
        # an overlong bin takes nothing more, not even an empty sample (as the scan's test)
        free[node] = max_tokens - tokens[j] if tokens[j] <= max_tokens else -1
        node //= 2
        while node:
            free[node] = max(free[2 * node], free[2 * node + 1])
            node //= 2
    return tuple((tuple(s), t) for s, t in zip(samples, tokens))


def pack_scan(lengths: list[int], max_tokens: int) -> list[Bin]:
    """The textbook first-fit decreasing: a scan over every open bin for each sample. Quadratic;
    kept as the reference that ``pack`` is tested and benchmarked against (same bins, same order)."""
    bins: list[Bin] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for b in bins:
            if b.tokens + lengths[i] <= max_tokens:
                b.samples.append(i)
                b.tokens += lengths[i]
                break
        else:
            bins.append(Bin([i], lengths[i]))
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
    load = [0] * world
    for start in range(0, len(bins), world):
        group = sorted(bins[start:start + world], key=lambda b: -b.tokens)
        for b, r in zip(group, sorted(range(world), key=lambda r: load[r])):
            per_rank[r].append(b)
            load[r] += b.tokens
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


@dataclass
class MicroBatch:
    """One packed row and what the step needs to know about it, all computed on the host while
    collating, so the step never waits on the device to learn it."""
    input_ids: object
    labels: object
    """Next-token targets at ``keep`` only (the positions whose logits are computed)."""
    position_ids: object
    keep: object
    """Positions that carry a target (never empty: an empty step keeps position 0, no target)."""
    targets: int
    """Loss tokens (labelled positions) in the row."""
    tokens: int
    """Real tokens (no pad): the row's length, or 0 for an empty step."""
    cu_seqlens: object
    """int32 cumulative sample lengths [0, l1, l1+l2, ..., L]: the varlen kernels' bounds."""
    max_len: int
    """The longest sample in the row."""


def collate_micro(samples: list[Sample], bin_: Bin | None, pad_id: int, device=None) -> MicroBatch:
    """``collate`` plus the host-side facts of the row (targets, bounds), copied to ``device``
    without blocking: the attention of every layer and the loss read them from here."""
    import torch
    ids, labels, pos = [], [], []
    lengths = []
    for i in (bin_.samples if bin_ else []):
        s = samples[i]
        ids += s.input_ids
        labels += s.labels[1:] + [IGNORE]
        pos += list(range(len(s)))
        lengths.append(len(s))
    tokens = len(ids)
    if not ids:  # an empty step: one pad token, nothing to learn
        ids, labels, pos, lengths = [pad_id], [IGNORE], [0], [1]
    keep = [j for j, x in enumerate(labels) if x != IGNORE]
    targets = len(keep)
    kept_labels = [labels[j] for j in keep] if keep else [IGNORE]
    keep = keep or [0]
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)

    def t(x, dtype=torch.long):
        x = torch.tensor(x, dtype=dtype)
        if device is not None and torch.device(device).type == "cuda":
            return x.pin_memory().to(device, non_blocking=True)
        return x.to(device) if device is not None else x
    return MicroBatch(t([ids]), t([kept_labels]), t([pos]), t(keep), targets, tokens, t(cu, torch.int32),
                      max(lengths))


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
    keep = (labels[0] != IGNORE).nonzero().flatten()
    n = int(keep.numel())
    batch = MicroBatch(input_ids, labels[:, keep] if n else torch.full((1, 1), IGNORE, device=labels.device),
                       position_ids, keep if n else torch.zeros(1, dtype=torch.long, device=labels.device),
                       n, int(input_ids.shape[1]), None, 0)
    return micro_loss(model, batch, explicit_mask, full_labels=labels), n


def micro_loss(model, batch: MicroBatch, explicit_mask: bool = False, full_labels=None):
    """Sum of token cross-entropies of one ``MicroBatch`` (a device tensor: nothing waits).

    Logits (and the softmax over the vocabulary) only where a target is: in chat data most
    positions are prompt, and the output layer is a large share of a small model's work. Never
    an empty selection: every parameter must still get a (zero) gradient. Sample bounds go to the
    attention as transformers' flash-attention kwargs (``cu_seq_lens_q`` ...), computed once per
    micro-batch, when the model's attention reads them (Sprout's varlen kernel, flash_attention_2)."""
    import torch
    mask = block_causal_mask(batch.position_ids, next(model.parameters()).dtype) if explicit_mask else None
    extra = {}
    labels = batch.labels
    if batch.input_ids.shape[0] == 1 and takes_logits_to_keep(model):
        extra["logits_to_keep"] = batch.keep
    elif full_labels is not None:
        labels = full_labels
    else:  # the model computes every position: targets back in place
        labels = torch.full_like(batch.input_ids, IGNORE)
        if batch.targets:
            labels[0, batch.keep] = batch.labels[0]
    if batch.cu_seqlens is not None and not explicit_mask and reads_varlen_kwargs(model):
        extra.update(cu_seq_lens_q=batch.cu_seqlens, cu_seq_lens_k=batch.cu_seqlens,
                     max_length_q=batch.max_len, max_length_k=batch.max_len)
    out = model(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=mask, use_cache=False,
                **extra)
    logits = out.logits.float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")


def reads_varlen_kwargs(model) -> bool:
    """Whether the model's attention takes the sample bounds as kwargs (ours, flash-attention's)."""
    from .attention import NAME
    config = getattr(getattr(model, "module", model), "config", None)
    return getattr(config, "_attn_implementation", None) in (NAME, "flash_attention_2")


def takes_logits_to_keep(model) -> bool:
    """Whether the model's forward computes logits for chosen positions only (transformers'
    ``logits_to_keep``, which most causal LMs take: an index tensor keeps those positions)."""
    return _forward_takes_logits_to_keep(type(getattr(model, "module", model)))  # DeepSpeed wraps it


@functools.lru_cache(maxsize=None)
def _forward_takes_logits_to_keep(cls) -> bool:
    import inspect
    try:
        return "logits_to_keep" in inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return False


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
