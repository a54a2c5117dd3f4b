"""The thin Ray layer: distribute a per-item function with Ray Data. The functions themselves
are plain and run without Ray in tests."""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator


def init_ray(num_cpus: int | None = None) -> None:
    """Connect to RAY_ADDRESS, or start local Ray on loopback. Local Ray gets a few more logical
    CPUs than the machine has: with 2 cores, Ray Data steps can otherwise deadlock."""
    import ray
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or max(4, (os.cpu_count() or 2) + 2), include_dashboard=False,
                 log_to_driver=False)


def ray_map(items: list, fn: Callable, concurrency: int | None = None) -> Iterator:
    """Apply ``fn`` to every item as a Ray Data pipeline; yields results as they complete.

    Items and results cross process boundaries, so both must be picklable."""
    import ray
    init_ray()
    ds = ray.data.from_items([{"i": i} for i in range(len(items))])
    shipped = ray.put(items)

    def apply(row: dict) -> dict:
        return {"i": row["i"], "result": fn(ray.get(shipped)[row["i"]])}

    ds = ds.repartition(max(1, len(items))).map(apply, concurrency=concurrency)
    for row in ds.iter_rows():
        yield row["result"]


def ray_runner(teacher) -> Callable[[Iterable, Callable], Iterator]:
    """A ``runner`` for ``pipeline.sdg.generate.generate`` that spreads leaves over Ray."""
    def run(items, fn):
        return ray_map(list(items), fn)
    return run
