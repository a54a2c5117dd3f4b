"""One loaded model and its decode loop: a left-padded batch of rows, each with its own sampling,
``max_tokens`` and stop strings, generated step by step over a KV cache so that each row can be
streamed, stopped and finished on its own; finished rows leave the batch, new ones join it.

Greedy rows give the same tokens batched as alone: padding is masked out and position ids count
only real tokens, as ``generate()`` does (tests/serve/test_openai_api.py holds this)."""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Row:
    """One sequence to generate (a request with ``n`` choices has ``n`` rows)."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    """0: greedy (argmax)."""
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    notify: Callable[["Row"], None] | None = None
    """Called from the generating thread after each step that changed the row, and at its end."""
    index: int = 0
    """Which of its request's choices the row is."""
    # -- filled in while generating ----------------------------------------------------------
    ids: list[int] = field(default_factory=list)
    generated: int = 0
    """Tokens generated (an end-of-turn token included): the usage's completion_tokens."""
    text: str = ""
    """The completion so far (cut before a stop string once one appears)."""
    safe: str = ""
    """The part of ``text`` that can be sent now: not a possible stop string's beginning, not a
    half-decoded character."""
    finish_reason: str | None = None
    """'stop' (end of turn or a stop string), 'length' (max_tokens), 'cancelled', 'error'."""
    error: str | None = None
    cancelled: bool = False
    """Set by the client side (a closed stream): the row ends at the next step."""


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters could still grow into a stop string (or finish a character)."""
    keep = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                keep = max(keep, k)
                break
    tail = len(text) - len(text.rstrip("\ufffd"))  # a byte-level token split inside a character
    return max(keep, tail)


_LOADING = threading.Lock()
"""transformers builds a model under process-wide patches (default dtype, meta device, weight
tying off: huggingface/transformers#41782), so two loads at once can leave one model's weights on
the meta device ("Cannot copy out of meta tensor") and break later loads: one load at a time."""


class Engine:
    """A Hugging Face causal LM loaded for serving. ``generate`` is called from one thread at a
    time (the scheduler's); the tokenizer is shared with request handlers under ``tok_lock``."""

    def __init__(self, model_dir: str | Path, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(model_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        with _LOADING:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForCausalLM.from_pretrained(self.path).to(self.device).eval()
        self.tok_lock = threading.Lock()  # a fast tokenizer used from two threads can raise "Already borrowed"
        tok, cfg, gen = self.tokenizer, self.model.config, getattr(self.model, "generation_config", None)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = set()
        for source in (getattr(gen, "eos_token_id", None), cfg.eos_token_id, tok.eos_token_id):
            eos |= set(source if isinstance(source, (list, tuple)) else [source] if source is not None else [])
        self.eos_ids = eos
        self.context = int(getattr(cfg, "max_position_embeddings", 0) or 2048)
        params = inspect.signature(self.model.forward).parameters
        self._keep = "logits_to_keep" in params
        # transformers 5.25 renamed past_key_values to cache (the old name warns, then goes)
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    # -- text ---------------------------------------------------------------------------------
    def chat_prompt(self, messages: list[dict]) -> list[int]:
        with self.tok_lock:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def text_prompt(self, prompt: str) -> list[int]:
        with self.tok_lock:
            return list(self.tokenizer(prompt)["input_ids"])

    def _decode(self, ids: list[int]) -> str:
        with self.tok_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True)

    # -- generation ---------------------------------------------------------------------------
    def _forward(self, ids, mask, pos, cache):
        """Logits of each row's last position; ``cache`` (a DynamicCache) grows in place."""
        kw = {"logits_to_keep": 1} if self._keep else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                         **{self._cache_kw: cache}, **kw)
        return out.logits[:, -1, :].float()

    def _choose(self, logits, rows: list[Row], generators: list) -> list[int]:
        import torch
        out = logits.argmax(-1).tolist()
        for i, r in enumerate(rows):
            if r.temperature <= 0 or r.finish_reason is not None:
                continue
            probs = torch.softmax(logits[i] / r.temperature, -1)
            if r.top_p < 1.0:
                sorted_p, order = probs.sort(descending=True)
                drop = sorted_p.cumsum(-1) - sorted_p > r.top_p  # keep the smallest set reaching top_p
                sorted_p[drop] = 0
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
            out[i] = int(torch.multinomial(probs, 1, generator=generators[i]).item())
        return out

    def _advance(self, row: Row, token: int) -> None:
        if row.cancelled:
            row.finish_reason = "cancelled"
            return
        row.generated += 1
        if token in self.eos_ids:
            row.finish_reason = "stop"
        else:
            row.ids.append(token)
            text = self._decode(row.ids)
            cut = min((i for i in (text.find(s) for s in row.stop) if i >= 0), default=-1)
            if cut >= 0:
                row.text = row.safe = text[:cut]
                row.finish_reason = "stop"
            else:
                row.text = text
                if len(row.ids) >= row.max_tokens:
                    row.finish_reason = "length"
        if row.finish_reason is not None:
            row.safe = row.text
        elif row.ids and row.text:
            row.safe = row.text[:len(row.text) - _held_back(row.text, row.stop)]
        if row.notify is not None:
            row.notify(row)

    def _prefill(self, rows: list[Row]):
        """A left-padded batch of prompts through the model: (logits, cache, mask, last positions)."""
        import torch
        from transformers import DynamicCache
        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding: every row's next token is in the last column
            ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[i, width - len(r.prompt_ids):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self._forward(ids, mask, pos, cache)
        return logits, cache, mask, pos[:, -1:]

    def _generators(self, rows: list[Row]) -> list:
        import torch
        out = []
        for r in rows:
            g = None
            if r.temperature > 0:
                g = torch.Generator(device=self.device)
                if r.seed is None:
                    g.seed()
                else:
                    g.manual_seed(r.seed)
            out.append(g)
        return out

    @staticmethod
    def _mergeable(cache) -> bool:
        from transformers.cache_utils import DynamicLayer
        return all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None]))

    @staticmethod
    def _merge(cache, mask, extra, extra_mask):
        """Rows prefilled apart joined to the running batch: both left-padded to one width."""
        import torch
        import torch.nn.functional as F
        width = max(mask.shape[1], extra_mask.shape[1])
        for a, b in zip(cache.layers, extra.layers):
            a.keys = torch.cat([F.pad(a.keys, (0, 0, width - a.keys.shape[-2], 0)),
                                F.pad(b.keys, (0, 0, width - b.keys.shape[-2], 0))], 0)
            a.values = torch.cat([F.pad(a.values, (0, 0, width - a.values.shape[-2], 0)),
                                  F.pad(b.values, (0, 0, width - b.values.shape[-2], 0))], 0)
        return torch.cat([F.pad(mask, (width - mask.shape[1], 0)), F.pad(extra_mask, (width - extra_mask.shape[1], 0))], 0)

    def generate(self, rows: list[Row], admit: Callable[[int], list[Row]] | None = None) -> None:
        """Generate every row to its end (filled in place; ``notify`` after each step).

        ``admit(live)``: rows that arrived meanwhile, given how many are generating; asked after each step and
        joined to the running batch (continuous batching), so a long answer does not hold the
        others back; they are generated to their end here too."""
        import torch

        if not rows:
            return
        with torch.inference_mode():
            logits, cache, mask, pos = self._prefill(rows)
            live, generators = list(rows), self._generators(rows)
            every = list(rows)
            while live:
                tokens = self._choose(logits, live, generators)
                for r, t in zip(live, tokens):
                    self._advance(r, t)
                keep = [i for i, r in enumerate(live) if r.finish_reason is None]
                if len(keep) < len(live):  # finished rows leave the batch: a long row alone is not 8x the work
                    index = torch.tensor(keep, dtype=torch.long, device=self.device)
                    if keep:
                        cache.batch_select_indices(index)
                    mask, pos = mask[index], pos[index]
                    live, tokens = [live[i] for i in keep], [tokens[i] for i in keep]
                    generators = [generators[i] for i in keep]
                    if keep and self._mergeable(cache):  # columns only the departed rows used: dropped
                        dead = int(mask.any(0).int().argmax())
                        if dead:
                            for layer in cache.layers:
                                layer.keys, layer.values = layer.keys[..., dead:, :], layer.values[..., dead:, :]
                            mask = mask[:, dead:]
                new = admit(len(live)) if admit is not None and self._mergeable(cache) else []
                if new:
                    new_logits, new_cache, new_mask, new_pos = self._prefill(new)
                    new_generators = self._generators(new)
                    new_tokens = self._choose(new_logits, new, new_generators)
                    for r, t in zip(new, new_tokens):
                        self._advance(r, t)
                    every += new
                    joined = [i for i, r in enumerate(new) if r.finish_reason is None]
                    if joined:
                        index = torch.tensor(joined, dtype=torch.long, device=self.device)
                        new_cache.batch_select_indices(index)
                        new_mask, new_pos = new_mask[index], new_pos[index]
                        if live:
                            mask = self._merge(cache, mask, new_cache, new_mask)
                            pos = torch.cat([pos, new_pos], 0)
                        else:
                            cache, mask, pos = new_cache, new_mask, new_pos
                        live += [new[i] for i in joined]
                        tokens += [new_tokens[i] for i in joined]
                        generators += [new_generators[i] for i in joined]
                if not live:
                    break
                step = torch.tensor([[t] for t in tokens], dtype=torch.long, device=self.device)
                mask = torch.cat([mask, torch.ones((len(live), 1), dtype=torch.long, device=self.device)], 1)
                pos = pos + 1
                logits = self._forward(step, mask, pos, cache)
        rows = every
        for r in rows:  # max_tokens reached by every row at once
            if r.finish_reason is None:
                r.finish_reason = "length"
                r.safe = r.text
                if r.notify is not None:
                    r.notify(r)
