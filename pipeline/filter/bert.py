"""A BERT encoder in plain torch over a model folder's safetensors and tokenizer.json.

Why: the filters embed a few hundred samples per run, and importing transformers' BERT stack
costs ~4-5 s on 2 cores — most of a one-leaf rerun's filter stage. This reads the same weights
and gives the same hidden states (tested against transformers to 1e-5). Only the plain BERT
layout is handled (absolute positions, post-LayerNorm, GELU); anything else goes through
transformers (`supports` says which).
"""

from __future__ import annotations

import json
from pathlib import Path


def supports(path: Path) -> bool:
    path = Path(path)
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (cfg.get("model_type") == "bert" and cfg.get("hidden_act", "gelu") == "gelu"
            and cfg.get("position_embedding_type", "absolute") == "absolute"
            and (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file())


class BertEncoder:
    def __init__(self, path: Path, max_length: int = 256):
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        path = Path(path)
        cfg = json.loads((path / "config.json").read_text())
        self.heads, self.eps = cfg["num_attention_heads"], cfg.get("layer_norm_eps", 1e-12)
        self.layers = cfg["num_hidden_layers"]
        w = {k.removeprefix("bert."): v.float() for k, v in load_file(str(path / "model.safetensors")).items()}
        self.w = w
        self.max_length = min(max_length, cfg.get("max_position_embeddings", 512))
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        tok.enable_truncation(self.max_length)
        pad_id = cfg.get("pad_token_id", 0)
        tok.enable_padding(pad_id=pad_id, pad_token=tok.id_to_token(pad_id) or "[PAD]")
        self.tokenizer = tok
        self._torch = torch

    def tokenize(self, texts: list[str]):
        torch = self._torch
        enc = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        types = torch.tensor([e.type_ids for e in enc])
        return ids, mask, types

    def hidden_states(self, ids, mask, types):
        torch = self._torch
        F = torch.nn.functional
        w, n = self.w, ids.shape[1]

        def ln(x, name):
            return F.layer_norm(x, x.shape[-1:], w[f"{name}.weight"], w[f"{name}.bias"], self.eps)

        def dense(x, name):
            return F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])

        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = ln(x, "embeddings.LayerNorm")
        b, d = x.shape[0], x.shape[-1]
        keep = mask.bool()[:, None, None, :]  # padding keys never attended to
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def split(t):
                return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)
            q, k, v = (split(dense(x, f"{p}.attention.self.{m}")) for m in ("query", "key", "value"))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2).reshape(b, n, d)
            x = ln(x + dense(a, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
            h = dense(F.gelu(dense(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
            x = ln(x + h, f"{p}.output.LayerNorm")
        return x
