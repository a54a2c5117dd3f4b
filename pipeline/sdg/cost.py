"""What a run cost its teacher and judge endpoints: one line for people, and an optional MLflow
record (when ``mlflow`` is installed and MLFLOW_TRACKING_URI is set)."""

from __future__ import annotations

import os

from .pool import Cost


def of(teacher) -> Cost:
    """A teacher's cumulative cost so far; zero for one without a pool (offline, local model)."""
    return getattr(teacher, "cost", None) or Cost()


def text(cost: dict | None) -> str:
    c = Cost.of(cost)
    if not c.requests and not c.errors:
        return "no teacher requests"
    return (f"{c.requests:,} requests ({c.retries:,} retries, {c.throttled:,} throttled, {c.errors:,} errors), "
            f"{c.prompt_tokens:,} prompt + {c.completion_tokens:,} completion tokens, {c.seconds:,.1f} s")


def log_mlflow(manifest: dict, log=print) -> bool:
    """Log each stage's and each generated leaf's cost as metrics of one MLflow run named after the
    Sprout run. Nothing happens (False) unless mlflow imports and MLFLOW_TRACKING_URI is set."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return False
    try:
        import mlflow
    except ImportError:
        return False
    metrics = {}
    for stage, done in manifest.get("stages", {}).items():
        for k, v in (done.get("cost") or {}).items():
            metrics[f"{stage}.{k}"] = float(v)
        for k, v in (done.get("judge_cost") or {}).items():  # the judge, asked during generation
            metrics[f"{stage}.judge.{k}"] = float(v)
        for path, leaf in (done.get("leaf_cost") or {}).items():
            name = path.removesuffix("/qna.yaml").replace("/", ".")
            for k, v in leaf.items():
                if isinstance(v, (int, float)):
                    metrics[f"{stage}.leaf.{name}.{k}"] = float(v)
    try:
        with mlflow.start_run(run_name=manifest.get("run_id")):
            cfg = manifest.get("config") or {}
            mlflow.log_params({k: str(cfg.get(k)) for k in ("teacher", "teacher_model", "judge", "teacher_concurrency")})
            mlflow.log_metrics(metrics)
    except Exception as e:  # a tracking server down never fails a finished run
        log(f"mlflow: not logged ({type(e).__name__}: {e})")
        return False
    return True
