"""The embedded default student: a tiny Llama-style model built from a config, with a BPE
tokenizer trained locally on the taxonomy's own text, saved as a normal Hugging Face directory
(config, safetensors, tokenizer with a chat template). No download anywhere."""

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
    (out_dir / "sprout_student.json").write_text(json.dumps(config.__dict__, indent=2))
    return out_dir


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
        texts += [p.read_text("utf-8", "replace") for p in sorted(docs.rglob("*.md"))]
    return [t for t in texts if t]
