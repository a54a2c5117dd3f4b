"""Storage: a local folder or a real S3 server (moto's, on 127.0.0.1): files, names, and a model
registry that two writers update at once without losing either's entry."""

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from pipeline.runplace import RunPlace
from pipeline.storage import Storage, StorageError, is_uri, redact
from pipeline.train.ray_train import RayFiles, _record_failure, needed_by, owned_by


@pytest.fixture(scope="module")
def s3_server():
    pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "sprout-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "sprout-test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="sprout-unit")
    yield endpoint
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store_uri(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_server")
    return f"s3://sprout-unit/{tmp_path.name}?endpoint_override={endpoint}&scheme=http"


def test_files_round_trip_with_names_and_selection(store_uri, tmp_path):
    store = Storage(store_uri)
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "x.bin").write_bytes(b"x" * 1000)
    (src / "marker.json").write_text("{}")
    (src / "skip.tmp").write_text("no")
    order = store.upload(src, "run/model", keep=lambda n: not n.endswith(".tmp"), last=("marker.json",))
    assert order == ["a/b/x.bin", "marker.json"]  # the marker goes last
    assert store.files("run/model") == {"a/b/x.bin": 1000, "marker.json": 2}
    assert store.exists("run/model/marker.json") and not store.exists("run/model/skip.tmp")
    got = store.download("run/model", tmp_path / "dst", keep=lambda n: n.startswith("a/"))
    assert got == ["a/b/x.bin"] and (tmp_path / "dst/a/b/x.bin").read_bytes() == b"x" * 1000
    assert store.download("run/model", tmp_path / "dst", keep=lambda n: n.startswith("a/")) == []  # already there
    assert store.read_bytes("nothing/here") is None and store.files("nothing") == {}
    # a name recorded in the registry locates back under the root; the endpoint is never in it
    name = store.name("run/model")
    assert store.locate(name) == "run/model" and "endpoint_override" not in name
    assert Storage(store.uri_of("run")).read_bytes("model/marker.json") == b"{}"
    assert store.sibling("other").name() == store.name().rsplit("/", 1)[0] + "/other"


def _register(uri: str, who: int, n: int) -> None:
    place = RunPlace(uri, None, f"writer-{who}")
    for i in range(n):
        place.register({"id": f"w{who}-{i}", "verdict": "accepted"})


