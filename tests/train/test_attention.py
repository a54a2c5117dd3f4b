"""Sprout's varlen attention: the native-kernel shim (with fake kernels of each torch signature,
since torch's varlen_attn runs on CUDA only), the per-micro-batch bounds reaching every layer,
and the bounds cache that must not mistake a new tensor for a freed one."""

import inspect

import pytest
import torch

from pipeline.train import attention
from pipeline.train.data import tokenize_dataset
from pipeline.train.packing import Bin, collate, collate_micro, loss_sum, micro_loss
from tests.fakes.models import tiny_model
from tests.train.test_train import convo


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny") / "student")


def reference(q, k, v, cu, scale):
    """Causal attention of each sample alone: (T, H, D) in, (T, H, D) out."""
    outs = []
    c = cu.tolist()
    for a, b in zip(c, c[1:]):
        qs, ks, vs = (x[a:b].transpose(0, 1) for x in (q, k, v))
        if ks.shape[0] != qs.shape[0]:
            ks = ks.repeat_interleave(qs.shape[0] // ks.shape[0], 0)
            vs = vs.repeat_interleave(qs.shape[0] // vs.shape[0], 0)
        outs.append(torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale)
                    .transpose(0, 1))
    return torch.cat(outs)


def fake_2_10(calls):
    def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
        calls.append({"cu": cu_seq_q, "max": max_q, "causal": is_causal, "kv_heads": key.shape[1]})
        assert is_causal and key.shape[1] == query.shape[1]  # no enable_gqa here: heads repeated
        return reference(query, key, value, cu_seq_q, None)
    return varlen_attn


def fake_2_13(calls):
    def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                    window_size=(-1, -1), enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):
        calls.append({"cu": cu_seq_q, "max": max_q, "causal": window_size == (-1, 0), "kv_heads": key.shape[1],
                      "gqa": enable_gqa})
        assert window_size == (-1, 0) and cu_seq_k is cu_seq_q
        assert enable_gqa == (key.shape[1] != query.shape[1])
        return reference(query, key, value, cu_seq_q, scale)
    return varlen_attn


@pytest.mark.parametrize("make", [fake_2_10, fake_2_13], ids=["torch-2.10-is_causal", "torch-2.13-window_size"])
def test_native_kernel_gets_the_bounds_once_per_micro_batch_and_matches_per_sample_attention(model_dir, monkeypatch,
                                                                                              make):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    attention.register()
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attention.NAME)
    samples, _ = tokenize_dataset(tok, [convo(i) for i in range(6)], 512)
    # the reference: each sample alone, CPU kernel
    total = 0.0
    for i in range(len(samples)):
        loss, _ = loss_sum(model, *collate(samples, Bin([i], len(samples[i])), tok.pad_token_id))
        loss.backward()
        total += float(loss.detach())
    want = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()

    calls = []
    kernel = make(calls)
    monkeypatch.setattr(attention, "native_kernel", lambda: (kernel, frozenset(inspect.signature(kernel).parameters)))
    monkeypatch.setattr(attention, "use_native", lambda q: True)
    batch = collate_micro(samples, Bin(list(range(6)), 0), tok.pad_token_id)
    lengths = [len(s) for s in samples]
    assert batch.cu_seqlens.dtype == torch.int32 and batch.cu_seqlens.tolist() == [sum(lengths[:i]) for i in range(7)]
    assert batch.max_len == max(lengths) and batch.targets == int(batch.keep.numel())
    loss = micro_loss(model, batch)
    loss.backward()
    layers = model.config.num_hidden_layers
    assert len(calls) == layers  # one kernel call per layer, not per sample
    assert all(c["cu"] is batch.cu_seqlens and c["max"] == batch.max_len and c["causal"] for c in calls)
    assert abs(float(loss.detach()) - total) < 1e-4 * total
    for k, p in model.named_parameters():
        assert torch.allclose(p.grad, want[k], atol=1e-5, rtol=1e-4), k


def test_varlen_call_scale_without_a_scale_argument():
    """A kernel without ``scale`` gets q pre-multiplied so that its 1/sqrt(D) gives the scale asked."""
    seen = {}

    def kernel(q, k, v, cu_q, cu_k, max_q, max_k, is_causal=False):
        seen["q"] = q
        return reference(q, k, v, cu_q, None)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(10, 2, 8, generator=g) for _ in range(3))
    cu = torch.tensor([0, 4, 10], dtype=torch.int32)
    out = attention.varlen_call(kernel, frozenset(inspect.signature(kernel).parameters), q, k, v, cu, 6, 0.5)
    assert torch.allclose(out, reference(q, k, v, cu, 0.5), atol=1e-5)


def test_bounds_cache_never_takes_a_new_tensor_for_a_freed_one():
    a = torch.tensor([[0, 1, 2, 0, 1]])
    assert attention.bounds(a) == [(0, 3), (3, 5)]
    del a
    b = torch.tensor([[0, 1, 0, 1, 2]])  # same shape: the allocator may hand it the same memory
    assert attention.bounds(b) == [(0, 2), (2, 5)]
    b[0, 3] = 0  # changed in place: recomputed
    assert attention.bounds(b) == [(0, 2), (2, 3), (3, 5)]
