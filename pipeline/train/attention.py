"""Variable-length attention without flash-attn: each packed sample attends only within itself.

transformers' own paths for a packed row without flash-attn (sdpa or eager with the block-causal
mask it builds from position ids) still compute the whole L x L score matrix and mask most of it
away: a row of 16 samples costs ~16x the attention of the samples alone, and on a CPU with a
small model that is most of the step. Here the row is cut at the position-id restarts and every
sample runs its own causal sdpa call (torch's fused kernels, flash where the device has it): the
work is the sum of the samples' squares, as with flash-attention's varlen kernels. Registered
with transformers as ``sprout_varlen``; the loop picks it when flash-attn is not installed.
"""

from __future__ import annotations

NAME = "sprout_varlen"
_last: tuple = (None, None)  # (key of the position ids, their sample bounds): one row, many layers


def bounds(position_ids) -> list[tuple[int, int]]:
    """(start, end) of each sample in a packed row whose position ids restart at 0."""
    global _last
    key = (position_ids.data_ptr(), tuple(position_ids.shape), getattr(position_ids, "_version", 0))
    if _last[0] == key:
        return _last[1]
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    n = int(position_ids.shape[-1])
    result = list(zip(starts, starts[1:] + [n]))
    _last = (key, result)
    return result


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    pos = kwargs.pop("position_ids", None)
    kwargs.pop("is_causal", None)
    if attention_mask is not None or pos is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        # not a packed training row (a padded batch, generation with a cache): plain sdpa
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    spans = bounds(pos)
    if len(spans) == 1:
        return sdpa_attention_forward(module, query, key, value, None, dropout=dropout, scaling=scaling,
                                      is_causal=True, **kwargs)
    # split, not slice: a slice's backward writes a zero tensor of the whole row and adds it to the
    # gradient, once per sample (quadratic in the samples per row); split's backward is one cat
    sizes = [e - s for s, e in spans]
    outs = [sdpa_attention_forward(module, q, k, v, None, dropout=dropout, scaling=scaling, is_causal=True,
                                   **kwargs)[0]
            for q, k, v in zip(query.split(sizes, dim=2), key.split(sizes, dim=2), value.split(sizes, dim=2))]
    return torch.cat(outs, dim=1), None


def _mask(*args, **kwargs):
    """No mask for a packed row (the attention cuts it); sdpa's own mask for anything else."""
    from transformers.masking_utils import sdpa_mask
    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


def register() -> str:
    from transformers import AttentionInterface, AttentionMaskInterface
    AttentionInterface.register(NAME, varlen_attention)
    AttentionMaskInterface.register(NAME, _mask)
    return NAME