def test_two_writers_never_lose_a_registry_entry(store_uri):
    """Two processes each add 8 entries at the same time: all 16 are there (a lost update, the
    read-modify-write race of a plain overwrite, would drop some)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_register, args=(store_uri, who, 8)) for who in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ids = [m["id"] for m in RunPlace(store_uri, None, "reader").registry()]
    assert sorted(ids) == sorted(f"w{w}-{i}" for w in (1, 2) for i in range(8))


def test_s3_conditional_write_refuses_a_stale_etag(s3_server):
    """The primitive the registry rests on: a write based on an old read is refused by the server."""
    import boto3
    c = boto3.client("s3", endpoint_url=s3_server)
    c.put_object(Bucket="sprout-unit", Key="cas/models.json", Body=b"[]")
    etag = c.head_object(Bucket="sprout-unit", Key="cas/models.json")["ETag"]
    store = Storage(f"s3://sprout-unit/cas?endpoint_override={s3_server}&scheme=http")
    store.update_json("models.json", lambda m: m + [{"id": "a"}])  # changes the ETag
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket="sprout-unit", Key="cas/models.json", Body=b"[]", IfMatch=etag)
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    assert json.loads(store.read_bytes("models.json")) == [{"id": "a"}]


def test_a_local_storage_keeps_todays_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    place = RunPlace("runs", None, "run-1")
    assert place.local == Path("runs/run-1") and place.root == Path("runs") and not place.remote
    place.register({"id": "r1", "path": "runs/run-1/model/skills"})
    assert json.loads(Path("runs/models.json").read_text()) == [{"id": "r1", "path": "runs/run-1/model/skills"}]
    assert place.local_model("runs/run-1/model/skills") == Path("runs/run-1/model/skills")


def test_object_storage_runs_work_in_scratch_and_push_stage_files(s3_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    uri = f"s3://sprout-unit/place?endpoint_override={s3_server}&scheme=http"
    place = RunPlace(uri, "run-7", "unused")
    assert str(place.local).startswith(str(tmp_path / "tmp"))
    (place.local / "data").mkdir()
    (place.local / "data" / "phase1.jsonl").write_text("{}\n")
    (place.local / "model" / "checkpoints").mkdir(parents=True)
    (place.local / "model" / "checkpoints" / "shard.pt").write_bytes(b"1")
    (place.local / "manifest.json").write_text("{}")
    place.push()
    assert Storage(uri).files("run-7") == {"data/phase1.jsonl": 3, "manifest.json": 2}
    assert place.uri("data").startswith("s3://sprout-unit/place/run-7/data?endpoint_override=")
    assert not (tmp_path / "runs").exists()
    again = RunPlace(uri, "run-7", "unused")  # a rerun (another node) resumes from the store
    assert (again.local / "data" / "phase1.jsonl").read_text() == "{}\n"
    with pytest.raises(ValueError):
        RunPlace(uri, "../escape", "unused")


def test_checkpoint_files_each_rank_uploads_and_restores():
    files = ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
             "zero_pp_rank_1_mp_rank_00_optim_states.pt", "zero_pp_rank_11_mp_rank_00_optim_states.pt"]
    assert [f for f in files if owned_by(f, 0)] == files[:2]
    assert [f for f in files if owned_by(f, 1)] == [files[2]]
    assert [f for f in files if needed_by(f, 1)] == [files[0], files[2]]
    assert [f for f in files if needed_by(f, 11)] == [files[0], files[3]]


def test_a_failed_attempt_is_recorded_per_rank_and_a_broken_store_does_not_mask_it(store_uri, tmp_path):
    try:
        raise RuntimeError("gloo: Connection reset by peer")
    except RuntimeError as e:
        _record_failure(tmp_path, 1, e, Storage(store_uri))
        _record_failure(tmp_path, 1, e, object())  # no upload method: swallowed, the line is kept
    lines = [json.loads(x) for x in (tmp_path / "ray_failures-rank1.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["rank"] == 1 and "Connection reset" in lines[0]["error"]
    assert "test_storage.py" in lines[0]["where"]
    assert Storage(store_uri).exists("ray_failures-rank1.jsonl")


def test_a_restore_from_a_late_registered_phase_1_checkpoint_keeps_the_exported_phases_curve(tmp_path):
    """Ray registered only knowledge-step4 before the group died in the skills phase: the loop will
    skip the exported knowledge phase, so its steps 5-6 must stay in the curve; the skills rows of the
    dead attempt go (they are redone)."""
    import pyarrow.fs as pafs
    from types import SimpleNamespace
    row = lambda phase, step: json.dumps({"phase": phase, "step": step, "loss": 1.0 / step}) + "\n"
    ckpt = tmp_path / "reported"
    (ckpt / "checkpoints" / "knowledge-step4").mkdir(parents=True)
    (ckpt / "checkpoints" / "latest").write_text("knowledge-step4")
    (ckpt / "checkpoints" / "knowledge-step4" / "mp_rank_00_model_states.pt").write_bytes(b"m")
    (ckpt / "checkpoints" / "knowledge-step4" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").write_bytes(b"o1")
    (ckpt / "metrics.jsonl").write_text("".join(row("knowledge", i) for i in range(1, 5)))
    out = tmp_path / "run"
    (out / "knowledge").mkdir(parents=True)
    (out / "knowledge" / "sprout_phase.json").write_text("{}")
    (out / "metrics.jsonl").write_text("".join([row("knowledge", i) for i in range(1, 7)] + [row("skills", 1), row("skills", 2)])
                                       + '{"phase": "skills", "st')  # cut by the kill
    checkpoint = SimpleNamespace(filesystem=pafs.LocalFileSystem(), path=str(ckpt))
    assert RayFiles(0).restore(checkpoint, out) == "knowledge-step4"
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["step"]) for r in rows] == [("knowledge", i) for i in range(1, 7)]
    assert (out / "checkpoints" / "latest").read_text() == "knowledge-step4"
    assert not list((out / "checkpoints" / "knowledge-step4").glob("zero_pp_rank_1_*"))  # rank 0's files only


def test_uris_and_redaction():
    assert is_uri("s3://b/p") and is_uri("gs://b/p") and not is_uri("runs") and not is_uri("/abs/runs")
    assert not is_uri("file:///tmp/x")
    assert redact("s3://key:secret@b/p?endpoint_override=h&secret_key=x") == "s3://b/p?endpoint_override=h"
    with pytest.raises(StorageError):
        Storage("s3://bucket/p?no_such_option=1")


def test_one_storage_setting_for_the_cli_and_the_bot(monkeypatch):
    """--storage (old name --runs-root), else SPROUT_STORAGE, else runs; the bot passes
    SPROUT_STORAGE (old name SPROUT_RUNS_ROOT) to its jobs."""
    import argparse

    from bot.settings import Settings
    from pipeline.cli import runs
    parser = argparse.ArgumentParser()
    runs._storage_arg(parser)
    monkeypatch.delenv("SPROUT_STORAGE", raising=False)
    assert runs._storage(parser.parse_args([])) == "runs"
    monkeypatch.setenv("SPROUT_STORAGE", "s3://b/p")
    assert runs._storage(parser.parse_args([])) == "s3://b/p"
    assert runs._storage(parser.parse_args(["--runs-root", "/old"])) == "/old"
    assert runs._storage(parser.parse_args(["--storage", "gs://b/q"])) == "gs://b/q"
    base = {"SPROUT_WEBHOOK_SECRET": "s", "SPROUT_GITHUB_TOKEN": "t"}
    assert Settings.from_env({**base, "SPROUT_RUNS_ROOT": "/shared"}).runs_root == "/shared"
    assert Settings.from_env({**base, "SPROUT_RUNS_ROOT": "/shared", "SPROUT_STORAGE": "s3://b/p"}).runs_root == "s3://b/p"


def test_a_server_follows_a_registry_in_the_store(store_uri, tmp_path, monkeypatch):
    """`sprout model serve --follow s3://…` picks the newest accepted model from the store's
    registry, downloads it once, and never a rejected one."""
    from pipeline.serve.follow import newest_accepted, read_registry
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    store = Storage(store_uri)
    assert read_registry(store_uri) == []
    for name in ("a", "b"):
        src = tmp_path / name
        src.mkdir()
        (src / "config.json").write_text(json.dumps({"model": name}))
        store.upload(src, f"run-{name}/model/skills")
    entries = [{"id": "a", "path": store.name("run-a/model/skills"), "verdict": "accepted"},
               {"id": "b", "path": store.name("run-b/model/skills"), "verdict": "rejected"},
               {"id": "gone", "path": store.name("run-c/model/skills"), "verdict": "accepted"}]
    store.write_bytes("models.json", json.dumps(entries).encode())
    entry, path = newest_accepted(read_registry(store_uri), store_uri)
    assert entry["id"] == "a" and json.loads((path / "config.json").read_text()) == {"model": "a"}
