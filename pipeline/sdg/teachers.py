"""Teachers behind one small interface: a batch of prompts in, ``n`` completions per prompt out.

- ``OfflineTeacher``: no model (the default; smoke-level, see offline.py);
- ``OpenAITeacher``: any OpenAI-compatible server (vLLM, llama.cpp, Ollama, `sprout model serve`);
- ``HFTeacher``: a local Hugging Face causal-LM directory, batched generation.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import offline
from .prompts import Prompt


DEFAULT_CONCURRENCY = 128
"""Requests in flight to an OpenAI-compatible teacher, all leaves together: a vLLM server batches
hundreds; a small server answers 429/503 and the window shrinks to what it takes."""


class TeacherError(Exception):
    """The teacher cannot be used (unreachable, wrong model, refused)."""


@dataclass(frozen=True)
class GenParams:
    temperature: float = 0.7
    max_tokens: int = 1024
    seed: int = 42
    stop: tuple[str, ...] = ()
    """Strings that end a completion (the endpoint's ``stop``; cut locally by the HF teacher). A
    completion that ends on one counts as finished, so its last pair is kept without "[End]"."""

    def key(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


class Teacher(Protocol):
    identity: str
    """Stable description of the teacher, part of every cache key."""
    can_judge: bool

    def complete(self, prompts: list[Prompt], n: int = 1, params: GenParams = GenParams()) -> list[list[str]]:
        ...


def _source_digest(module) -> str:
    return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()[:12]


class OfflineTeacher:
    # its code is its model: a change to it must regenerate what the cache holds
    identity = f"offline:{offline.__name__}:{_source_digest(offline)}"
    can_judge = False

    def complete(self, prompts, n=1, params=GenParams()):
        return [[offline.complete(p, params.seed * 1000 + i) for i in range(n)] for p in prompts]


class OpenAITeacher:
    """Chat completions against an OpenAI-compatible endpoint through one request pool (pool.py):
    every leaf of a run shares its in-flight limit, 429/503 shrink its window, and it counts
    what the run cost the endpoint."""

    can_judge = True
    shares_pool = True
    """generate() runs leaves side by side: their requests meet in this teacher's pool."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 concurrency: int = DEFAULT_CONCURRENCY, timeout: float = 600.0, retries: int = 4,
                 check: bool = True, progress: bool | None = None):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.concurrency, self.timeout, self.retries, self.progress = concurrency, timeout, retries, progress
        self.model = model
        if check:
            self.model = self._check_model(model)
        self.identity = f"openai:{self.base_url}:{self.model}"
        self._pool = None

    def __getstate__(self):  # picklable for Ray: the pool (a thread, a loop) is rebuilt on the other side
        state = dict(self.__dict__)
        state["_pool"] = None
        return state

    @property
    def pool(self):
        if self._pool is None:
            from .pool import RequestPool
            self._pool = RequestPool(f"{self.base_url}/chat/completions", self.headers, limit=self.concurrency,
                                     timeout=self.timeout, retries=self.retries, progress=self.progress)
        return self._pool

    @property
    def cost(self):
        """Cumulative cost of this teacher's requests (a ``pool.Cost``)."""
        from .pool import Cost
        return Cost().add(self._pool.cost) if self._pool is not None else Cost()

    def close(self) -> None:
        """Ends the pool's thread and connections; the teacher still works (a new pool starts)."""
        if self._pool is not None:
            self._pool.close()

    def _check_model(self, model: str | None) -> str:
        import httpx
        try:
            r = httpx.get(f"{self.base_url}/models", headers=self.headers, timeout=min(self.timeout, 60))
        except httpx.HTTPError as e:
            raise TeacherError(f"teacher server {self.base_url} is unreachable: {e}") from None
        if r.status_code >= 400:
            raise TeacherError(f"teacher server {self.base_url}/models answered {r.status_code}: {r.text[:200]}")
        try:
            ids = [m["id"] for m in r.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TeacherError(f"teacher server {self.base_url}/models did not answer an OpenAI model list") from None
        if model is None:
            if len(ids) != 1:
                raise TeacherError(f"the server serves {len(ids)} models ({', '.join(ids)}); choose one")
            return ids[0]
        if model not in ids:
            raise TeacherError(f"model {model!r} is not served by {self.base_url}; it serves: {', '.join(ids) or 'nothing'}")
        return model

    def submit(self, prompt: Prompt, n: int = 1, params: GenParams = GenParams()):
        """One request into the pool: a future of a ``pool.Completion`` (raises ``pool.PoolError``)."""
        body = {"model": self.model, "messages": list(prompt.messages), "n": n,
                "temperature": params.temperature, "max_tokens": params.max_tokens, "seed": params.seed}
        if params.stop:
            body["stop"] = list(params.stop)
        return self.pool.submit(body)

    def complete(self, prompts, n=1, params=GenParams()):
        from .pool import PoolError
        futures = [self.submit(p, n, params) for p in prompts]
        concurrent.futures.wait(futures)
        try:
            return [f.result().texts for f in futures]
        except PoolError as e:
            raise TeacherError(str(e)) from None


class HFTeacher:
    """A local Hugging Face causal LM (any directory with config, weights and a tokenizer
    with a chat template), generating in batches."""

    can_judge = True

    def __init__(self, model_dir: str | Path, batch_size: int = 8, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise TeacherError(f"{path} is not a Hugging Face model directory (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        digest = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:12]
        self.identity = f"hf:{path.resolve()}:{digest}"
        self._spec = (str(path.resolve()), batch_size, device)

    def __reduce__(self):
        # Shipped to Ray workers as its folder, not its weights: each worker process loads the
        # model once (cached below) and reuses it for every task it runs.
        return (_hf_teacher, self._spec)

    def generate(self, conversations: list[list[dict]], params: GenParams, n: int = 1,
                 progress: str | None = None) -> list[list[str]]:
        """``progress``: a label for a bar over the batches (generation on CPU takes minutes)."""
        import torch
        torch.manual_seed(params.seed)
        texts = [self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in conversations]
        # Batches of similar length: a short prompt beside a long one is mostly padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        sampling = {"do_sample": True, "temperature": params.temperature} if params.temperature > 0 else \
            {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        out: list[list[str] | None] = [None] * len(texts)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(texts), desc=progress, unit="answer", leave=False)
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            enc = self.tokenizer([texts[j] for j in idx], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            with torch.no_grad():
                gen = self.model.generate(**enc, max_new_tokens=params.max_tokens, num_return_sequences=n,
                                          pad_token_id=self.tokenizer.pad_token_id, **sampling)
            decoded = self.tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for s in params.stop:
                decoded = [t.split(s, 1)[0] for t in decoded]
            for k, j in enumerate(idx):
                out[j] = decoded[k * n:(k + 1) * n]
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out

    def complete(self, prompts, n=1, params=GenParams()):
        return self.generate([list(p.messages) for p in prompts], params, n)


@functools.lru_cache(maxsize=2)
def _hf_teacher(model_dir: str, batch_size: int, device: str | None) -> HFTeacher:
    return HFTeacher(model_dir, batch_size=batch_size, device=device)


def close_teachers(*teachers) -> None:
    """End what each teacher holds open (a pool's thread and connections); None and teachers
    without a pool are skipped."""
    for t in teachers:
        if t is not None and hasattr(t, "close"):
            t.close()


def make_teacher(spec: str | None, model: str | None = None, api_key: str | None = None,
                 concurrency: int | None = None) -> Teacher:
    """'offline' (default), an http(s) URL of an OpenAI-compatible server, or a model folder.
    ``concurrency``: requests in flight to a server (default DEFAULT_CONCURRENCY)."""
    if not spec or spec == "offline":
        return OfflineTeacher()
    if spec.startswith(("http://", "https://")):
        return OpenAITeacher(spec, model=model, api_key=api_key, concurrency=concurrency or DEFAULT_CONCURRENCY)
    if Path(spec).is_dir():
        return HFTeacher(spec)
    raise TeacherError(f"unknown teacher {spec!r}: use 'offline', an http(s) URL of an OpenAI-compatible "
                       "server, or a Hugging Face model directory")
