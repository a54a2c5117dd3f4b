"""The training loop: DeepSpeed (ZeRO 0-3) over packed micro-batches, phase after phase, with
checkpoints that resume mid-phase. Runs in one process, under torchrun/deepspeed, or inside a
Ray Train worker (see ray_train.py)."""

from __future__ import annotations

import gc
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .recipe import BETAS, GRAD_CLIP, Phase


@dataclass(frozen=True)
class TrainConfig:
    student: str
    """Hugging Face model directory to start from."""
    out: str
    """Run folder: checkpoints/, one model folder per phase, metrics.jsonl."""
    phases: tuple = ()
    """Phase objects (see recipe.py), in order; each starts from the previous one's end."""
    data_dir: str = "."
    """Where the phases' data files are."""
    max_len: int = 1024
    """Longest sample in tokens; longer ones are dropped (counted) or truncated, see ``overlong``."""
    overlong: str = "drop"
    tokens_per_micro_batch: int | None = None
    """Packing budget of one micro-batch per worker; None: from the model's size and the GPU's
    memory (recipe.token_budget; 1,024 on a CPU)."""
    zero_stage: int = 2
    offload: bool = False
    """ZeRO CPU offload of optimizer state (compiles DeepSpeed's cpu_adam on first use)."""
    precision: str = "auto"
    """'bf16', 'fp32' or 'auto' (bf16 on a GPU that has it natively, compute capability 8+: not
    emulated on a V100/T4; fp32 elsewhere). Under bf16 the optimizer keeps fp32 master weights,
    gradients accumulate in fp32, and exports and phase hand-offs are the fp32 masters. ZeRO
    stage 0 has no fp32 master under bf16 in DeepSpeed, so bf16 runs it as stage 1 (one rank:
    the same thing; several: the optimizer state is partitioned)."""
    gradient_checkpointing: bool | None = None
    """Recompute each layer's activations in the backward pass instead of keeping them (~1/3 more
    compute, activations of one layer instead of all): what lets a 7B model hold 8k tokens per
    GPU. None: on when the model's size leaves the GPU too little room without it
    (recipe.token_budget); never on a CPU unless asked."""
    log_every: int = 10
    """Optimizer steps between the loop's waits on the device for the loss (one sync each); every
    step still gets its metrics row, written then, and at every checkpoint and phase end."""
    weight_decay: float = 0.0
    grad_clip: float = GRAD_CLIP
    """Clip the gradient's global norm to this (LAB's 1.0); 0: no clipping."""
    optimizer: str = "adamw"
    """'adamw' (LAB's), or 'sgd' (plain SGD: an update proportional to the gradient, which the
    loss-normalisation test compares; Adam's first step is nearly sign(gradient))."""
    seed: int = 42
    checkpoint_every: int = 50
    """Optimizer steps between checkpoints (and one at each phase end)."""
    keep_checkpoints: int = 2
    max_steps: int | None = None
    """Stop each phase after this many optimizer steps (smoke runs)."""
    train_layers: int = 0
    """Train only the top N transformer layers (and the final norm); 0: every weight (full
    fine-tuning). On CPU, the top layers of a pretrained student learn several times faster."""
    attention: str = "auto"
    """Attention kernel: 'auto' (flash_attention_2 on a GPU when flash-attn is installed, else
    'sprout_varlen': one causal sdpa call per packed sample, see attention.py), or any
    transformers attn_implementation ('sdpa', 'eager', 'flex_attention', 'flash_attention_2').
    Packed rows are padding-free on every path that keeps samples apart from position ids; a
    model that does not gets an explicit block-causal mask."""
    crash_at: str | None = None
    """Testing aid, 'PHASE:STEP': the last rank kills itself with SIGKILL after that optimizer
    step of that phase, once (a marker in the run folder), as a machine or worker would die."""
    stop_after_steps: int | None = None
    """Testing aid: end the process abruptly after this many optimizer steps in total."""
    system_prompt: str | None = None
    """The system prompt the data was written with, trained with and carried by every exported
    model as its chat template's default (see chat_format.py); None: the data's most frequent one."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["phases"] = [asdict(p) for p in self.phases]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["phases"] = tuple(Phase(**p) if isinstance(p, dict) else p for p in d.get("phases", ()))
        return cls(**d)


def _announce_op_build() -> None:
    """DeepSpeed compiles its CPU communication op with gcc on first use (~60 s, silent): say so."""
    import sys
    import torch
    if torch.cuda.is_available() or os.environ.get("RANK", "0") != "0":
        return
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions")
    if not any(root.glob("*/deepspeed_shm_comm/*.so")):
        print("[train] first use on this machine: DeepSpeed compiles its CPU communication op with gcc "
              "(~60 s, once; cached in ~/.cache/torch_extensions)", file=sys.stderr, flush=True)


def _dist_setup():
    import deepspeed
    import torch
    import torch.distributed as dist
    _announce_op_build()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():  # before any collective: NCCL uses the current device
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    if not dist.is_initialized():
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun, deepspeed, Ray Train
            deepspeed.init_distributed(dist_backend=backend)
        else:
            # A plain single process: a private rendezvous on loopback. Nothing is written to the
            # environment, so child processes never inherit a port this process holds.
            import socket
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            os.environ.setdefault("LOCAL_RANK", "0")
            dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
            deepspeed.init_distributed(dist_backend=backend)
    return dist.get_rank(), dist.get_world_size()


def _precision(config: TrainConfig) -> str:
    if config.precision != "auto":
        return config.precision
    return "bf16" if native_bf16() else "fp32"


def cpu_bf16() -> bool:
    """bf16 matrix units on this CPU (Intel AMX, Sapphire Rapids and later), which oneDNN uses
    for bf16 matmuls: SmolLM2-135M's top 15 layers trained 1.47x the fp32 loss tokens/s in bf16
    on 2 such cores, at the same final loss (bench/train_precision.py, 400 samples; 1.9x for one
    fixed-shape step). Without AMX bf16 is emulated or only vectorised: fp32 is the safe choice."""
    import torch
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe and probe()) and torch.backends.mkldnn.is_available()
    except RuntimeError:
        return False


def native_bf16() -> bool:
    """bf16 in hardware (Ampere and later). torch's is_bf16_supported() also counts emulation,
    which would pick bf16 on a V100 or T4 and run it slowly."""
    import inspect

    import torch
    if not torch.cuda.is_available():
        return False
    if "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.cuda.get_device_capability()[0] >= 8


def _attention(config: TrainConfig) -> str:
    from .attention import NAME, register
    register()
    if config.attention != "auto":
        return config.attention
    import torch
    if torch.cuda.is_available():
        try:
            import flash_attn  # noqa: F401
            return "flash_attention_2"
        except ImportError:
            pass
    return NAME


def _budget(config: TrainConfig, start_from: Path, world: int, stage: int):
    """The recipe's micro-batch tokens and gradient checkpointing for this model on this GPU,
    where the config leaves them open."""
    import torch
    from transformers import AutoConfig

    from .recipe import TokenBudget, token_budget
    if config.tokens_per_micro_batch is not None and config.gradient_checkpointing is not None:
        return TokenBudget(config.tokens_per_micro_batch, config.gradient_checkpointing, "set")
    gpu_bytes = None
    if torch.cuda.is_available():
        gpu_bytes = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    b = token_budget(AutoConfig.from_pretrained(start_from), gpu_bytes, world, stage, config.max_len,
                     config.offload, config.gradient_checkpointing)
    if config.tokens_per_micro_batch is not None:
        return TokenBudget(config.tokens_per_micro_batch, b.gradient_checkpointing,
                           f"{config.tokens_per_micro_batch:,} tokens per micro-batch (set)"
                           f"{', gradient checkpointing' if b.gradient_checkpointing else ''}")
    return b


def _schedule(total: int, warmup: int, min_ratio: float):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def _rng_state() -> dict:
    import numpy as np
    import torch
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng(state: dict) -> None:
    import numpy as np
    import torch
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class MetricsLog:
    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, row: dict) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


class SharedFolder:
    """Where a run's files go between ranks when every rank sees the run folder (one node, or a
    shared disk): nothing to move. ray_train.py's object-store version moves them through a
    bucket, so that no rank reads a file another node wrote."""

    def finished(self, out: Path, phase: str, rank: int) -> bool:
        """The phase was exported in an earlier attempt; its folder is at ``out/phase`` on this rank."""
        return (out / phase / "sprout_phase.json").exists()

    def gather_shards(self, ckpt_dir: Path, tag: str, rank: int) -> None:
        """Before rank 0 converts checkpoint ``tag`` into a model: every rank's shard is there."""

    def share_export(self, out: Path, phase: str, rank: int) -> None:
        """After rank 0 exported ``out/phase``: every rank can load it (the next phase starts there)."""


