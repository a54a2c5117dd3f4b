"""Two Ray nodes with no shared disk, on one machine: each raylet its own temporary folder,
working folder and caches, and an S3 server (moto's) on 127.0.0.1 as the only place they share.
`sprout run --workers 2 --placement STRICT_SPREAD --storage s3://...` puts one training worker on
each node; then the worker node's raylet is SIGKILLed mid phase 2, a fresh node joins, and the run
resumes from the bucket to the curve of the uninterrupted run; a third run, `--start-from last`,
from yet another folder, finds the model in the bucket."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

BUCKET = "sprout-nodes"
PAUSE_TAG = "skills-step2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One machine of the cluster: its own folders, environment and process group."""

    def __init__(self, base: Path, name: str, env: dict):
        self.name = name
        self.dir = base / name
        self.tmp = Path(tempfile.mkdtemp(prefix=f"rn{name[0]}", dir="/tmp"))  # short: Ray's socket paths
        for sub in ("work", "cache", "hf"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.env = {**env, "TMPDIR": str(self.tmp), "SPROUT_CACHE": str(self.dir / "cache"),
                    "HF_HOME": str(self.dir / "hf"), "XDG_CACHE_HOME": str(self.dir / "cache")}
        self.proc = None

    def start(self, ray: str, head_port: int | None, log: Path) -> None:
        common = ["--block", "--num-cpus", "2", "--temp-dir", str(self.tmp / "ray"),
                  "--node-ip-address", "127.0.0.1", "--dashboard-agent-listen-port", str(free_port()),
                  "--resources", json.dumps({self.name: 1})]
        low = 30000 + 400 * ("head", "worker", "spare").index(self.name)  # disjoint worker ports per node
        common += ["--min-worker-port", str(low), "--max-worker-port", str(low + 399)]
        args = [ray, "start", "--head", "--port", str(head_port), "--include-dashboard", "false",
                "--ray-client-server-port", str(free_port())] if self.name == "head" \
            else [ray, "start", "--address", f"127.0.0.1:{self.env['SPROUT_TEST_HEAD_PORT']}"]
        self.proc = subprocess.Popen(args + common, cwd=self.dir / "work", env=self.env, start_new_session=True,
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def raylet_pid(self) -> int:
        import psutil
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            if child.name() == "raylet" or "raylet" in " ".join(child.cmdline()[:1]):
                return child.pid
        raise AssertionError(f"{self.name}: no raylet")

    def stop(self) -> None:
        """This node's processes only (never `ray stop`, which stops every Ray on the machine):
        `ray start`'s process group and everything it started, which may have left that group."""
        import psutil
        if self.proc is not None:
            try:
                family = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                family = []
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            for p in family + [psutil.Process(self.proc.pid)] if self.proc.poll() is None else family:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_nodes(env: dict, count: int, timeout: float = 90) -> None:
    code = ("import ray, sys; ray.init(log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))")
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        if p.returncode == 0 and p.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(1)
    raise AssertionError(f"{count} Ray nodes never came up")


@pytest.mark.slow
def test_two_nodes_share_only_a_bucket_and_survive_a_dead_node(sample_taxonomy, tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("moto")
    import boto3
    from moto.server import ThreadedMotoServer

    started = time.time()
    creds = {"AWS_ACCESS_KEY_ID": "sprout-test", "AWS_SECRET_ACCESS_KEY": "sprout-test",
             "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(creds)  # this process reads the bucket too
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=BUCKET)
    storage = f"s3://{BUCKET}/sprout?endpoint_override={endpoint}&scheme=http"

    head_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SPROUT_"))}
    env.update(creds, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
               HF_HUB_OFFLINE="1", SPROUT_TEST_HEAD_PORT=str(head_port),
               SPROUT_TEST_PAUSE_AFTER=f"{PAUSE_TAG}:60", SPROUT_TEST_PAUSE_RUN="/run-b/",
               # DeepSpeed's compiled CPU op is a build cache, not data: shared so no node recompiles it
               TORCH_EXTENSIONS_DIR=os.environ.get("TORCH_EXTENSIONS_DIR",
                                                   str(Path.home() / ".cache" / "torch_extensions")))
    head = Node(tmp_path, "head", env)
    worker = Node(tmp_path, "worker", env)
    spare = Node(tmp_path, "spare", env)
    driver = Node(tmp_path, "driver", {**env, "RAY_ADDRESS": f"127.0.0.1:{head_port}"})
    nodes = [head, worker, spare]

    def sprout(node: Node, *args: str, wait: bool = True):
        cmd = [sys.executable, "-m", "pipeline.cli", "run", str(sample_taxonomy), "--student", "tiny",
               "--storage", storage, "--epochs", "1", "--max-steps", "4", "--checkpoint-every", "1",
               "--no-embeddings", "--probe-questions", "4", *args]
        p = subprocess.Popen(cmd, cwd=node.dir / "work", env=node.env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        if not wait:
            return p
        out, _ = p.communicate(timeout=600)
        assert p.returncode in (0, 3), out[-4000:]  # 0 accepted, 3 rejected: both are a finished run
        return out

    def keys(prefix: str) -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"sprout/{prefix}")
        return [o["Key"][len("sprout/"):] for page in pages for o in page.get("Contents", [])]

    def curve(run: str) -> dict:
        body = s3.get_object(Bucket=BUCKET, Key=f"sprout/{run}/model/metrics.jsonl")["Body"].read().decode()
        rows = [json.loads(x) for x in body.splitlines() if x.strip()]
        return {(r["phase"], r["step"]): round(r["loss"], 4) for r in rows}  # a redone step: last wins

    timings = {}
    try:
        head.start(str(Path(sys.executable).parent / "ray"), head_port, tmp_path / "head.log")
        wait_nodes(driver.env, 1)
        worker.start(str(Path(sys.executable).parent / "ray"), None, tmp_path / "worker.log")
        wait_nodes(driver.env, 2)
        timings["cluster"] = time.time() - started

        # 1. the whole run, one training worker per node, everything in the bucket
        t = time.time()
        out = sprout(driver, "--workers", "2", "--placement", "STRICT_SPREAD", "--out", "run-a")
        timings["run_a"] = time.time() - t
        report = json.loads(s3.get_object(Bucket=BUCKET, Key="sprout/run-a/report.json")["Body"].read())
        assert report["verdict"] in ("accepted", "rejected") and "verdict:" in out
        stage_seconds = report["timings"]
        stored = keys("run-a/")
        for must in ("run-a/report.md", "run-a/manifest.json", "run-a/data/phase1.jsonl",
                     "run-a/model/knowledge/sprout_phase.json", "run-a/model/skills/model.safetensors",
                     "run-a/model/metrics.jsonl"):
            assert must in stored, must
        shards = [k for k in stored if k.startswith("run-a/ray/train/") and "zero_pp_rank_" in k]
        assert {k.split("zero_pp_rank_")[1][0] for k in shards} == {"0", "1"}  # both ranks uploaded
        per_checkpoint = {}
        for k in shards:
            per_checkpoint.setdefault(k.split("/")[3], []).append(k)
        assert all(len(v) == 2 for v in per_checkpoint.values())  # each shard once, no node-mate copies
        models = json.loads(s3.get_object(Bucket=BUCKET, Key="sprout/models.json")["Body"].read())
        assert models[0]["path"] == f"s3://{BUCKET}/sprout/run-a/model/skills"
        assert "students/tiny/config.json" in keys("students/")
        for node in (head, worker, driver):  # no runs root anywhere but the bucket
            assert not (node.dir / "work" / "runs").exists()
            # and the node-local working copies are gone once everything is in the store
            mine = node.tmp / f"sprout-{os.getuid()}"
            assert not [p for p in mine.rglob("*") if p.is_file() and ("train" in p.relative_to(mine).parts
                                                                     or "run-a" in p.parts)], node.name
        nodes_used = {json.loads(x).get("workers") for x in
                      s3.get_object(Bucket=BUCKET, Key="sprout/run-a/model/metrics.jsonl")["Body"].read().decode().splitlines()}
        assert nodes_used == {2}

        # 2. the same run; the worker node's raylet dies mid phase 2, a fresh node replaces it
        t = time.time()
        proc = sprout(driver, "--workers", "2", "--placement", "STRICT_SPREAD", "--out", "run-b", wait=False)
        deadline = time.time() + 400
        while not any(PAUSE_TAG in k and "zero_pp_rank_1" in k for k in keys("run-b/ray/")):
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-4000:]
            time.sleep(0.5)
        time.sleep(4)  # Ray registers the reported checkpoint
        os.kill(worker.raylet_pid(), signal.SIGKILL)
        killed_at = time.time() - t
        spare.start(str(Path(sys.executable).parent / "ray"), None, tmp_path / "spare.log")
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode in (0, 3), out[-4000:]
        timings["run_b_with_kill"] = time.time() - t
        restores = s3.get_object(Bucket=BUCKET, Key="sprout/run-b/model/ray_restores.jsonl")["Body"].read().decode()
        tags = [json.loads(x)["tag"] for x in restores.splitlines()]
        assert len(tags) == 1 and tags[0].startswith(("skills-", "knowledge-")), tags
        a, b = curve("run-a"), curve("run-b")
        assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-3 for k in a), (a, b)
        assert ("skills", 4) in b

        # 3. continue from the last accepted model, from a folder that has never seen it
        models = json.loads(s3.get_object(Bucket=BUCKET, Key="sprout/models.json")["Body"].read())
        assert len(models) == 2
        models[-1]["verdict"] = "accepted"  # whatever the smoke run scored: continue from it
        s3.put_object(Bucket=BUCKET, Key="sprout/models.json", Body=json.dumps(models).encode())
        t = time.time()
        fresh = Node(tmp_path, "third", {**env})
        sprout(fresh, "--start-from", "last", "--out", "run-c")
        timings["run_c"] = time.time() - t
        report = json.loads(s3.get_object(Bucket=BUCKET, Key="sprout/run-c/report.json")["Body"].read())
        assert report["started_from"] == {"kind": "last", "model": f"s3://{BUCKET}/sprout/run-b/model/skills"}
        assert not (fresh.dir / "work" / "runs").exists()
        timings["total"] = time.time() - started
        print("two-node timings (s):", json.dumps({k: round(v, 1) for k, v in timings.items()}),
              f"kill at {killed_at:.1f}s into run b; resumed from {tags[0]}; run a stages (s):",
              json.dumps(stage_seconds))
    finally:
        for node in reversed(nodes):
            node.stop()
        server.stop()
