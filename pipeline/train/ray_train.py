"""The thin Ray Train layer: the same loop in ``TorchTrainer`` workers (gloo on CPU, NCCL on
GPUs), on local Ray by default or the cluster in RAY_ADDRESS.

Every checkpoint the loop writes is reported with ``ray.train.report`` and so copied to the run's
``storage_path`` (a local folder by default; the run's storage, e.g. s3://bucket/prefix, on a
cluster). Each worker uploads only the files it wrote, once: its own ZeRO shard (rank 0 also the
model states and the metrics), never its node-mates' shards or the exported phases. When a worker
dies, Ray restarts the group (``max_failures``) and each worker restores only what it needs: the
shared model states and its own shard of the latest reported checkpoint.

When the run's model folder is an object-store URI (``TrainConfig.out``; see pipeline/storage.py)
no disk is shared at all: each rank works in its own node-local folder, reads its data and the
student from the store, and phase exports go through the store (rank 0 uploads, the others
download before the next phase starts from it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

from .loop import SharedFolder, TrainConfig, train

_SHARD = re.compile(r"zero_pp_rank_(\d+)_")


def owned_by(name: str, rank: int) -> bool:
    """Whether checkpoint file ``name`` is ``rank``'s to upload: its own ZeRO partition
    (``zero_pp_rank_R_*``); rank 0 also the files every rank shares (``mp_rank_00_model_states.pt``)."""
    m = _SHARD.search(name)
    return int(m.group(1)) == rank if m else rank == 0


def needed_by(name: str, rank: int) -> bool:
    """Whether a rank restoring a checkpoint needs ``name``: the shared files and its own shard."""
    m = _SHARD.search(name)
    return int(m.group(1)) == rank if m else True


def _link(src: Path, dst: Path) -> None:
    """A hard link (no copy of multi-GB shards), a copy across devices."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class RayFiles(SharedFolder):
    """What crosses between ranks in a Ray Train run: checkpoint shards through the checkpoints
    reported to ``storage_path``; with ``store`` (the run's model folder in an object store) also
    the phase exports and the metrics."""

    def __init__(self, rank: int, store=None):
        self.rank, self.store = rank, store
        self.reported: dict[str, tuple] = {}  # tag -> (pyarrow filesystem, checkpoint folder)

    def finished(self, out: Path, phase: str, rank: int) -> bool:
        if self.store is None:
            return super().finished(out, phase, rank)
        if not self.store.exists(f"{phase}/sprout_phase.json"):  # uploaded last: the rest is there
            return False
        self.store.download(phase, out / phase)
        return True

    def gather_shards(self, ckpt_dir: Path, tag: str, rank: int) -> None:
        """Rank 0 converts the ZeRO checkpoint into a model: the other ranks' shards come from
        the checkpoint they reported (present already when every rank shares one folder)."""
        if rank != 0 or tag not in self.reported:
            return
        from ..storage import Storage
        fs, path = self.reported[tag]
        Storage.on(fs, path).download(f"checkpoints/{tag}", ckpt_dir / tag, keep=lambda n: _SHARD.search(n))

    def share_export(self, out: Path, phase: str, rank: int) -> None:
        if self.store is None:
            return
        import torch.distributed as dist
        if rank == 0:  # the marker last: a phase counts as finished only once all of it is there
            self.store.upload(out / phase, phase, last=("sprout_phase.json",))
            if (out / "metrics.jsonl").exists():
                self.store.upload(out / "metrics.jsonl", "metrics.jsonl")
        dist.barrier()
        if rank != 0:
            self.store.download(phase, out / phase)

    def restore(self, checkpoint, out: Path) -> str | None:
        """The latest reported checkpoint into this rank's run folder: the shared files and this
        rank's shard of its tag, and ``latest`` pointing at it (a newer local one may be half
        written by a worker that died)."""
        from ..storage import Storage
        src = Storage.on(checkpoint.filesystem, checkpoint.path)
        latest = src.read_bytes("checkpoints/latest")
        if latest is None:
            return None
        tag = latest.decode().strip()
        src.download(f"checkpoints/{tag}", out / "checkpoints" / tag, keep=lambda n: needed_by(n, self.rank))
        if self.rank == 0 and src.exists("metrics.jsonl"):
            done = _rows_of_exported_phases(out)
            (out / "metrics.jsonl").unlink(missing_ok=True)  # the curve up to the checkpoint, redone after
            src.download("", out, keep=lambda n: n == "metrics.jsonl")
            _append_missing(out / "metrics.jsonl", done)
        tmp = out / "checkpoints" / f".latest.restore-{self.rank}"
        tmp.write_text(tag)
        os.replace(tmp, out / "checkpoints" / "latest")
        self.reported[tag] = (checkpoint.filesystem, checkpoint.path)
        if self.rank == 0:  # what the run resumed from, for whoever reads the run folder
            with open(out / "ray_restores.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"tag": tag, "at": time.time(), "checkpoint": str(checkpoint.path)}) + "\n")
            if self.store is not None:
                self.store.upload(out / "ray_restores.jsonl", "ray_restores.jsonl")
        return tag


def _metric_rows(path: Path) -> list[dict]:
    """The rows of a metrics file, without a last line cut by a kill."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _rows_of_exported_phases(out: Path) -> list[dict]:
    """This folder's metric rows of phases it has exported. Ray may register checkpoints late: a
    group that died early in phase 2 can resume from a phase-1 checkpoint whose curve stops short,
    while the loop skips phase 1 (its export is here) and would never write the rest again."""
    return [r for r in _metric_rows(out / "metrics.jsonl")
            if (out / str(r.get("phase")) / "sprout_phase.json").exists()]


def _append_missing(path: Path, rows: list[dict]) -> None:
    have = {(r.get("phase"), r.get("step")) for r in _metric_rows(path)}
    extra = [r for r in rows if (r.get("phase"), r.get("step")) not in have]
    if extra:
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in extra)


def _localise(cfg: TrainConfig, rank: int) -> tuple[TrainConfig, object]:
    """A run whose folder is an object-store URI: this rank's own node-local folder, with the
    phases' data files and the student downloaded from the store."""
    from ..storage import Storage, cached_copy, scratch_dir
    store = Storage(cfg.out)
    key = hashlib.sha256(store.name().encode()).hexdigest()[:16]
    local = scratch_dir("train", f"{key}-rank{rank}")
    data = local / "data"
    wanted = {p.data for p in cfg.phases}
    Storage(cfg.data_dir).download("", data, keep=lambda n: n in wanted)
    student = cached_copy(Storage(cfg.student), "")
    return replace(cfg, out=str(local / "model"), data_dir=str(data), student=str(student)), store


def _worker(config: dict) -> None:
    import ray.train

    from ..storage import is_uri
    cfg = TrainConfig.from_dict(config)
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    store = None
    if is_uri(cfg.out):
        cfg, store = _localise(cfg, rank)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    files = RayFiles(rank, store)
    latest = ray.train.get_checkpoint()
    if latest is not None:
        files.restore(latest, out)
    storage = ctx.get_storage()
    count = [0]
    # testing aid: 'TAG:SECONDS', every rank waits after reporting TAG, in runs whose model folder
    # contains SPROUT_TEST_PAUSE_RUN: a window in which a test kills a node
    pause = os.environ.get("SPROUT_TEST_PAUSE_AFTER", "").rpartition(":")[::2] \
        if os.environ.get("SPROUT_TEST_PAUSE_RUN", "\0") in config["out"] else ("", "")

    def report(tag: str) -> None:
        count[0] += 1
        stage = out / "ray_stage" / f"r{rank}-{count[0]}"
        shutil.rmtree(stage, ignore_errors=True)
        for f in sorted((out / "checkpoints" / tag).rglob("*")):
            if f.is_file() and owned_by(f.name, rank):
                _link(f, stage / "checkpoints" / tag / f.relative_to(out / "checkpoints" / tag))
        if rank == 0:
            (stage / "checkpoints" / "latest").write_text(tag)
            if (out / "metrics.jsonl").exists():
                shutil.copy2(out / "metrics.jsonl", stage / "metrics.jsonl")
        name = f"{count[0]:05d}-{tag}"
        checkpoint = ray.train.Checkpoint.from_directory(str(stage)) if stage.exists() else None
        ray.train.report({"tag": tag}, checkpoint=checkpoint, checkpoint_dir_name=name)
        files.reported[tag] = (storage.storage_filesystem, f"{storage.experiment_fs_path}/{name}")
        shutil.rmtree(stage, ignore_errors=True)
        if pause[0] == tag:
            time.sleep(float(pause[1]))

    try:
        train(cfg, progress=False, on_checkpoint=report, files=files)
    except BaseException as e:  # Ray restarts the group; what failed is kept beside the restores
        _record_failure(out, rank, e, store)
        raise
    if store is not None:  # all of it is in the store now: the node-local folder goes
        shutil.rmtree(out.parent, ignore_errors=True)


def _record_failure(out: Path, rank: int, error: BaseException, store=None) -> None:
    """One line per failed attempt in ``ray_failures-rank<rank>.jsonl`` (a worker killed outright leaves
    none: Ray logs those). Best effort: it must not mask the error that Ray acts on."""
    import traceback
    try:
        line = {"rank": rank, "at": time.time(), "error": repr(error)[:500],
                "where": "".join(traceback.format_exception(error)[-3:])[-2000:]}
        name = f"ray_failures-rank{rank}.jsonl"
        with open(out / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        if store is not None:
            store.upload(out / name, name)
    except Exception:
        pass


def train_on_ray(config: TrainConfig, workers: int = 1, use_gpu: bool = False,
                 cpus_per_worker: float = 1.0, storage_path: str | None = None, max_failures: int = 2,
                 keep_checkpoints: int = 2, placement: str = "PACK") -> str:
    """Train with ``workers`` Ray Train workers; checkpoints go to ``storage_path`` (a folder or
    an object-store URI; default: the run folder's ray/ subfolder, or ray/ beside the model folder
    when that is in an object store), and a worker that dies is replaced up to ``max_failures``
    times, resuming from the last reported checkpoint. ``placement``: Ray's placement strategy
    for the workers (STRICT_SPREAD: one node each). Returns the final model folder (a path, or
    a URI when ``config.out`` is one)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from ..distributed import init_ray
    from ..storage import Storage, is_uri
    init_ray()
    remote = is_uri(config.out)
    if remote:
        store = Storage(config.out)
        ray_store = Storage(storage_path) if storage_path else store.sibling("ray")  # <run>/ray
        final = store.name(config.phases[-1].name)
    else:
        out = Path(config.out).resolve()
        config = TrainConfig.from_dict({**config.to_dict(), "out": str(out),
                                        "data_dir": str(Path(config.data_dir).resolve()),
                                        "student": str(Path(config.student).resolve())})
        ray_store = Storage(storage_path or str(out / "ray"))
        final = str(out / config.phases[-1].name)
    trainer = TorchTrainer(
        _worker, train_loop_config=config.to_dict(),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        # fractional CPUs leave room for other Ray work on a 2-core machine (no Ray Data deadlock)
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, placement_strategy=placement,
                                     resources_per_worker={"CPU": cpus_per_worker}),
        run_config=RunConfig(storage_path=ray_store.root, storage_filesystem=ray_store.fs, name="train",
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints)))
    result = trainer.fit()
    if result.error:
        raise result.error
    return final if remote else Path(final)