def train(config: TrainConfig, progress: bool = True, on_checkpoint=None, files: SharedFolder | None = None) -> Path | None:
    """Run every phase; returns the final model folder (on rank 0). ``on_checkpoint(tag)`` is
    called on every rank after each checkpoint and after each phase's export (Ray Train reports
    them to its storage); ``files`` moves exports and shards between ranks (default: a shared folder)."""
    import torch.distributed as dist

    rank, world = _dist_setup()
    files = files or SharedFolder()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(out / "metrics.jsonl", rank == 0)
    start_from = Path(config.student)
    total_steps_done = 0
    for phase in config.phases:
        if files.finished(out, phase.name, rank):  # finished in an earlier run: resume after it
            start_from = out / phase.name
            continue
        start_from, steps = _train_phase(config, phase, start_from, rank, world, metrics, total_steps_done, progress,
                                         on_checkpoint, files)
        _collect()  # the phase's engine is gone (released at its end): give its memory back now
        total_steps_done += steps
        dist.barrier()
        if on_checkpoint:
            on_checkpoint(f"{phase.name}-step{steps}")
    return start_from if rank == 0 else None


def _collect() -> None:
    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_phase(config: TrainConfig, phase: Phase, start_from: Path, rank: int, world: int,
                 metrics: MetricsLog, steps_before: int, progress: bool, on_checkpoint=None,
                 files: SharedFolder | None = None):
    import deepspeed
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .data import IGNORE
    from .masters import load_masters, release
    from .packing import collate_micro, micro_loss, packing_aware, plan_epoch
    from .shared_data import phase_samples

    out = Path(config.out)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(start_from)
    _stamp_system_prompt(tokenizer, config)  # trained as exported: a row without one gets the same prompt
    attention = _attention(config)
    # rank 0 tokenises (once per run: cached in the run folder), every other rank receives it
    samples, report = phase_samples(tokenizer, start_from, Path(config.data_dir) / phase.data, config.max_len,
                                    config.overlong, out / "tokens", rank, world)
    if not samples:
        from .data import DatasetError
        raise DatasetError(f"{phase.data}: no usable samples ({report.dropped_too_long} over "
                           f"{config.max_len} tokens, {report.dropped_no_assistant} without an assistant turn)")
    lengths = [len(s) for s in samples]
    precision = _precision(config)
    # bf16 without ZeRO has no fp32 master in DeepSpeed (the optimizer would update bf16 weights):
    # stage 1 is the stage-0 of bf16 (BF16_Optimizer: fp32 masters, fp32 gradient accumulation)
    stage = 1 if precision == "bf16" and config.zero_stage == 0 else config.zero_stage
    budget = _budget(config, start_from, world, stage)
    if rank == 0 and budget.why != "CPU":
        print(f"[{phase.name}] {budget.why}", flush=True)
    micro_tokens = budget.tokens
    # loss-token count per sample after the next-token shift (what loss_sum counts)
    targets = [sum(1 for x in s.labels[1:] if x != IGNORE) for s in samples]
    steps_per_epoch = len(plan_epoch(lengths, micro_tokens, world, 0, config.seed)[0])
    per_micro = len(samples) / max(1, steps_per_epoch * world)
    accum = max(1, round(phase.effective_batch / max(1e-9, per_micro * world)))
    opt_steps_per_epoch = math.ceil(steps_per_epoch / accum)
    total = opt_steps_per_epoch * phase.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    warmup = max(1, int(total * phase.warmup_ratio))
    zero = {"stage": stage}
    if config.offload:
        zero["offload_optimizer"] = {"device": "cpu"}
    ds_config = {
        "train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": accum,
        "gradient_clipping": config.grad_clip, "zero_optimization": zero, "steps_per_print": 10 ** 9,
        "bf16": {"enabled": precision == "bf16"}, "wall_clock_breakdown": False,
        # bf16 gradients summed over ~30-100 micro-batches lose the small ones: accumulate in fp32
        **({"data_types": {"grad_accum_dtype": "fp32"}} if precision == "bf16" else {}),
        "zero_allow_untested_optimizer": config.optimizer != "adamw",
        # torch's AdamW: DeepSpeed's fused/cpu Adam would be compiled with gcc on first use
        "optimizer": {"type": "AdamW", "params": {"lr": phase.lr, "betas": list(BETAS),
                                                  "weight_decay": config.weight_decay,
                                                  "torch_adam": not config.offload}}
        if config.optimizer == "adamw" else {"type": "SGD", "params": {"lr": phase.lr}},
    }
    hf_zero3 = None
    if stage == 3:
        # ZeRO-3: transformers loads the weights into deepspeed.zero.Init, each rank holding only
        # its shard, never the whole model (it sees this config while the object lives)
        from transformers.integrations.deepspeed import HfDeepSpeedConfig
        hf_zero3 = HfDeepSpeedConfig(ds_config)
    model = AutoModelForCausalLM.from_pretrained(start_from, dtype=torch.float32, attn_implementation=attention)
    trainable = freeze_below(model, config.train_layers)
    if budget.gradient_checkpointing:
        model.config.use_cache = False
        # non-reentrant: works with frozen layers (inputs without grad) and ZeRO-3's gathers
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    schedule = _schedule(total, warmup, phase.min_lr_ratio)
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_config,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule))
    del model  # the engine holds it (engine.module): no second reference to outlive the phase
    if precision == "bf16":  # masters from the fp32 weights, not from their bf16 cast
        _, lacking = load_masters(engine, start_from)
        if lacking and rank == 0:
            print(f"[{phase.name}] {start_from} has no fp32 safetensors for {len(lacking)} trainable weights "
                  f"(e.g. {lacking[0]}): their fp32 masters start from the bf16 cast", flush=True)
    explicit_mask = not packing_aware(engine.module, engine.device)
    if explicit_mask and rank == 0:
        print(f"[{phase.name}] {type(engine.module).__name__} with {attention} attention does not keep packed samples "
              "apart from position ids: using an explicit block-causal mask (dense, slower)", flush=True)
    ckpt_dir = out / "checkpoints"
    start_epoch, start_micro, opt_step = 0, 0, 0
    latest = ckpt_dir / "latest"
    if latest.exists() and latest.read_text().strip().startswith(f"{phase.name}-"):
        _, client = engine.load_checkpoint(str(ckpt_dir), tag=latest.read_text().strip())
        start_epoch, start_micro, opt_step = client["epoch"], client["micro"], client["opt_step"]
        _set_rng(client["rng"])
        if rank == 0:
            print(f"[{phase.name}] resumed at epoch {start_epoch}, micro-batch {start_micro}, step {opt_step}", flush=True)

    bar = None
    if rank == 0 and progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=total, initial=opt_step, desc=f"train {phase.name}", unit="step")
        except ImportError:
            pass
    # The loop never waits on the device for a number except to log: the counts of every window
    # come from the epoch's plan (every rank knows every rank's bins), the loss stays on the
    # device, and each `log_every` steps one all-reduce + one read fetches the pending losses.
    pending: list[tuple[dict, object]] = []  # (row without its loss, the window's loss sum on this rank)
    t0 = time.perf_counter()
    batch = loss = window_loss = None

    def flush() -> None:
        nonlocal t0
        if not pending:
            return
        sums = torch.stack([x for _, x in pending]).float()
        dist.all_reduce(sums)
        elapsed = (time.perf_counter() - t0) / len(pending)  # the device is done: a true average
        for (row, _), total_loss in zip(pending, sums.tolist()):
            row.update(loss=total_loss / max(1, row["loss_tokens"]), seconds=elapsed,
                       tokens_per_s=row["tokens"] / max(elapsed, 1e-9))
            metrics.write(row)
        if bar:
            bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}")
            bar.update(len(pending))
        pending.clear()
        t0 = time.perf_counter()

    engine.train()
    finished = opt_step >= total
    for epoch in range(start_epoch, phase.epochs):
        if finished:
            break
        plans = plan_epoch(lengths, micro_tokens, world, epoch, config.seed)
        plan = plans[rank]
        first = start_micro if epoch == start_epoch else 0
        for micro in range(first, len(plan)):
            # An optimizer step is a window of `accum` micro-batches inside one epoch (the last
            # one may be shorter: it is applied, not dropped). Its gradient is the sum of token
            # losses over the whole window on every rank divided by the window's loss-token count
            # across ranks: one token-mean, not a mean of per-micro-batch means.
            start = first + (micro - first) // accum * accum
            end = min(start + accum, len(plan))
            if micro == start:
                bins = [b for r in plans for b in r[start:end]]
                window_tokens = sum(targets[i] for b in bins if b for i in b.samples)
                window_total = float(max(1, window_tokens))
                window_real = sum(b.tokens for b in bins if b)
                window_processed = sum(b.tokens if b else 1 for b in bins)  # an empty step is one pad
                window_loss = None
            boundary = micro == end - 1
            engine.set_gradient_accumulation_boundary(boundary)
            # the row, its targets and sample bounds, built on the host, copied without blocking
            batch = collate_micro(samples, plan[micro], tokenizer.pad_token_id, device=engine.device)
            loss = micro_loss(engine, batch, explicit_mask)
            # x world: DeepSpeed averages gradients over ranks; no division by the accumulation
            # steps (scale_wrt_gas=False): the window's token count already normalises
            engine.backward(loss * world / window_total, scale_wrt_gas=False)
            engine.step()
            window_loss = loss.detach() if window_loss is None else window_loss + loss.detach()
            if not boundary:
                continue
            opt_step += 1
            pending.append(({"phase": phase.name, "step": opt_step, "epoch": epoch, "loss": None,
                             "lr": scheduler.get_last_lr()[0], "tokens_per_s": None,
                             "padding_efficiency": window_real / max(1, window_processed),
                             "loss_tokens": window_tokens, "tokens": window_real, "seconds": None,
                             "workers": world, "accumulation": accum}, window_loss))
            checkpoint = opt_step % config.checkpoint_every == 0 or opt_step >= total
            crash = config.crash_at == f"{phase.name}:{opt_step}" and rank == world - 1
            stop = bool(config.stop_after_steps and steps_before + opt_step >= config.stop_after_steps)
            if opt_step % max(1, config.log_every) == 0 or checkpoint or opt_step >= total or stop \
                    or config.crash_at == f"{phase.name}:{opt_step}":
                flush()  # (a collective: every rank flushes at the same steps)
            if checkpoint:
                _checkpoint(engine, ckpt_dir, phase, epoch, micro + 1, opt_step, config, rank)
                if on_checkpoint:
                    on_checkpoint(f"{phase.name}-step{opt_step}")
            if crash:
                marker = out / f".crashed-{phase.name}-{opt_step}"
                if not marker.exists():
                    marker.touch()
                    import signal
                    os.kill(os.getpid(), signal.SIGKILL)
            if stop:
                dist.barrier()
                os._exit(3)  # simulate a killed run (tests)
            if opt_step >= total:
                finished = True
                break
    flush()
    if bar:
        bar.close()
    if not (ckpt_dir / "latest").exists() or (ckpt_dir / "latest").read_text().strip() != f"{phase.name}-step{opt_step}":
        _checkpoint(engine, ckpt_dir, phase, phase.epochs, 0, opt_step, config, rank)
    if hf_zero3 is not None:  # the exported model is built whole, outside zero.Init
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config
        unset_hf_deepspeed_config()
        del hf_zero3
    files = files or SharedFolder()
    # the export gathers the fp32 masters live from every rank (masters.trainable_fp32), so no
    # rank needs another's checkpoint shard here
    final = _export(engine, engine.module, tokenizer, out / phase.name, ckpt_dir, f"{phase.name}-step{opt_step}", config,
                    rank, start_from)
    if rank == 0:
        info = {"phase": asdict(phase), "steps": opt_step, "accumulation": accum, "workers": world,
                "samples": report.samples, "dropped_too_long": report.dropped_too_long,
                "truncated": report.truncated, "started_from": str(start_from), "precision": precision,
                "zero_stage": config.zero_stage, "zero_stage_run": stage, "train_layers": config.train_layers,
                "attention": attention, "packed_attention": "explicit mask" if explicit_mask else "position ids",
                "trainable_parameters": trainable, "gradient_checkpointing": budget.gradient_checkpointing,
                "grad_accum_dtype": "fp32" if precision == "bf16" else "fp32 (fp32 training)",
                "tokens_per_micro_batch": micro_tokens}
        (out / phase.name / "sprout_phase.json").write_text(json.dumps(info, indent=2))
    # free the engine now: its parameters, gradients and fp32 masters would otherwise stay on the
    # GPU (reachable from DeepSpeed's hooks and registries) while the next phase loads
    release(engine)
    del engine, optimizer, scheduler, batch, loss, window_loss
    dist.barrier()
    files.share_export(out, phase.name, rank)
    return final, opt_step


