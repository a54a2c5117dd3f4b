"""Retraining jobs on Ray through the Ray Jobs API: submit, poll, cancel, log tail.

One job per repository at a time; a newer request supersedes a queued one. With no Ray address
we start and own a local head bound to 127.0.0.1. GitHub credentials stay here: the job never
sees them (the head and its jobs get an allow-listed environment); the bot posts its results.

Jobs are exactly-once: each has an idempotency key (repository, kind, commit, trigger), a
deterministic Ray submission id that is looked up before any resubmission, and a job Ray stops
knowing (its head restarted or gone) is marked lost and reported, so no queue is ever stuck.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import json
import shlex
import signal
import tempfile
import threading
import time
from pathlib import Path

from pipeline import mdescape as md

from .github import GitHub, GitHubError, Transient
from .jobenv import job_environment
from .settings import Settings
from .store import ACTIVE_JOB, Store

log = logging.getLogger(__name__)
CHECK_NAME = "sprout/retrain"
# What each kind of job is called on GitHub; previews and prechecks inform, so they end 'neutral'.
KINDS = {
    "retrain": {"check": CHECK_NAME, "noun": "retraining", "running": "Retraining",
                "done": "Retraining finished", "success": "success"},
    "preview": {"check": "sprout/preview", "noun": "synthetic data preview", "running": "Generating a preview",
                "done": "Synthetic data preview", "success": "neutral"},
    "precheck": {"check": "sprout/precheck", "noun": "precheck", "running": "Asking the current student",
                 "done": "Precheck: the current student's answers", "success": "neutral"},
}
TERMINAL = {"SUCCEEDED": ("succeeded", "success"), "FAILED": ("failed", "failure"),
            "STOPPED": ("cancelled", "cancelled")}
_SHA = re.compile(r"^[0-9A-Za-z]{7,64}$")  # GitHub sends hex; alphanumerics can never be an option or a shell word
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
TIMEOUT = "timed out"  # how a job stopped for its time limit is marked while Ray stops it
TIMEOUT_GRACE = 120.0  # seconds Ray gets to stop a job past its limit before the bot moves on
LOST_AFTER = 5  # polls in a row in which Ray does not know a job (x6 when Ray cannot be reached)


def _transient_ray_error(e: Exception) -> bool:
    import requests
    text = str(e)
    return (isinstance(e, (requests.ConnectionError, requests.Timeout))
            or "No available agent" in text or "status code 50" in text)


class JobUnknown(Exception):
    """Ray answered that it has no job by that id."""


def _ray_call(fn, *args, **kw):
    """Call the Jobs client; a 404 becomes ``JobUnknown``."""
    try:
        return fn(*args, **kw)
    except RuntimeError as e:
        if "status code 404" in str(e) or "does not exist" in str(e):
            raise JobUnknown(str(e)) from None
        raise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REPORT_LINE = "SPROUT-REPORT"  # `--print-report`: one line, "SPROUT-REPORT <nonce> <JSON>"
NONCE_ENV = "SPROUT_REPORT_NONCE"
_NONCE = re.compile(r"^[0-9a-f]{32,64}$")


def new_nonce() -> str:
    """A per-job secret the bot hands the job (in its environment, never in the entrypoint or
    on GitHub): only the job's own report line carries it, so nothing a pull request makes the
    job print (a question, an answer, a document) can pass for the report."""
    return secrets.token_hex(16)


def extract_report(logs: str, nonce: str | None) -> dict | None:
    """The report the job printed with ``--print-report`` — {"kind", "verdict", "markdown"},
    structured data — if exactly one line carries this job's nonce; else None."""
    if not nonce or not _NONCE.match(nonce):
        return None
    head = f"{REPORT_LINE} {nonce} "
    found = [line[len(head):] for line in (logs or "").split("\n") if line.startswith(head)]
    if len(found) != 1:
        return None
    try:
        report = json.loads(found[0])
    except ValueError:
        return None
    if not isinstance(report, dict) or not isinstance(report.get("markdown"), str):
        return None
    return report


def failed_stage(logs: str) -> str | None:
    """The stage `sprout run` was in when it stopped ("[train] ..." lines)."""
    stages = re.findall(r"^\[(\w+)\] \.\.\.$", logs, re.M)
    return stages[-1] if stages else None


