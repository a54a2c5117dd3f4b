"""A phase's data tokenised once per run: rank 0 tokenises it (or reads the copy it cached in the
run folder, e.g. after a restart) and sends it to the other ranks over the process group, so no
rank repeats the work and no shared filesystem is assumed between nodes."""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict
from pathlib import Path

from .data import Sample, TokenizeReport, read_messages, tokenize_dataset

# files of a Hugging Face folder that decide how text becomes token ids
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json")


def cache_key(data: Path, tokenizer_dir: Path, max_len: int, overlong: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([max_len, overlong, 1]).encode())
    with open(data, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    for name in _TOKENIZER_FILES:
        p = Path(tokenizer_dir) / name
        if p.is_file():
            h.update(name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:24]


def _pack(samples: list[Sample], report: TokenizeReport) -> bytes:
    import numpy as np
    lengths = np.array([len(s) for s in samples], dtype=np.int64)
    buf = io.BytesIO()
    np.savez(buf, lengths=lengths,
             ids=np.array([t for s in samples for t in s.input_ids], dtype=np.int64),
             labels=np.array([t for s in samples for t in s.labels], dtype=np.int64),
             report=np.frombuffer(json.dumps(asdict(report)).encode(), dtype=np.uint8))
    return buf.getvalue()


def _unpack(blob: bytes) -> tuple[list[Sample], TokenizeReport]:
    import numpy as np
    z = np.load(io.BytesIO(blob))
    ends = np.cumsum(z["lengths"]).tolist()
    ids, labels = z["ids"].tolist(), z["labels"].tolist()
    samples, start = [], 0
    for end in ends:
        samples.append(Sample(ids[start:end], labels[start:end]))
        start = end
    return samples, TokenizeReport(**json.loads(bytes(z["report"]).decode()))


def phase_samples(tokenizer, tokenizer_dir: Path, data: Path, max_len: int, overlong: str, cache_dir: Path,
                  rank: int, world: int) -> tuple[list[Sample], TokenizeReport]:
    """Every rank gets the same samples; only rank 0 tokenises, and only when its cache misses."""
    blob = None
    if rank == 0:
        try:
            blob = _cached_or_tokenized(tokenizer, tokenizer_dir, data, max_len, overlong, cache_dir)
        except Exception as e:  # the other ranks wait on the broadcast: tell them, then raise
            if world > 1:
                _broadcast(e)
            raise
    if world > 1:
        blob = _broadcast(blob)
        if isinstance(blob, Exception):
            raise blob
    return _unpack(blob)


def _cached_or_tokenized(tokenizer, tokenizer_dir, data, max_len, overlong, cache_dir) -> bytes:
    path = Path(cache_dir) / f"{Path(data).stem}-{cache_key(data, tokenizer_dir, max_len, overlong)}.npz"
    if path.is_file():
        return path.read_bytes()
    blob = _pack(*tokenize_dataset(tokenizer, read_messages(data), max_len, overlong))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
    return blob


def _broadcast(obj):
    import torch.distributed as dist
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
