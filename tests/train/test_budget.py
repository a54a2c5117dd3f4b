"""The recipe's micro-batch budget and gradient checkpointing by model size, and the phase data
tokenised once and shared (its cache and wire format)."""

import json

from transformers import LlamaConfig

from pipeline.train.data import read_messages, tokenize_dataset
from pipeline.train.recipe import CPU_TOKENS_PER_MICRO_BATCH, count_parameters, token_budget
from pipeline.train.shared_data import _pack, _unpack, phase_samples
from tests.fakes.models import tiny_model
from tests.train.test_train import convo, write_data

GIB = 2 ** 30
LLAMA_7B = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32000)
ONE_B = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                    num_key_value_heads=4, vocab_size=49152, tie_word_embeddings=True)


def test_parameter_count_matches_the_model():
    from transformers import LlamaForCausalLM
    small = LlamaConfig(hidden_size=64, intermediate_size=176, num_hidden_layers=3, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=500, tie_word_embeddings=True)
    assert count_parameters(small)[0] == sum(p.numel() for p in LlamaForCausalLM(small).parameters())
    assert 6.7e9 < count_parameters(LLAMA_7B)[0] < 6.8e9


def test_budget_grows_with_memory_and_turns_checkpointing_on_for_large_models():
    seven = token_budget(LLAMA_7B, 80 * GIB, workers=8, zero_stage=2, max_len=4096)
    assert seven.gradient_checkpointing and seven.tokens >= 8192  # 7B at 8k tokens per GPU needs it
    one = token_budget(ONE_B, 80 * GIB, workers=8, zero_stage=2, max_len=4096)
    assert not one.gradient_checkpointing and one.tokens >= 8192
    bigger = token_budget(ONE_B, 139 * GIB, workers=8, zero_stage=2, max_len=4096)
    assert bigger.tokens > one.tokens and bigger.tokens % 256 == 0
    forced = token_budget(ONE_B, 80 * GIB, workers=8, zero_stage=2, max_len=4096, checkpointing=True)
    assert forced.gradient_checkpointing and forced.tokens > one.tokens  # less kept per token
    # ZeRO-3 shards the weights too: more room than ZeRO-2 on the same GPUs
    assert token_budget(LLAMA_7B, 80 * GIB, 8, 3, 4096).tokens > seven.tokens
    # never below one sample, and says so when even that may not fit
    tight = token_budget(LLAMA_7B, 24 * GIB, workers=1, zero_stage=2, max_len=4096)
    assert tight.tokens == 4096 and "may not fit" in tight.why
    cpu = token_budget(ONE_B, None, max_len=512)
    assert cpu.tokens == CPU_TOKENS_PER_MICRO_BATCH and not cpu.gradient_checkpointing


def test_phase_data_is_tokenised_once_and_cached(tmp_path):
    model = tiny_model(tmp_path / "student")
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model)
    data = write_data(tmp_path / "data", n1=9, n2=1) / "phase1.jsonl"
    want, report = tokenize_dataset(tok, read_messages(data), 256)
    got, got_report = _unpack(_pack(want, report))
    assert [(s.input_ids, s.labels) for s in got] == [(s.input_ids, s.labels) for s in want] and got_report == report
    first, _ = phase_samples(tok, model, data, 256, "drop", tmp_path / "tokens", rank=0, world=1)
    cached = list((tmp_path / "tokens").glob("phase1-*.npz"))
    assert len(cached) == 1 and [s.input_ids for s in first] == [s.input_ids for s in want]

    class NoTokenizer:  # a second read must come from the cache, not from tokenising again
        def __getattr__(self, name):
            raise AssertionError("tokenised twice")
    again, _ = phase_samples(NoTokenizer(), model, data, 256, "drop", tmp_path / "tokens", rank=0, world=1)
    assert [s.labels for s in again] == [s.labels for s in want]
    # other data, another max_len: another key
    with open(data, "a") as f:
        f.write(json.dumps({"messages": convo(99)}) + "\n")
    more, _ = phase_samples(tok, model, data, 256, "drop", tmp_path / "tokens", rank=0, world=1)
    assert len(more) == len(want) + 1 and len(list((tmp_path / "tokens").glob("phase1-*.npz"))) == 2


def test_cpu_knowledge_epochs_follow_the_data_size():
    """More varied knowledge samples, fewer passes: about CPU_KNOWLEDGE_PASSES samples seen in
    phase 1, between 2 and 4 epochs; skills keep their one epoch; --epochs still overrides."""
    from pipeline.train.recipe import CPU_KNOWLEDGE_PASSES, plan
    epochs = lambda n, **kw: [p.epochs for p in plan("cpu", {"knowledge": n, "skills": 90}, True, **kw).phases]  # noqa: E731
    assert epochs(100) == [4, 1]
    assert epochs(CPU_KNOWLEDGE_PASSES // 3) == [3, 1]
    assert epochs(5000) == [2, 1]
    assert epochs(5000, epochs=5) == [5, 5]
    assert [p.epochs for p in plan("lab", {"knowledge": 5000}, True, gpu=True).phases] == [7]
    # knowledge at 3e-4 (measured against 2e-4 and 4e-4, see the recipe), skills gentler; --lr overrides both
    assert [p.lr for p in plan("cpu", {"knowledge": 100, "skills": 90}, True).phases] == [3e-4, 5e-5]
    assert [p.lr for p in plan("cpu", {"knowledge": 100, "skills": 90}, True, lr=1e-4).phases] == [1e-4, 1e-4]


def test_the_cpu_recipe_trains_in_bf16_only_where_the_cpu_has_amx():
    """bf16 (fp32 masters) where the CPU has bf16 matrix units, fp32 elsewhere; the GPU and smoke
    recipes leave it to the loop (bf16 on a GPU that has it natively); the flag overrides."""
    from pipeline.train.loop import cpu_bf16
    from pipeline.train.recipe import plan
    sizes = {"knowledge": 100, "skills": 90}
    assert plan("cpu", sizes, True, cpu_bf16=True).precision == "bf16"
    assert plan("cpu", sizes, True, cpu_bf16=False).precision == "fp32"
    assert plan("cpu", sizes, True).precision == ("bf16" if cpu_bf16() else "fp32")
    assert plan("lab", sizes, True, gpu=True, cpu_bf16=True).precision == "auto"
    assert plan("auto", sizes, False, cpu_bf16=True).precision == "auto"  # tiny
    assert "bf16" in plan("cpu", sizes, True, cpu_bf16=True).describe(30)
    # asked for: kept whatever the recipe and the CPU, and named in the recipe text
    assert plan("cpu", sizes, True, precision="fp32", cpu_bf16=True).precision == "fp32"
    assert plan("auto", sizes, False, precision="bf16").describe().startswith("tiny (every weight, bf16;")


def test_sprout_run_and_train_take_precision_into_the_recipe(tmp_path):
    from pipeline.cli import build_parser
    for cmd in (["run", "taxonomy"], ["train", str(tmp_path)]):
        args = build_parser().parse_args(cmd + ["--precision", "fp32"])
        assert args.precision == "fp32"
        assert build_parser().parse_args(cmd).precision == "auto"