def verdict_of(report: dict | None) -> str | None:
    """'accepted' / 'rejected': the verdict field of the job's report.json, never its Markdown."""
    verdict = (report or {}).get("verdict")
    return verdict if verdict in ("accepted", "rejected") else None


def log_tail(logs: str, lines: int = 40) -> str:
    """The log's last lines for people, without the report line (posted above it already)."""
    kept = [("(the report line)" if line.startswith(REPORT_LINE + " ") else line)
            for line in (logs or "").split("\n")[-lines - 1:]]
    return "\n".join(kept).strip("\n")


def job_summary(ray_id: str, sha: str, state: str, stage: str | None, report_md: str | None, tail: str) -> str:
    """The check-run summary and PR comment for a finished job. The report is the job's own
    rendering (every value in it escaped there); the log tail sits in a fence it cannot close."""
    return (f"Ray job {md.code(ray_id)} for {md.code(sha[:7])}: **{md.text(state)}**"
            + (f" at stage {md.code(stage)}" if state == "failed" and stage else "") + ".\n\n"
            + (report_md.strip() + "\n\n" if report_md else "")
            + f"<details><summary>Log tail</summary>\n\n{md.block(tail)}\n</details>")


class LocalRayHead:
    """A Ray head owned by the bot, on loopback, with the Jobs API on its dashboard port.

    Started as `ray start --head --block` in its own process group, so that stopping it stops
    exactly this head (`ray stop` would kill every Ray process on the machine). Its process group
    and address are written to ``state_file``: a bot restarted after a crash (kill -9) finds the
    head it started before and reuses it (its jobs are found again) or, if it no longer answers,
    stops it for good. The head and so every job get an allow-listed environment."""

    def __init__(self, num_cpus: int | None = None, state_file: Path | str | None = None):
        self.num_cpus = num_cpus
        self.state_file = Path(state_file) if state_file else None
        self.address: str | None = None
        self.temp_dir: str | None = None
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None

    def start(self, timeout: float = 180) -> str:
        reused = self._reuse()
        if reused:
            return reused
        import httpx
        ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
        if not ray:
            raise RuntimeError("Ray is not installed: pip install 'ray[default]'")
        port, dash = _free_port(), _free_port()
        self.temp_dir = tempfile.mkdtemp(prefix="sprout-ray-")
        # Token auth is on by default in Ray 2.60 and the Jobs client would be refused; this head
        # listens on loopback only, so it runs without it.
        env = {**job_environment(), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        cmd = [ray, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
               f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
               # fixed defaults (52365, ...) would clash with any other Ray on the machine
               f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
               f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}"]
        if self.num_cpus:
            cmd.append(f"--num-cpus={self.num_cpus}")
        with open(Path(self.temp_dir) / "ray-start.log", "wb") as out:  # the child keeps its own copy
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pgid = self.proc.pid
        address = f"http://127.0.0.1:{dash}"
        self._save(address)  # before waiting: a crash during start-up still leaves the trace
        deadline = time.time() + timeout
        while True:  # ready when the Jobs API answers
            if self.proc.poll() is not None:
                tail = (Path(self.temp_dir) / "ray-start.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"the local Ray head exited ({self.proc.returncode if self.proc else '?'}):\n{tail}")
            try:
                if httpx.get(f"{address}/api/version", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"the local Ray head did not answer on {address} within {timeout:.0f}s")
            time.sleep(0.5)
        self.address = address
        return address

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pgid is not None and _group_alive(self.pgid)

    def _save(self, address: str) -> None:
        if self.state_file:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pgid": self.pgid, "address": address, "temp_dir": self.temp_dir}))
            tmp.replace(self.state_file)

    def _reuse(self) -> str | None:
        """The address of the head a previous bot process started, if it still answers."""
        if not self.state_file or not self.state_file.is_file():
            return None
        try:
            old = json.loads(self.state_file.read_text())
            pgid, address = int(old["pgid"]), str(old["address"])
        except (ValueError, KeyError, TypeError, OSError):
            self.state_file.unlink(missing_ok=True)
            return None
        if not _is_our_head(pgid, old.get("temp_dir")):
            # a pid is reused after a reboot: never signal a group that is not that head
            self.state_file.unlink(missing_ok=True)
            return None
        self.pgid, self.temp_dir = pgid, old.get("temp_dir")
        if _group_alive(pgid) and address.startswith("http://127.0.0.1:"):
            import httpx
            try:
                if httpx.get(f"{address}/api/version", timeout=3).status_code == 200:
                    log.info("reusing the local Ray head left by a previous run (%s)", address)
                    self.address = address
                    return address
            except httpx.HTTPError:
                pass
        log.warning("stopping the unresponsive local Ray head left by a previous run (group %s)", pgid)
        self.stop()
        return None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.pgid:
            # Ray's own daemons (raylet, GCS) may outlive the leader: end the group for good
            deadline = time.time() + 15
            while time.time() < deadline and _group_alive(self.pgid):
                try:
                    os.killpg(self.pgid, signal.SIGKILL)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
        self.proc, self.address, self.pgid = None, None, None
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None
        if self.state_file:
            self.state_file.unlink(missing_ok=True)


def _group_members(pgid: int):
    """(state, command line) of each process in group ``pgid``, read from /proc."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                yield fields[0], Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue


def _is_our_head(pgid: int, temp_dir: str | None) -> bool:
    """Whether group ``pgid`` still runs the head we recorded: its processes name our unique
    temp dir (a pid may be reused by anything after a reboot; never signal that)."""
    return bool(temp_dir) and any(temp_dir.encode() in cmd for _, cmd in _group_members(pgid))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies count as gone: a group of only defunct processes runs nothing
    return any(state != "Z" for state, _ in _group_members(pgid))


class Dispatcher:
    def __init__(self, store: Store, github: GitHub, settings: Settings, address: str | None = None,
                 poll: float = 2.0, head: LocalRayHead | None = None, lost_after: int = LOST_AFTER,
                 submit_tries: int = 30):
        self.store, self.github, self.settings = store, github, settings
        self.address = address
        self.head = head
        self.poll = poll
        self.lost_after = lost_after
        self.submit_tries = submit_tries
        self.stage_every = max(poll, 10.0)
        self._stage_read: dict[int, float] = {}
        self._client = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None, github: GitHub | None = None):
        head = None if settings.ray_address else LocalRayHead(
            state_file=settings.database_path.parent / "ray-head.json")
        return cls(store or Store(settings.database_path), github or GitHub(settings), settings,
                   address=settings.ray_address, head=head)

    def client(self):
        with self._lock:
            if self._client is not None and self.head is not None and not self.head.alive():
                # our local head died: its jobs are gone with it; start a fresh one next
                self._lose_all("the local Ray head stopped")
                self.head.stop()
                self._client, self.address = None, None
            if self._client is None:
                from ray.job_submission import JobSubmissionClient
                if self.address is None:
                    self.address = self.head.start()
                address = self.address
                if address.startswith("ray://") or ":" in address and not address.startswith("http"):
                    address = "http://" + address.split("://")[-1].split(":")[0] + ":8265"
                self._client = JobSubmissionClient(address)
            return self._client

    # -- requests --------------------------------------------------------------------------
    def request(self, repo: str, pr: int | None, sha: str, installation_id: int | None,
                kind: str = "retrain", base_sha: str | None = None, trigger: str | None = None) -> int:
        """Queue a job; idempotent per (repository, kind, commit, trigger), so a redelivered
        webhook finds the job it queued before. A newer request supersedes a queued one of the
        same kind (for previews and prechecks: of the same pull request); one job of each kind
        runs per repository at a time."""
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        if not _SHA.match(sha) or (base_sha and not _SHA.match(base_sha)) or not _REPO.match(repo):
            raise ValueError(f"refusing a job for {repo!r} at {sha!r}: not a repository name and commit SHA")
        key = f"{repo}|{kind}|{sha}|{trigger}" if trigger else None
        with self._lock:
            if key:
                existing = self.store.job_by_key(key)
                if existing:
                    return existing["id"]
            for old in self.store.jobs(repo=repo, statuses=("queued",), kind=kind):
                if kind == "retrain" or old["pr"] == pr:
                    self.store.update_job(old["id"], status="superseded", detail=f"superseded by {sha[:7]}")
            job = self.store.add_job(repo, pr, sha, kind, installation_id, base_sha=base_sha, key=key)
        self.tick()
        return job

    def cancel(self, repo: str, pr: int | None = None) -> int:
        """Cancel the pull request's queued and running jobs (every job of the repository when
        ``pr`` is None: `/sprout cancel all`)."""
        n = 0
        with self._lock:
            for job in self.store.jobs(repo=repo, statuses=ACTIVE_JOB, pr=pr, limit=1000):
                if job["status"] == "cancelling":
                    continue
                stopped = False
                if job["status"] in ("running", "submitting") and job.get("submission_id"):
                    try:
                        _ray_call(self.client().stop_job, job["submission_id"])
                        stopped = True
                    except JobUnknown:
                        pass  # never reached Ray, or Ray forgot it: nothing to stop
                    except Exception as e:
                        log.warning("stopping %s: %s", job["submission_id"], e)
                if stopped:
                    self.store.update_job(job["id"], status="cancelling")
                else:
                    self.store.update_job(job["id"], status="cancelled", detail="cancelled before it ran")
                    if job["status"] != "queued":
                        k = KINDS[job["kind"]]
                        self._report(job, "cancelled", f"{k['noun'].capitalize()} cancelled", "Cancelled.")
                n += 1
        self.tick()
        return n

    # -- the loop --------------------------------------------------------------------------
    def tick(self) -> None:
        """Advance every repository's jobs one step; safe to call from any thread."""
        with self._lock:
            for job in self.store.jobs(statuses=("submitting",), limit=1000):
                self._submit(job)  # a crash between submit and record: ask Ray, never submit twice
            for job in self.store.jobs(statuses=("running", "cancelling"), limit=1000):
                self._poll(job)
            busy = {(j["repo"], j["kind"]) for j in self.store.jobs(statuses=("submitting", "running", "cancelling"),
                                                                    limit=1000)}
            queued = sorted(self.store.jobs(statuses=("queued",), limit=1000), key=lambda j: j["id"])
            for job in queued:
                if (job["repo"], job["kind"]) not in busy:
                    self._submit(job)
                    busy.add((job["repo"], job["kind"]))

    def _entrypoint(self, job: dict) -> str:
        template = {"retrain": self.settings.retrain_entrypoint, "preview": self.settings.preview_entrypoint,
                    "precheck": self.settings.precheck_entrypoint}[job["kind"]]
        # The entrypoint is a shell command: every value is one quoted word.
        q = shlex.quote
        return template.format(
            sha=q(job["sha"]), base_sha=q(job.get("base_sha") or ""), repo=q(job["repo"]),
            pr=q(str(job["pr"] or "")), git_url=q(self.settings.clone_url(job["repo"])),
            repo_url=q(self.settings.clone_url(job["repo"])), runs_root=q(self.settings.runs_root))

    def _entrypoint_resources(self) -> dict:
        """What the job's driver asks Ray for, so it lands on a node that can run it (only what
        is set: an unset value keeps Ray's default)."""
        s = self.settings
        return {k: v for k, v in (("entrypoint_num_cpus", s.entrypoint_num_cpus),
                                  ("entrypoint_num_gpus", s.entrypoint_num_gpus)) if v is not None}

    def _submit(self, job: dict) -> None:
        k = KINDS[job["kind"]]
        submission = job.get("submission_id") or f"sprout-{job['kind']}-{job['id']}-{job['sha'][:7]}"
        nonce = job.get("nonce") or new_nonce()
        if job["status"] == "queued" or not job.get("nonce"):
            # durable before Ray hears of it: a crash after this line is resolved by asking Ray
            self.store.update_job(job["id"], status="submitting", submission_id=submission, nonce=nonce)
        try:
            client = self.client()
            try:
                _ray_call(client.get_job_info, submission)
                known = True
            except JobUnknown:
                known = False
            if not known:
                try:
                    client.submit_job(entrypoint=self._entrypoint(job), submission_id=submission,
                                      runtime_env={"env_vars": {NONCE_ENV: nonce}},
                                      metadata={"sprout_job": str(job["id"]), "kind": job["kind"],
                                                "repo": job["repo"], "sha": job["sha"]},
                                      **self._entrypoint_resources())
                except RuntimeError as e:
                    if "already exists" not in str(e):
                        raise
        except Exception as e:
            tries = (job.get("missing_polls") or 0) + 1
            if _transient_ray_error(e) and tries < self.submit_tries:
                # a head still starting ("No available agent"), a network blip: next tick
                why = md.mask_credentials(str(e))
                self.store.update_job(job["id"], missing_polls=tries, detail=f"waiting for Ray: {why}"[:2000])
                log.warning("job %s: Ray not ready (%d/%d): %s", job["id"], tries, self.submit_tries, why)
                return
            why = md.mask_credentials(str(e))
            self.store.update_job(job["id"], status="failed", detail=f"could not submit to Ray: {why}")
            self._report(job, "failure", f"Could not start {k['noun']}", f"Submitting to Ray failed: {md.code(why)}")
            return
        self.store.update_job(job["id"], status="running", ray_job_id=submission, missing_polls=0,
                              started_at=job.get("started_at") or time.time())
        try:
            gh = self.github.client(job["installation_id"])
            run = gh.start_check_run(job["repo"], k["check"], job["sha"], k["running"],
                                     f"Ray job {md.code(submission)} is running "
                                     f"{md.code(md.mask_credentials(self._entrypoint(job)))}.")
            self.store.update_job(job["id"], check_run_id=run.id)
        except GitHubError as e:
            log.warning("job %s: could not create the check run: %s", job["id"], e)

    def _lose_all(self, reason: str) -> None:
        for job in self.store.jobs(statuses=("submitting", "running", "cancelling"), limit=1000):
            self._lose(job, reason)

    def _lose(self, job: dict, reason: str) -> None:
        k = KINDS[job["kind"]]
        if job["status"] == "cancelling":
            self.store.update_job(job["id"], status="cancelled", detail=f"cancelled ({reason})")
            self._report(job, "cancelled", f"{k['noun'].capitalize()} cancelled", "Cancelled.")
            return
        self.store.update_job(job["id"], status="lost", detail=reason)
        self._report(job, "failure", f"{k['noun'].capitalize()} lost",
                     f"Ray job `{job.get('ray_job_id') or job.get('submission_id')}` for `{job['sha'][:7]}` "
                     f"was lost: {reason}. Nothing was trained or registered by this job; a maintainer "
                     "can start it again.")

    def _poll(self, job: dict) -> None:
        ray_id = job["ray_job_id"] or job.get("submission_id")
        try:
            status = str(_ray_call(self.client().get_job_status, ray_id))
        except Exception as e:
            missing = (job.get("missing_polls") or 0) + 1
            self.store.update_job(job["id"], missing_polls=missing)
            log.warning("polling %s (%d/%d): %s", ray_id, missing, self.lost_after, e)
            # Ray saying it has no such job is definite; an unreachable cluster may come back
            if missing >= (self.lost_after if isinstance(e, JobUnknown) else self.lost_after * 6):
                why = ("Ray no longer knows this job (its head was restarted?)" if isinstance(e, JobUnknown)
                       else f"Ray could not be reached {missing} times in a row ({type(e).__name__})")
                self._lose(job, why)
            return
        if job.get("missing_polls"):
            self.store.update_job(job["id"], missing_polls=0)
        timed_out = (job.get("detail") or "").startswith(TIMEOUT)
        if status not in TERMINAL and self._over_time(job, status, ray_id, timed_out):
            return
        if status not in TERMINAL:
            # the stage shown on the status page and in /sprout status, read from the log now and then
            if time.time() - self._stage_read.get(job["id"], 0) >= self.stage_every:
                self._stage_read[job["id"]] = time.time()
                try:
                    stage = failed_stage(self.client().get_job_logs(ray_id))
                except Exception:
                    stage = None
                if stage and stage != job.get("stage"):
                    self.store.update_job(job["id"], stage=stage)
            return
        self._finish(job, status, ray_id, timed_out)

    def _over_time(self, job: dict, status: str, ray_id: str, timed_out: bool) -> bool:
        """Stop a job past its kind's wall-clock limit (True: nothing more to do this poll). One
        Ray does not stop within a grace period is reported as timed out all the same, so the
        queue behind it moves on."""
        limit = self.settings.job_timeout(job["kind"])
        started = job.get("started_at") or job.get("created_at")
        if not started or time.time() - started <= limit:
            return False
        if not timed_out:
            if job["status"] != "running":
                return False  # a cancel already under way
            log.warning("job %s ran past its %.0f s limit: stopping %s", job["id"], limit, ray_id)
            try:
                _ray_call(self.client().stop_job, ray_id)
            except Exception as e:
                log.warning("stopping %s: %s", ray_id, md.mask_credentials(str(e)))
            self.store.update_job(job["id"], status="cancelling", detail=f"{TIMEOUT} after {limit:.0f} s")
            return True
        if time.time() - started > limit + TIMEOUT_GRACE:
            self._finish({**job, "status": "cancelling"}, "STOPPED", ray_id, True)
            return True
        return False

    def _finish(self, job: dict, status: str, ray_id: str, timed_out: bool) -> None:
        state, conclusion = TERMINAL[status]
        self._stage_read.pop(job["id"], None)
        k = KINDS[job["kind"]]
        if state == "succeeded":
            conclusion = k["success"]
        try:
            logs = self.client().get_job_logs(ray_id)
        except Exception as e:
            logs = f"(logs unavailable: {e})"
        tail = log_tail(logs)
        title = {"succeeded": k["done"], "failed": f"{k['noun'].capitalize()} failed",
                 "cancelled": f"{k['noun'].capitalize()} cancelled"}[state]
        if timed_out:
            limit = self.settings.job_timeout(job["kind"])
            state, conclusion = "timed_out", "timed_out"
            title = f"{k['noun'].capitalize()} stopped: over its {limit / 60:.0f}-minute limit"
        report = extract_report(logs, job.get("nonce"))
        stage = failed_stage(logs)
        summary = job_summary(ray_id, job["sha"], state, stage, (report or {}).get("markdown"), tail)
        if timed_out:
            summary = (f"Stopped after {limit:.0f} s, the limit for a {k['noun']} "
                       f"(`SPROUT_{job['kind'].upper()}_TIMEOUT`); the next job in the queue starts.\n\n{summary}")
        if self._report(job, conclusion, title, summary):
            self.store.update_job(job["id"], status=state, detail=md.mask_credentials(tail)[-2000:],
                                  stage=stage or job.get("stage"), verdict=verdict_of(report))

    def _report(self, job: dict, conclusion: str, title: str, summary: str) -> bool:
        """Complete the check run (or status) and upsert the PR comment. False: try again later
        (a transient failure); a permanent refusal (4xx) is logged and recorded, not retried."""
        k = KINDS[job["kind"]]
        # the clone URL may carry credentials (SPROUT_GIT_URL), and errors and logs quote it
        title, summary = md.mask_credentials(title), md.mask_credentials(summary)
        try:
            gh = self.github.client(job["installation_id"])
            run = gh.start_check_run(job["repo"], k["check"], job["sha"], title, summary)
            gh.finish_check_run(run, conclusion, title, summary, [])
            if job["pr"]:
                # retraining: one comment per merged commit; previews and prechecks: one per PR, updated
                marker = (f"sprout:retrain:{job['sha'][:12]}" if job["kind"] == "retrain"
                          else f"sprout:{job['kind']}:{job['pr']}")
                gh.upsert_comment(job["repo"], job["pr"], marker, f"### {title}\n\n{summary}")
            return True
        except Transient as e:
            log.warning("job %s: reporting failed, will retry: %s", job["id"], e)
            return False
        except GitHubError as e:
            log.error("job %s: GitHub refused the report, not retrying: %s", job["id"], e)
            detail = (self.store.job(job["id"]) or {}).get("detail") or ""
            self.store.update_job(job["id"], detail=f"{detail}; report refused by GitHub: {e}".lstrip("; ")[-2000:])
            return True

    def start(self) -> "Dispatcher":
        self._thread = threading.Thread(target=self._loop, name="sprout-dispatch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        if self.head:
            self.head.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.store.jobs(statuses=ACTIVE_JOB, limit=1):
                    self.tick()
            except Exception:
                log.exception("dispatch loop error")
            self._stop.wait(self.poll)
