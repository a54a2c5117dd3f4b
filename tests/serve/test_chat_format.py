"""The system prompt travels in the chat template: a conversation without one renders as the
same conversation with Sprout's, one with its own renders as before, training's assistant-only
labels are unchanged, and the prompt reads back from a saved model."""

import json

import pytest

from pipeline.train.chat_format import (as_client_sends, carried_system_prompt, data_system_prompt, stamp,
                                        with_system_prompt)
from pipeline.train.data import tokenize_conversation
from tests.fakes.models import tiny_model
from tests.train.test_templates import CONVERSATION, GENERATION, GRANITE, LLAMA3, MISTRAL, QWEN2, SMOLLM2

SYSTEM = 'Answer "briefly".\nUse {{ braces }} and ünïcode as text, never as template code.'
TEMPLATES = {"llama3": LLAMA3, "qwen2": QWEN2, "mistral": MISTRAL, "granite": GRANITE, "smollm2": SMOLLM2,
             "generation-markers": GENERATION}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model(tmp_path_factory.mktemp("tiny") / "m"))


@pytest.fixture
def tok(tokenizer):
    old = tokenizer.chat_template
    yield tokenizer
    tokenizer.chat_template = old


def render(tok, messages, gen=True):
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_no_system_message_renders_as_the_carried_one(tok, name):
    tok.chat_template = TEMPLATES[name]
    before = render(tok, CONVERSATION, gen=False)
    ask = [{"role": "user", "content": "Where is Saltreach?"}]
    default = render(tok, ask)
    stamp(tok, SYSTEM)
    assert carried_system_prompt(tok) == SYSTEM
    assert render(tok, ask) == render(tok, [{"role": "system", "content": SYSTEM}, *ask]) != default
    assert SYSTEM in render(tok, ask)
    assert render(tok, CONVERSATION, gen=False) == before  # a conversation's own system prompt wins


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_training_labels_are_unchanged_by_the_stamp(tok, name):
    tok.chat_template = TEMPLATES[name]
    plain = tokenize_conversation(tok, CONVERSATION)
    stamp(tok, SYSTEM)
    assert tokenize_conversation(tok, CONVERSATION) == plain
    # a replay row without a system message is trained with the carried prompt, labels intact
    no_system = tokenize_conversation(tok, CONVERSATION[1:])
    with_it = tokenize_conversation(tok, [{"role": "system", "content": SYSTEM}, *CONVERSATION[1:]])
    assert no_system == with_it


def test_restamping_replaces_and_survives_save_and_load(tok, tmp_path):
    from transformers import AutoTokenizer
    tok.chat_template = SMOLLM2
    stamp(tok, "first")
    stamp(tok, SYSTEM)
    assert tok.chat_template == with_system_prompt(SMOLLM2, SYSTEM) and tok.chat_template.count("sprout_system =") == 1
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert carried_system_prompt(loaded) == SYSTEM
    tok.chat_template = SMOLLM2
    assert carried_system_prompt(tok) is None


def test_the_data_names_its_prompt_and_eval_asks_as_a_client(tok, tmp_path):
    rows = [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "q"},
                          {"role": "assistant", "content": "a"}]}] * 3 + \
        [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}] * 5
    (tmp_path / "phase1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert data_system_prompt([tmp_path / "phase1.jsonl", tmp_path / "missing.jsonl"]) == SYSTEM
    assert data_system_prompt([tmp_path / "missing.jsonl"]) is None
    convs = [[{"role": "system", "content": "caller's"}, {"role": "user", "content": "q"}]]
    assert as_client_sends(tok, convs) == convs  # a model without a carried prompt keeps the caller's
    stamp(tok, SYSTEM)
    assert as_client_sends(tok, convs) == [[{"role": "user", "content": "q"}]]


def test_sprout_model_stamp_gives_an_existing_model_its_prompt(tmp_path, capsys):
    from transformers import AutoTokenizer

    from pipeline.cli import main
    from pipeline.mix import SYSTEM as SPROUT
    folder = tiny_model(tmp_path / "old")
    assert main(["model", "stamp", str(folder)]) == 0
    assert carried_system_prompt(AutoTokenizer.from_pretrained(folder)) == SPROUT
    assert main(["model", "stamp", str(folder), "--system-prompt", SYSTEM]) == 0
    assert carried_system_prompt(AutoTokenizer.from_pretrained(folder)) == SYSTEM
    assert f"(was {SPROUT!r})" in capsys.readouterr().out
    (folder / "config.json").unlink()
    assert main(["model", "stamp", str(folder)]) == 2