def freeze_below(model, layers: int) -> int:
    """Leave only the top ``layers`` decoder layers and the final norm trainable (0: all);
    returns the number of trainable parameters."""
    if layers:
        blocks = getattr(getattr(model, "model", None), "layers", None)
        if blocks is None:
            raise ValueError(f"train_layers={layers}: {type(model).__name__} has no model.layers to choose from")
        for p in model.parameters():
            p.requires_grad_(False)
        keep = list(blocks[-layers:])
        norm = getattr(model.model, "norm", None)
        for module in keep + ([norm] if norm is not None else []):
            for p in module.parameters():
                p.requires_grad_(True)
    # under ZeRO-3 a parameter holds only its shard: ds_numel is its whole size
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)


def _stamp_system_prompt(tokenizer, config: TrainConfig) -> None:
    from .chat_format import data_system_prompt, stamp
    stamp(tokenizer, config.system_prompt or data_system_prompt(
        [Path(config.data_dir) / p.data for p in config.phases]))


class ExportError(RuntimeError):
    """The trained weights do not match the model they are exported into."""


def _check_keys(fresh, missing: list[str], unexpected: list[str]) -> None:
    """load_state_dict(strict=False)'s report, strict except for tied weights (an lm_head that
    is the embedding matrix is saved once)."""
    every = {n for n, _ in fresh.named_parameters(remove_duplicate=False)}
    tied = every - {n for n, _ in fresh.named_parameters()}
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ExportError(f"exported weights do not match {type(fresh).__name__}: missing {missing[:5]}"
                          f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}")


