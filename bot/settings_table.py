"""The bot's settings, in one table: `sprout bot serve --help` prints it and the README's table
is checked against it (tests/bot/test_settings.py), so neither can drift from the other."""

SETTINGS: tuple[tuple[str, str], ...] = (
    ("`SPROUT_WEBHOOK_SECRET`", "required; deliveries without a valid `X-Hub-Signature-256` get 401"),
    ("`SPROUT_GITHUB_TOKEN` or `SPROUT_GITHUB_APP_ID` + `SPROUT_GITHUB_PRIVATE_KEY` (or `SPROUT_GITHUB_PRIVATE_KEY_PATH`)",
     "credentials (one mode only)"),
    ("`SPROUT_GITHUB_API_URL`", "default `https://api.github.com`; GitHub Enterprise: `https://HOST/api/v3`"),
    ("`SPROUT_DATABASE_URL`", "default `sqlite:///.sprout/bot.db` (deliveries and jobs)"),
    ("`RAY_ADDRESS`", "Ray cluster for retraining; unset: the bot starts its own head on 127.0.0.1"),
    ("`SPROUT_RETRAIN_ENTRYPOINT`",
     "the retrain job's command (default `sprout run {git_url} --ref {sha} --runs-root {runs_root} "
     "--print-report`); `{sha}`, `{base_sha}`, `{git_url}`, `{repo}`, `{pr}`, `{runs_root}` are filled in"),
    ("`SPROUT_PREVIEW_ENTRYPOINT`, `SPROUT_PRECHECK_ENTRYPOINT`",
     "the same for `/sprout generate` (`sprout preview … --base {base_sha}`) and `/sprout precheck`"),
    ("`SPROUT_STORAGE` (old name `SPROUT_RUNS_ROOT`)",
     "where jobs keep the model registry, run folders, reports, checkpoints and models (`{runs_root}`): "
     "a folder as the job sees it (default `runs`, relative to its working directory) or, on a "
     "multi-node cluster, `s3://bucket/prefix` (S3-compatible: `?endpoint_override=HOST:PORT&scheme=http`) "
     "or `gs://bucket/prefix`; no shared disk needed"),
    ("`SPROUT_ENTRYPOINT_NUM_CPUS`, `SPROUT_ENTRYPOINT_NUM_GPUS`",
     "CPUs and GPUs reserved for each job's driver (Ray's `entrypoint_num_cpus`/`entrypoint_num_gpus`), "
     "so it runs on a node that can run it (a GPU worker, not a CPU-only head); unset: Ray's default, 0"),
    ("`SPROUT_GIT_URL`", "clone URL template with `{repo}`; default derived from `SPROUT_GITHUB_API_URL`"),
    ("`SPROUT_TRUSTED_TEAMS`", "`org/team,…` whose members may run costly commands besides write/maintain/admin"),
    ("`SPROUT_COMMAND_PREFIX`, `SPROUT_APP_NAME`", "`/sprout` and `@sprout` by default"),
    ("`SPROUT_MAX_ATTEMPTS`, `SPROUT_LEASE_SECONDS`",
     "retries before a delivery is parked as failed (5); worker lease (120 s, renewed while a handler "
     "works); a delivery whose lease ran out that many times is parked as *poison*"),
    ("`SPROUT_GITHUB_WRITE_INTERVAL`",
     "seconds between GitHub write calls (0.75; GitHub asks integrations to pace writes); 0: no pacing"),
    ("`SPROUT_STATUS_TOKEN`",
     "bearer token for `/` and `/metrics`; unset, they answer loopback clients only (they name "
     "repositories, which may be private)"),
    ("`SPROUT_FORWARDED_ALLOW_IPS`",
     "proxies (comma-separated addresses) whose `X-Forwarded-For` is believed; unset: none, and a "
     "request carrying forwarding headers never counts as loopback"),
    ("`SPROUT_COMMANDS_PER_HOUR`",
     "commands one person may send per hour (20); past it one reply, then silence; 0: no limit"),
    ("`SPROUT_MAX_ANNOTATIONS`", "annotations per check run (50, what GitHub shows); the rest are counted in the summary"),
    ("`SPROUT_RETRAIN_TIMEOUT`, `SPROUT_PREVIEW_TIMEOUT`, `SPROUT_PRECHECK_TIMEOUT`",
     "wall-clock limit per job in seconds (1800, 900, 900: about 3x the demo); a job past it is "
     "stopped, reported as timed out, and the next one starts"),
    ("`SPROUT_DOCUMENT_HOSTS`",
     "hosts jobs may fetch knowledge documents from, besides `github.com` (`host` for https, or an "
     "origin `scheme://host:port`); passed to jobs"),
    ("`SPROUT_TEACHER_API_KEY`", "the teacher endpoint's key; the only secret jobs receive"),
)


def markdown() -> str:
    return "\n".join(["| setting | meaning |", "| --- | --- |"] + [f"| {n} | {m} |" for n, m in SETTINGS])


def plain() -> str:
    """For --help: the same rows without Markdown's backticks, wrapped by the caller."""
    import textwrap
    lines = ["settings (environment):"]
    for name, meaning in SETTINGS:
        lines.append("  " + name.replace("`", ""))
        lines += textwrap.wrap(meaning.replace("`", ""), 88, initial_indent="      ", subsequent_indent="      ")
    lines.append("Token mode posts commit statuses instead of check runs (only Apps may write them).")
    return "\n".join(lines)
