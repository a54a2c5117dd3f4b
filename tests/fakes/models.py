"""A tiny real model for tests: Llama-style, 2 layers, tokenizer trained on the sample taxonomy."""

from __future__ import annotations

from pathlib import Path

from pipeline.train.student import StudentConfig, build_student, taxonomy_texts
from tests.conftest import ROOT


def tiny_model(dest: Path) -> Path:
    if (dest / "config.json").exists():
        return dest
    return build_student(taxonomy_texts(ROOT / "taxonomy"), dest,
                         StudentConfig(vocab_size=600, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1))