def _checkpoint(engine, ckpt_dir: Path, phase: Phase, epoch: int, micro: int, opt_step: int, config: TrainConfig,
                rank: int) -> None:
    tag = f"{phase.name}-step{opt_step}"
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={
        "epoch": epoch, "micro": micro, "opt_step": opt_step, "rng": _rng_state()})
    # DeepSpeed writes `latest` and rank 0 used to prune, both on rank 0's disk only: every rank
    # does both in its own folder (a rank on another node resumes from and cleans up its own)
    tmp = ckpt_dir / f".latest.{rank}"
    tmp.write_text(tag)
    os.replace(tmp, ckpt_dir / "latest")
    prune_checkpoints(ckpt_dir, config.keep_checkpoints)


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Remove all but the newest ``keep`` checkpoint tags. Ranks sharing one folder prune it at
    once: a tag another rank has just removed is skipped (a stat of one killed a rank of a
    two-worker CI run, and Ray restarted the whole group)."""
    dated = []
    for p in ckpt_dir.iterdir():
        try:
            if p.is_dir():
                dated.append((p.stat().st_mtime, p.name))
        except FileNotFoundError:
            continue
    for _, name in sorted(dated)[:-keep]:
        shutil.rmtree(ckpt_dir / name, ignore_errors=True)


def _export(engine, model, tokenizer, dest: Path, ckpt_dir: Path, tag: str, config: TrainConfig, rank: int,
            start_from: Path | None = None) -> Path:
    """A plain Hugging Face directory (safetensors) that from_pretrained loads, in fp32.

    Trained weights are the optimizer's fp32 masters, gathered live from every rank's partition
    (under bf16 the module holds bf16 values, and under ZeRO-3 only a shard). Frozen weights
    never change: they are taken from the folder the phase started from, as it was loaded
    (never from the bf16 module). Every key must match (tied weights aside)."""
    import torch
    import torch.distributed as dist

    from .masters import trainable_fp32
    dist.barrier()
    state = trainable_fp32(engine, rank)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    if rank == 0:
        from transformers import AutoModelForCausalLM
        if frozen:  # the starting folder supplies the frozen weights, bit for bit
            fresh = AutoModelForCausalLM.from_pretrained(start_from or config.student, dtype=torch.float32)
        else:
            fresh = AutoModelForCausalLM.from_config(model.config)
        missing, unexpected = fresh.load_state_dict(state, strict=False)
        _check_keys(fresh, [k for k in missing if k not in frozen], unexpected)
        fresh.tie_weights()
        dest.mkdir(parents=True, exist_ok=True)
        fresh.save_pretrained(dest, safe_serialization=True)
        tokenizer.save_pretrained(dest)
        from .student import MARKER, describe
        parent = describe(Path(config.student))  # a trained child is still "SmolLM2" or "tiny"
        (dest / MARKER).write_text(json.dumps({**parent, "fine_tuned_from": config.student}, indent=2))
    dist.barrier()
    return dest
