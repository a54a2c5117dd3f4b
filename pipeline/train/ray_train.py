"""The thin Ray Train layer: the same loop in ``TorchTrainer`` workers (gloo on CPU, NCCL on
GPUs), on local Ray by default or the cluster in RAY_ADDRESS.

Every checkpoint the loop writes is reported with ``ray.train.report`` and so copied to the run's
``storage_path`` (a local folder by default; any pyarrow filesystem URI, e.g. s3://bucket/runs,
on a cluster): each worker uploads the files it wrote (its ZeRO shard; rank 0 also the model
states, the metrics and the phases already exported), and Ray merges them into one checkpoint.
When a worker dies, Ray restarts the group (``max_failures``) and every worker restores the
latest reported checkpoint into its run folder before the loop resumes from it, so no shared
filesystem is assumed between the nodes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .loop import TrainConfig, train


def _link_tree(src: Path, dst: Path) -> None:
    """``dst`` mirrors ``src`` with hard links (no copy of multi-GB shards), copies across devices."""
    for root, _, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            try:
                os.link(Path(root) / name, target / name)
            except OSError:
                shutil.copy2(Path(root) / name, target / name)


def _restore(checkpoint, out: Path, rank: int) -> None:
    """The latest reported checkpoint into the run folder: files it lacks, and `latest` pointing
    at the reported tag (a newer local one may be half-written by a worker that died)."""
    with checkpoint.as_directory() as d:
        d = Path(d)
        for root, _, files in os.walk(d):
            for name in files:
                src = Path(root) / name
                rel = src.relative_to(d)
                dst = out / rel
                if rel == Path("checkpoints/latest"):
                    continue
                if not dst.exists() or dst.stat().st_size != src.stat().st_size:
                    _atomic_copy(src, dst, rank)
        latest = d / "checkpoints" / "latest"
        if latest.exists():
            _atomic_copy(latest, out / "checkpoints" / "latest", rank)
            if rank == 0:  # what the run resumed from, for whoever reads the run folder
                import json
                import time
                with open(out / "ray_restores.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps({"tag": latest.read_text().strip(), "at": time.time(),
                                        "checkpoint": str(checkpoint.path)}) + "\n")


def _atomic_copy(src: Path, dst: Path, rank: int) -> None:
    """Workers on one node restore the same files at once: each writes its own temporary copy and
    renames it into place, so no worker ever reads a half-written file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.restore-{rank}")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _worker(config: dict) -> None:
    import ray.train

    cfg = TrainConfig.from_dict(config)
    out = Path(cfg.out)
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    latest = ray.train.get_checkpoint()
    if latest is not None:
        _restore(latest, out, rank)
    count = [0]

    def report(tag: str) -> None:
        count[0] += 1
        stage = out / "ray_stage" / f"r{rank}-{count[0]}"
        shutil.rmtree(stage, ignore_errors=True)
        _link_tree(out / "checkpoints" / tag, stage / "checkpoints" / tag)
        (stage / "checkpoints" / "latest").write_text(tag)
        if rank == 0:
            if (out / "metrics.jsonl").exists():
                shutil.copy2(out / "metrics.jsonl", stage / "metrics.jsonl")
            for phase in cfg.phases:
                if (out / phase.name / "sprout_phase.json").exists():
                    _link_tree(out / phase.name, stage / phase.name)
        ray.train.report({"tag": tag}, checkpoint=ray.train.Checkpoint.from_directory(str(stage)),
                         checkpoint_dir_name=f"{count[0]:05d}-{tag}")
        shutil.rmtree(stage, ignore_errors=True)

    train(cfg, progress=False, on_checkpoint=report)


def train_on_ray(config: TrainConfig, workers: int = 1, use_gpu: bool = False,
                 cpus_per_worker: float = 1.0, storage_path: str | None = None, max_failures: int = 2,
                 keep_checkpoints: int = 2) -> Path:
    """Train with ``workers`` Ray Train workers; checkpoints go to ``storage_path`` (default:
    the run folder's ray/ subfolder), and a worker that dies is replaced up to ``max_failures``
    times, resuming from the last reported checkpoint."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from ..distributed import init_ray
    init_ray()
    out = Path(config.out).resolve()
    config = TrainConfig.from_dict({**config.to_dict(), "out": str(out),
                                    "data_dir": str(Path(config.data_dir).resolve()),
                                    "student": str(Path(config.student).resolve())})
    trainer = TorchTrainer(
        _worker, train_loop_config=config.to_dict(),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        # fractional CPUs leave room for other Ray work on a 2-core machine (no Ray Data deadlock)
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus_per_worker}),
        run_config=RunConfig(storage_path=storage_path or str(out / "ray"), name="train",
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints)))
    result = trainer.fit()
    if result.error:
        raise result.error
    return out / config.phases[-1].name
