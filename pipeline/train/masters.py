"""fp32 master weights in and out of a DeepSpeed engine, and its release.

Under bf16 DeepSpeed casts the module to bf16 and builds its fp32 master copy from those bf16
values: a phase that starts from fp32 weights (the student, or the previous phase's export) would
start from their bf16 rounding. ``load_masters`` writes the folder's fp32 values into the masters
instead. ``trainable_fp32`` reads the masters back for the export (live, from every rank's
partition: no checkpoint on disk is needed); frozen weights never change, so the export takes
them from the folder the phase started from, exactly as loaded.
"""

from __future__ import annotations

import json
from pathlib import Path


class _SafetensorsFolder:
    """Tensors of a Hugging Face folder's safetensors files, read one at a time (a 7B model is
    never loaded whole on every rank just to seed its partitions)."""

    def __init__(self, folder: Path):
        folder = Path(folder)
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            self.where = {k: folder / f for k, f in json.loads(index.read_text())["weight_map"].items()}
        elif (folder / "model.safetensors").is_file():
            from safetensors import safe_open
            with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
                self.where = {k: folder / "model.safetensors" for k in f.keys()}
        else:
            self.where = {}
        self._open: dict = {}

    def get(self, name: str):
        path = self.where.get(name)
        if path is None:
            return None
        if path not in self._open:
            from safetensors import safe_open
            self._open[path] = safe_open(str(path), framework="pt")
        return self._open[path].get_tensor(name)


def load_masters(engine, folder: Path) -> tuple[int, list[str]]:
    """Set every trainable parameter's fp32 master from ``folder``'s weights (upcast when the file
    holds less than fp32). Returns (parameters set, names the folder lacks: those keep DeepSpeed's
    masters from the cast). All ranks call it."""
    import torch
    import torch.distributed as dist
    from deepspeed.utils import safe_set_full_fp32_param
    source = _SafetensorsFolder(folder)
    done, lacking = 0, []
    for name, p in engine.module.named_parameters():
        if not p.requires_grad:
            continue
        value = source.get(name)
        if value is None or value.numel() != getattr(p, "ds_numel", p.numel()):
            lacking.append(name)
            continue
        value = value.to(device=engine.device, dtype=torch.float32).flatten()
        if hasattr(p, "ds_id"):  # ZeRO-3: each rank narrows its partition out of a padded whole
            world = dist.get_world_size(group=p.ds_process_group)
            padded = torch.zeros(p.partition_numel() * world, dtype=torch.float32, device=engine.device)
            padded[:value.numel()] = value
            value = padded
        safe_set_full_fp32_param(p, value)
        done += 1
    return done, lacking


def trainable_fp32(engine, rank: int) -> dict | None:
    """{name: fp32 master on the CPU} of every trainable parameter, on rank 0 (None elsewhere).
    A collective under ZeRO (each parameter is gathered from its partitions): all ranks call it."""
    import torch
    from deepspeed.utils import safe_get_full_fp32_param
    state = {} if rank == 0 else None
    for name, p in engine.module.named_parameters():
        if not p.requires_grad:
            continue
        v = safe_get_full_fp32_param(p)
        if v is None:  # no ZeRO and no bf16 optimizer: the module's own fp32 weight is the master
            if p.dtype != torch.float32:
                raise RuntimeError(f"{name}: a {p.dtype} weight without an fp32 master")
            v = p.detach()
        if state is not None:
            state[name] = v.detach().to("cpu", torch.float32).clone().reshape(getattr(p, "ds_shape", p.shape))
    return state


def release(engine) -> None:
    """Free what the engine holds beyond Python's reach (its optimizer's partitions and buffers,
    hooks, registries): without this a finished phase keeps its parameters and fp32 masters on
    the GPU while the next one loads (~29 GB per GPU at 7B under ZeRO-2)."""
    engine.destroy()
    for attr in ("optimizer", "lr_scheduler", "client_lr_scheduler", "basic_optimizer"):
        if hasattr(engine, attr):
            try:
                setattr(engine, attr, None)
            except (AttributeError, TypeError):
                pass
