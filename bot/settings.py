"""Bot settings, read once from the environment by an app factory (never at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


class SettingsError(Exception):
    """Missing or contradictory settings; the message lists every problem."""


@dataclass(frozen=True)
class Settings:
    webhook_secret: str = field(repr=False)
    """Shared secret of the webhook (SPROUT_WEBHOOK_SECRET); deliveries are signed with it."""
    github_token: str | None = field(default=None, repr=False)
    """A personal or fine-grained token (SPROUT_GITHUB_TOKEN): the simple mode."""
    app_id: int | None = None
    """GitHub App id (SPROUT_GITHUB_APP_ID); needs the App's private key."""
    private_key: str | None = field(default=None, repr=False)
    """PEM text (SPROUT_GITHUB_PRIVATE_KEY, or the file SPROUT_GITHUB_PRIVATE_KEY_PATH)."""
    api_url: str = "https://api.github.com"
    """GitHub API base (SPROUT_GITHUB_API_URL); GitHub Enterprise: https://HOST/api/v3."""
    database_url: str = "sqlite:///.sprout/bot.db"
    """Where deliveries and jobs are kept (SPROUT_DATABASE_URL); SQLite files only for now."""
    ray_address: str | None = None
    """Ray cluster for retraining jobs (RAY_ADDRESS); none: a local head on 127.0.0.1."""
    command_prefix: str = "/sprout"
    """Chat-ops prefix (SPROUT_COMMAND_PREFIX)."""
    app_name: str = "sprout"
    """Name answered after '@' in comments (SPROUT_APP_NAME)."""
    trusted_teams: tuple[str, ...] = ()
    """'org/team-slug' entries whose members may run costly commands (SPROUT_TRUSTED_TEAMS,
    comma separated). Empty means: repository write, maintain or admin only — never everyone."""
    max_attempts: int = 5
    """Attempts before a delivery is parked as failed (SPROUT_MAX_ATTEMPTS)."""
    lease_seconds: float = 120.0
    """How long a worker owns a claimed delivery before another may take it over."""
    retrain_entrypoint: str = "sprout run {git_url} --ref {sha} --runs-root {runs_root} --print-report"
    """Ray job entrypoint for retraining (SPROUT_RETRAIN_ENTRYPOINT); {sha}, {base_sha}, {git_url},
    {repo}, {pr} and {runs_root} are filled in."""
    preview_entrypoint: str = ("sprout preview {git_url} --ref {sha} --base {base_sha} "
                               "--runs-root {runs_root} --print-report")
    """Ray job entrypoint for `/sprout generate` (SPROUT_PREVIEW_ENTRYPOINT)."""
    precheck_entrypoint: str = ("sprout precheck {git_url} --ref {sha} --base {base_sha} "
                                "--runs-root {runs_root} --print-report")
    """Ray job entrypoint for `/sprout precheck` (SPROUT_PRECHECK_ENTRYPOINT)."""
    runs_root: str = "runs"
    """Model registry, run folders, checkpoints and models as the Ray job sees them (SPROUT_STORAGE,
    old name SPROUT_RUNS_ROOT): a folder relative to the job's working directory, or an object-store
    URI (s3://bucket/prefix, gs://...) on a multi-node cluster; passed as --runs-root (= --storage)."""
    git_url: str | None = field(default=None, repr=False)  # may carry user:token@
    """Clone URL template with {repo} (SPROUT_GIT_URL); default: derived from the API URL
    (https://github.com/{repo}.git for github.com, https://HOST/{repo}.git for Enterprise)."""
    entrypoint_num_cpus: float | None = None
    """CPUs reserved for each job's driver (SPROUT_ENTRYPOINT_NUM_CPUS; Ray's
    ``entrypoint_num_cpus``): the driver then runs only on a node that has them. Unset: Ray's
    default (0, anywhere, the head included)."""
    entrypoint_num_gpus: float | None = None
    """GPUs reserved for each job's driver (SPROUT_ENTRYPOINT_NUM_GPUS): set 1 so evaluation and
    generation in the driver land on a GPU node, not on a CPU-only head."""
    recover_interval: float = 600.0
    """Seconds between scans for failed deliveries to redeliver (App mode only)."""
    write_interval: float = 0.75
    """Seconds between GitHub write calls of one client (SPROUT_GITHUB_WRITE_INTERVAL): GitHub
    asks integrations to pace content-creating requests to stay clear of secondary rate limits;
    0 turns pacing off (an Enterprise server with limits of its own, a benchmark)."""
    status_token: str | None = field(default=None, repr=False)
    """Bearer token for the status page and /metrics (SPROUT_STATUS_TOKEN); unset: they answer
    only requests from loopback (they name repositories, which may be private)."""

    commands_per_hour: int = 20
    """Commands one person may send in an hour, across repositories (SPROUT_COMMANDS_PER_HOUR):
    past it the bot replies once, then ignores that person's commands until the hour has passed;
    0: no limit."""
    max_annotations: int = 50
    """Annotations per check run (SPROUT_MAX_ANNOTATIONS): GitHub's own UI shows 50; the rest are
    counted in the summary, so a huge leaf cannot spend the API quota one batch at a time."""
    job_timeouts: tuple[tuple[str, float], ...] = (("retrain", 1800.0), ("preview", 900.0), ("precheck", 900.0))
    """Wall-clock limit per job kind in seconds (SPROUT_RETRAIN_TIMEOUT, SPROUT_PREVIEW_TIMEOUT,
    SPROUT_PRECHECK_TIMEOUT): about three times what the demo takes; a job past it is stopped,
    reported on the pull request as timed out, and the queue moves on."""
    forwarded_allow_ips: str | None = None
    """Proxies whose X-Forwarded-For / X-Forwarded-Proto uvicorn may believe
    (SPROUT_FORWARDED_ALLOW_IPS, e.g. 10.0.0.5); unset: none, and a request carrying such
    headers is never treated as a loopback client."""

    def job_timeout(self, kind: str) -> float:
        return dict(self.job_timeouts).get(kind, 1800.0)

    @property
    def app_mode(self) -> bool:
        return self.app_id is not None

    def clone_url(self, repo: str) -> str:
        if self.git_url:
            return self.git_url.format(repo=repo)
        api = self.api_url.rstrip("/")
        if api == "https://api.github.com":
            web = "https://github.com"
        else:  # Enterprise serves the API under /api/v3 beside the web host
            web = api.removesuffix("/api/v3")
        return f"{web}/{repo}.git"

    @property
    def database_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:///"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        problems = []
        get = lambda k: (env.get(k) or "").strip() or None  # noqa: E731
        secret = get("SPROUT_WEBHOOK_SECRET")
        if not secret:
            problems.append("SPROUT_WEBHOOK_SECRET is not set: the bot must verify every delivery")
        token, app_id_raw = get("SPROUT_GITHUB_TOKEN"), get("SPROUT_GITHUB_APP_ID")
        key, key_path = get("SPROUT_GITHUB_PRIVATE_KEY"), get("SPROUT_GITHUB_PRIVATE_KEY_PATH")
        app_id = None
        if token and app_id_raw:
            problems.append("set either SPROUT_GITHUB_TOKEN or SPROUT_GITHUB_APP_ID, not both")
        if not token and not app_id_raw:
            problems.append("no GitHub credentials: set SPROUT_GITHUB_TOKEN, or SPROUT_GITHUB_APP_ID "
                            "with SPROUT_GITHUB_PRIVATE_KEY or SPROUT_GITHUB_PRIVATE_KEY_PATH")
        if app_id_raw:
            try:
                app_id = int(app_id_raw)
            except ValueError:
                problems.append(f"SPROUT_GITHUB_APP_ID must be a number, not {app_id_raw!r}")
            if key and key_path:
                problems.append("set SPROUT_GITHUB_PRIVATE_KEY or SPROUT_GITHUB_PRIVATE_KEY_PATH, not both")
            elif key_path:
                try:
                    key = Path(key_path).read_text()
                except OSError as e:
                    problems.append(f"SPROUT_GITHUB_PRIVATE_KEY_PATH {key_path}: {e.strerror or e}")
            elif not key:
                problems.append("SPROUT_GITHUB_APP_ID needs SPROUT_GITHUB_PRIVATE_KEY or SPROUT_GITHUB_PRIVATE_KEY_PATH")
            if key and "PRIVATE KEY-----" not in key:
                problems.append("the GitHub App private key is not PEM text (-----BEGIN ... PRIVATE KEY-----)")
        elif key or key_path:
            problems.append("a private key is set without SPROUT_GITHUB_APP_ID")
        db = get("SPROUT_DATABASE_URL") or "sqlite:///.sprout/bot.db"
        if not db.startswith("sqlite:///"):
            problems.append(f"SPROUT_DATABASE_URL {db!r}: only sqlite:///PATH is supported")
        api = (get("SPROUT_GITHUB_API_URL") or "https://api.github.com").rstrip("/")
        if not api.startswith(("http://", "https://")):
            problems.append(f"SPROUT_GITHUB_API_URL {api!r} is not an http(s) URL")
        teams = tuple(t.strip() for t in (get("SPROUT_TRUSTED_TEAMS") or "").split(",") if t.strip())
        for t in teams:
            if t.count("/") != 1:
                problems.append(f"SPROUT_TRUSTED_TEAMS entry {t!r} must look like org/team-slug")
        attempts = get("SPROUT_MAX_ATTEMPTS") or "5"
        if not attempts.isdigit() or int(attempts) < 1:
            problems.append(f"SPROUT_MAX_ATTEMPTS must be a positive number, not {attempts!r}")
        lease = get("SPROUT_LEASE_SECONDS") or "120"
        try:
            lease_s = float(lease)
            assert lease_s > 0
        except (ValueError, AssertionError):
            problems.append(f"SPROUT_LEASE_SECONDS must be a positive number, not {lease!r}")
            lease_s = 120.0
        interval = get("SPROUT_GITHUB_WRITE_INTERVAL") or "0.75"
        try:
            write_interval = float(interval)
            assert write_interval >= 0
        except (ValueError, AssertionError):
            problems.append(f"SPROUT_GITHUB_WRITE_INTERVAL must be seconds (0 or more), not {interval!r}")
            write_interval = 0.75
        resources = {}
        for name, var, raw in (("entrypoint_num_cpus", "SPROUT_ENTRYPOINT_NUM_CPUS", get("SPROUT_ENTRYPOINT_NUM_CPUS")),
                               ("entrypoint_num_gpus", "SPROUT_ENTRYPOINT_NUM_GPUS", get("SPROUT_ENTRYPOINT_NUM_GPUS"))):
            if raw is not None:
                try:
                    resources[name] = float(raw)
                    assert 0 <= resources[name] < float("inf")
                except (ValueError, AssertionError):
                    problems.append(f"{var} must be a number >= 0, not {raw!r}")

        def number(name: str, default: float, integer: bool = False) -> float:
            raw = get(name) or str(default)
            try:
                value = int(raw) if integer else float(raw)
                assert value >= 0
                return value
            except (ValueError, AssertionError):
                problems.append(f"{name} must be a {'whole ' if integer else ''}number (0 or more), not {raw!r}")
                return default
        per_hour = number("SPROUT_COMMANDS_PER_HOUR", cls.commands_per_hour, integer=True)
        max_annotations = number("SPROUT_MAX_ANNOTATIONS", cls.max_annotations, integer=True)
        timeouts = tuple((kind, number(f"SPROUT_{kind.upper()}_TIMEOUT", default) or default)
                         for kind, default in cls.job_timeouts)
        if problems:
            raise SettingsError("invalid bot settings:\n  - " + "\n  - ".join(problems))
        return cls(webhook_secret=secret, github_token=token, app_id=app_id, private_key=key,
                   api_url=api, database_url=db, ray_address=get("RAY_ADDRESS"),
                   command_prefix=get("SPROUT_COMMAND_PREFIX") or "/sprout",
                   app_name=get("SPROUT_APP_NAME") or "sprout", trusted_teams=teams,
                   max_attempts=int(attempts), lease_seconds=lease_s,
                   retrain_entrypoint=get("SPROUT_RETRAIN_ENTRYPOINT") or cls.retrain_entrypoint,
                   preview_entrypoint=get("SPROUT_PREVIEW_ENTRYPOINT") or cls.preview_entrypoint,
                   precheck_entrypoint=get("SPROUT_PRECHECK_ENTRYPOINT") or cls.precheck_entrypoint,
                   runs_root=get("SPROUT_STORAGE") or get("SPROUT_RUNS_ROOT") or cls.runs_root, git_url=get("SPROUT_GIT_URL"),
                   status_token=get("SPROUT_STATUS_TOKEN"), write_interval=write_interval,
                   commands_per_hour=per_hour, max_annotations=max_annotations, job_timeouts=timeouts,
                   forwarded_allow_ips=get("SPROUT_FORWARDED_ALLOW_IPS"), **resources)
