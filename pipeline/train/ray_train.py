"""The thin Ray Train layer: the same loop in ``TorchTrainer`` workers (gloo on CPU, NCCL on
GPUs), on local Ray by default or the cluster in RAY_ADDRESS."""

from __future__ import annotations

from pathlib import Path

from .loop import TrainConfig, train


def _worker(config: dict) -> None:
    train(TrainConfig.from_dict(config), progress=False)


def train_on_ray(config: TrainConfig, workers: int = 1, use_gpu: bool = False,
                 cpus_per_worker: float = 1.0) -> Path:
    from ray.train import RunConfig, ScalingConfig
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
        run_config=RunConfig(storage_path=str(out / "ray"), name="train"))
    result = trainer.fit()
    if result.error:
        raise result.error
    return out / config.phases[-1].name
