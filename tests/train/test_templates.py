"""Assistant-only labels on real chat-template shapes (written here, no download): multi-turn with
a system prompt on Llama-3, Qwen2, Mistral, Granite and SmolLM2 style templates, a template with
{% generation %} markers, and a template that breaks the prefix rule (a hard error, never a
silent fallback)."""

import pytest

from pipeline.train.data import IGNORE, TemplateError, tokenize_conversation
from tests.fakes.models import tiny_model

LLAMA3 = ("{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
          "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")
QWEN2 = ("{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba "
         "Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}"
         "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor %}"
         "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
MISTRAL = ("{{- bos_token }}{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] %}"
           "{%- set loop_messages = messages[1:] %}{%- else %}{%- set system = none %}{%- set loop_messages = messages %}"
           "{%- endif %}{%- for message in loop_messages %}{%- if message['role'] == 'user' %}"
           "{%- if loop.first and system %}{{- '[INST] ' + system + '\\n\\n' + message['content'] + ' [/INST]' }}"
           "{%- else %}{{- '[INST] ' + message['content'] + ' [/INST]' }}{%- endif %}"
           "{%- else %}{{- ' ' + message['content'] + eos_token }}{%- endif %}{%- endfor %}")
GRANITE = ("{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
           "{%- set loop_messages = messages[1:] %}{%- else %}{%- set system_message = 'Knowledge Cutoff Date: "
           "April 2024. You are Granite, developed by IBM.' %}{%- set loop_messages = messages %}{%- endif %}"
           "{{- '<|start_of_role|>system<|end_of_role|>' + system_message + '<|end_of_text|>\\n' }}"
           "{%- for message in loop_messages %}{{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + "
           "message['content'] + '<|end_of_text|>\\n' }}{%- endfor %}"
           "{%- if add_generation_prompt %}{{- '<|start_of_role|>assistant<|end_of_role|>' }}{%- endif %}")
SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
           "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
           "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
GENERATION = ("{%- for message in messages %}{%- if message['role'] == 'assistant' %}{{- '<|im_start|>assistant\\n' }}"
              "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
              "{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
              "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
# Mistral v0.3 style: the system prompt goes into the *last* user turn, so an earlier prefix is
# not a prefix of the whole conversation
MISTRAL_LAST = ("{{- bos_token }}{%- set system = messages[0]['content'] if messages[0]['role'] == 'system' else none %}"
                "{%- set loop_messages = messages[1:] if system else messages %}"
                "{%- for message in loop_messages %}{%- if message['role'] == 'user' %}"
                "{%- if loop.last and system %}{{- '[INST] ' + system + '\\n\\n' + message['content'] + ' [/INST]' }}"
                "{%- else %}{{- '[INST] ' + message['content'] + ' [/INST]' }}{%- endif %}"
                "{%- else %}{{- ' ' + message['content'] + eos_token }}{%- endif %}{%- endfor %}")

CONVERSATION = [{"role": "system", "content": "Be brief and kind."},
                {"role": "user", "content": "Where is Saltreach?"},
                {"role": "assistant", "content": "Saltreach is on Brenvik Isle."},
                {"role": "user", "content": "And the ferry?"},
                {"role": "assistant", "content": "The Grey Heron sails to Dunmere."}]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model(tmp_path_factory.mktemp("tiny") / "m"))


def labelled_text(tok, sample) -> str:
    runs, current = [], []
    for t, lab in zip(sample.input_ids, sample.labels):
        if lab != IGNORE:
            assert lab == t
            current.append(t)
        elif current:
            runs.append(tok.decode(current))
            current = []
    if current:
        runs.append(tok.decode(current))
    return "|".join(r.strip(" ") for r in runs)


@pytest.mark.parametrize("name, template, end", [
    ("llama3", LLAMA3, "<|eot_id|>"), ("qwen2", QWEN2, "<|im_end|>\n"), ("mistral", MISTRAL, "<|end|>"),
    ("granite", GRANITE, "<|end_of_text|>\n"), ("smollm2", SMOLLM2, "<|im_end|>\n"),
    ("generation-markers", GENERATION, "<|im_end|>")])
def test_only_assistant_turns_are_labels(tokenizer, name, template, end):
    tok = tokenizer
    old = tok.chat_template
    tok.chat_template = template
    try:
        sample = tokenize_conversation(tok, CONVERSATION)
        full = tok.apply_chat_template(CONVERSATION, tokenize=False)
    finally:
        tok.chat_template = old
    assert tok.decode(sample.input_ids) == full  # the ids are the rendering, once, nothing duplicated
    assert labelled_text(tok, sample) == f"Saltreach is on Brenvik Isle.{end}|The Grey Heron sails to Dunmere.{end}"


def test_a_template_that_breaks_the_prefix_rule_is_an_error_naming_it(tokenizer):
    tok = tokenizer
    old = tok.chat_template
    tok.chat_template = MISTRAL_LAST
    try:
        with pytest.raises(TemplateError, match=r"template starting .*bos_token.* assistant turn 2 does not render as a prefix"):
            tokenize_conversation(tok, CONVERSATION)
        # without a system prompt nothing moves, and the same template is fine
        plain = tokenize_conversation(tok, CONVERSATION[1:])
        assert labelled_text(tok, plain) == "Saltreach is on Brenvik Isle.<|end|>|The Grey Heron sails to Dunmere.<|end|>"
    finally:
        tok.chat_template = old


def test_batches_and_masks_are_built_on_the_engines_device():
    """On a GPU the loop hands collate the engine's device; the 'meta' device stands in for it
    here: a tensor built on the CPU by mistake would not mix with it and raise."""
    import torch

    from pipeline.train.data import Sample
    from pipeline.train.packing import Bin, block_causal_mask, collate
    samples = [Sample([1, 2, 3], [IGNORE, 2, 3]), Sample([4, 5], [IGNORE, 5])]
    ids, labels, pos = collate(samples, Bin([0, 1], 5), 0, device="meta")
    assert {t.device.type for t in (ids, labels, pos)} == {"meta"}
    assert block_causal_mask(pos, torch.float32).device.type == "meta"
