"""Models for serving tests: the tiny student with loud random weights, so that greedy answers
differ from prompt to prompt (the freshly built one answers newlines to everything)."""

import pytest

from tests.fakes.models import tiny_model


def loud_model(dest, seed: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    if (dest / "config.json").exists():
        return dest
    base = tiny_model(dest.parent / "tiny-base")
    model = AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(base).save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def loud(tmp_path_factory):
    return loud_model(tmp_path_factory.mktemp("serve") / "loud", seed=1)
