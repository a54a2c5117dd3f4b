"""Variable-length attention without flash-attn: each packed sample attends only within itself.

transformers' own paths for a packed row without flash-attn (sdpa or eager with the block-causal
mask it builds from position ids) still compute the whole L x L score matrix and mask most of it
away: a row of 16 samples costs ~16x the attention of the samples alone. Registered with
transformers as ``sprout_varlen``; the loop picks it when flash-attn is not installed.

- On CUDA in bf16/fp16, one call to torch's native ``torch.nn.attention.varlen.varlen_attn``
  (torch >= 2.10: the built-in flash kernels, with autograd, nothing to compile) per layer. Its
  signature changed across versions (``is_causal`` then ``window_size``; ``enable_gqa`` from
  2.12; ``scale``), so the call is shaped from ``inspect.signature`` (``varlen_call``).
- Elsewhere (the CPU, fp32, an older torch) one causal sdpa call per packed sample.

The sample bounds come once per micro-batch from the collate step (``cu_seq_lens_q`` /
``max_length_q``, transformers' own flash-attention kwargs, which the model hands every layer),
so no layer waits on the GPU to find them. Without them (a caller that passes position ids only)
they are computed from the position ids once per forward and remembered for the other layers by
the identity of that tensor (a weak reference: a freed tensor whose memory the allocator reuses
is never taken for the old one, as a ``data_ptr`` key would be).
"""

from __future__ import annotations

import functools
import inspect
import weakref

NAME = "sprout_varlen"
_last: tuple = (None, None, None)  # (weakref to the position ids, their _version, sample bounds)


def bounds(position_ids) -> list[tuple[int, int]]:
    """(start, end) of each sample in a packed row whose position ids restart at 0."""
    global _last
    ref, version, result = _last
    if ref is not None and ref() is position_ids and version == position_ids._version:
        return result
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    n = int(position_ids.shape[-1])
    result = list(zip(starts, starts[1:] + [n]))
    _last = (weakref.ref(position_ids), position_ids._version, result)
    return result


def _spans_from_cu(cu) -> list[tuple[int, int]]:
    """Bounds from cumulative lengths; on the CPU (where the per-sample path runs) no sync."""
    global _last
    ref, version, result = _last
    if ref is not None and ref() is cu and version == cu._version:
        return result
    c = cu.tolist()
    result = [(a, b) for a, b in zip(c, c[1:]) if b > a]
    _last = (weakref.ref(cu), cu._version, result)
    return result


@functools.lru_cache(maxsize=1)
def native_kernel():
    """torch's varlen_attn and the names its signature takes, or None (torch < 2.10)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    try:
        return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)
    except (TypeError, ValueError):
        return None


def use_native(query) -> bool:
    """The native kernel runs flash kernels: CUDA tensors in half precision only."""
    import torch
    return query.is_cuda and query.dtype in (torch.bfloat16, torch.float16) and native_kernel() is not None


def varlen_call(kernel, params, q, k, v, cu, max_len: int, scale: float | None):
    """Causal attention over packed (T, H, D) q and (T, Hkv, D) k/v with any version's signature."""
    kw = {}
    if "window_size" in params:  # 2.11+: causal is a window reaching back without limit
        kw["window_size"] = (-1, 0)
    elif "is_causal" in params:  # 2.10
        kw["is_causal"] = True
    else:
        raise TypeError("torch's varlen_attn takes neither window_size nor is_causal: cannot ask for causal")
    if scale is not None:
        if "scale" in params:
            kw["scale"] = scale
        else:  # the kernel's own scale is 1/sqrt(D)
            q = q * (scale * q.shape[-1] ** 0.5)
    if k.shape[1] != q.shape[1]:
        if "enable_gqa" in params:
            kw["enable_gqa"] = True
        else:  # grouped-query heads: one copy of each kv head per query head it serves
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    out = kernel(q, k, v, cu, cu, max_len, max_len, **kw)
    return out[0] if isinstance(out, tuple) else out  # (output, aux) in versions that always return both


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    pos = kwargs.pop("position_ids", None)
    cu = kwargs.pop("cu_seq_lens_q", None)
    max_len = kwargs.pop("max_length_q", None)
    for k in ("is_causal", "cu_seq_lens_k", "max_length_k"):
        kwargs.pop(k, None)
    if attention_mask is not None or (pos is None and cu is None) or query.shape[0] != 1 \
            or query.shape[2] != key.shape[2]:
        # not a packed training row (a padded batch, generation with a cache): plain sdpa
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if cu is not None and max_len is not None and use_native(query):
        kernel, params = native_kernel()
        # (1, H, L, D) -> (L, H, D): one packed row is the kernel's (total tokens, heads, dim)
        out = varlen_call(kernel, params, query[0].transpose(0, 1), key[0].transpose(0, 1),
                          value[0].transpose(0, 1), cu, int(max_len), scaling)
        return out.unsqueeze(0), None  # (1, L, H, D), as sdpa_attention_forward returns
    spans = _spans_from_cu(cu) if cu is not None else bounds(pos)
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
