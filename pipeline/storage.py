"""Where the model registry, run folders, reports, checkpoints and models live: a local folder
(the default) or an object store (``s3://bucket/prefix``, ``gs://bucket/prefix``; pyarrow's
filesystems). Every node reads and writes through it, so no shared disk is assumed.

An S3-compatible store (MinIO, Ceph, moto) is reached with pyarrow's URI options, e.g.
``s3://bucket/prefix?endpoint_override=http://10.0.0.5:9000&scheme=http`` (pyarrow ignores
``AWS_ENDPOINT_URL``); credentials come from the usual ``AWS_*`` variables or the node's role."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

STORAGE_ENV = "SPROUT_STORAGE"
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


class StorageError(Exception):
    """The storage cannot be opened or written; the message says which URI and why."""


def is_uri(value: str | os.PathLike | None) -> bool:
    """An object-store URI (a local path, or file://, is not)."""
    return bool(value) and bool(_URI.match(str(value))) and not str(value).startswith("file://")


def scratch_dir(*parts: str) -> Path:
    """A node-local working folder (under this process's temporary directory): the copy a stage
    or a rank works on while its storage is a bucket. Never a place another node reads."""
    path = Path(tempfile.gettempdir()) / f"sprout-{os.getuid()}" / Path(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


class Storage:
    """A root (local folder or object-store URI) and the few operations Sprout needs on it.
    ``rel`` arguments are '/'-separated paths under the root."""

    def __init__(self, uri: str | os.PathLike):
        uri = str(uri)
        self.remote = is_uri(uri)
        if self.remote:
            import pyarrow.fs as pafs
            try:
                self.fs, root = pafs.FileSystem.from_uri(uri)
            except Exception as e:  # pyarrow's message names the bad part
                raise StorageError(f"storage {redact(uri)}: {e}") from None
            split = urlsplit(uri)
            self.scheme, self.query = split.scheme.lower(), split.query
            self.root = root.rstrip("/")
        else:
            import pyarrow.fs as pafs
            self.fs = pafs.LocalFileSystem()
            self.scheme, self.query = "", ""
            self.root = str(Path(uri.removeprefix("file://")).resolve())
        self.uri = uri

    def __repr__(self) -> str:
        return f"Storage({redact(self.uri)!r})"

    # -- names ------------------------------------------------------------------------------
    def path(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` (a local path, or bucket/key for pyarrow)."""
        rel = rel.strip("/")
        return f"{self.root}/{rel}" if rel else self.root

    def name(self, rel: str = "") -> str:
        """What people and the registry see: a local path, or a URI without the query string."""
        return f"{self.scheme}://{self.path(rel)}" if self.remote else self.path(rel)

    def uri_of(self, rel: str = "") -> str:
        """A URI that opens ``rel`` again (endpoint options kept), e.g. for a worker on another node."""
        return self.name(rel) + (f"?{self.query}" if self.query else "")

    def child(self, rel: str) -> "Storage":
        return Storage(self.uri_of(rel))

    def sibling(self, name: str) -> "Storage":
        """``name`` beside this root (``<run>/model`` -> ``<run>/ray``)."""
        return Storage(self.name().rsplit("/", 1)[0] + "/" + name + (f"?{self.query}" if self.query else ""))

    @classmethod
    def on(cls, fs, path: str) -> "Storage":
        """A root on a pyarrow filesystem someone else opened (a Ray Train checkpoint's)."""
        import pyarrow.fs as pafs
        self = cls.__new__(cls)
        self.fs, self.root, self.uri = fs, str(path).rstrip("/"), str(path)
        self.remote = not isinstance(fs, pafs.LocalFileSystem)
        self.scheme, self.query = (fs.type_name if self.remote else ""), ""
        return self

    def locate(self, ref: str) -> str | None:
        """``ref`` (a name from ``name()``) relative to this root, or None when it is elsewhere."""
        base = self.name()
        ref = ref.split("?", 1)[0] if self.remote else str(Path(ref).resolve()) if not is_uri(ref) else ref
        if ref == base:
            return ""
        return ref[len(base) + 1:] if ref.startswith(base + "/") else None

    # -- files ------------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        import pyarrow.fs as pafs
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(self.path(rel)) as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            if "not found" in str(e).lower() or "nosuchkey" in str(e).lower():
                return None
            raise

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Whole-object write (atomic on a local disk through a rename; objects are atomic)."""
        if not self.remote:
            dest = Path(self.path(rel))
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            return
        with self.fs.open_output_stream(self.path(rel)) as f:
            f.write(data)

    def files(self, rel: str = "") -> dict[str, int]:
        """Every file under ``rel``: path relative to ``rel`` -> size (empty when absent)."""
        import pyarrow.fs as pafs
        base = self.path(rel)
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        return {i.path[len(base) + 1:]: i.size for i in infos if i.type == pafs.FileType.File}

    def upload(self, local: Path, rel: str, keep: Callable[[str], bool] = lambda _: True,
               last: tuple[str, ...] = ()) -> list[str]:
        """Copy a local file or folder to ``rel`` (files ``keep`` accepts); the files named in
        ``last`` go after all the others (a marker that says the rest is complete)."""
        local = Path(local)
        if local.is_file():
            self._put(local, self.path(rel))
            return [rel]
        names = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
        names = [n for n in names if keep(n)]
        names = [n for n in names if n not in last] + [n for n in names if n in last]
        for n in names:
            self._put(local / n, self.path(f"{rel}/{n}"))
        return names

    def _put(self, src: Path, dest: str) -> None:
        if not self.remote:
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            if Path(dest).resolve() != src.resolve():
                tmp = Path(dest).with_name(f".{Path(dest).name}.tmp{os.getpid()}")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dest)
            return
        with open(src, "rb") as f, self.fs.open_output_stream(dest) as out:
            shutil.copyfileobj(f, out, 8 << 20)

    def download(self, rel: str, local: Path, keep: Callable[[str], bool] = lambda _: True) -> list[str]:
        """Copy the files under ``rel`` that ``keep`` accepts into ``local`` (a file of the same
        size already there is kept); each lands by a rename, so no reader sees half a file."""
        local = Path(local)
        got = []
        for name, size in sorted(self.files(rel).items()):
            if not keep(name):
                continue
            dest = local / name
            if dest.exists() and dest.stat().st_size == size:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.dl{os.getpid()}-{random.getrandbits(32):x}")
            with self.fs.open_input_stream(self.path(f"{rel}/{name}")) as f, open(tmp, "wb") as out:
                shutil.copyfileobj(f, out, 8 << 20)
            os.replace(tmp, dest)
            got.append(name)
        return got

    # -- one JSON document, updated by several writers ----------------------------------------
    def update_json(self, rel: str, change: Callable[[object], object], default=None, attempts: int = 30):
        """Read-modify-write ``rel`` so that two writers never lose each other's change: under a
        file lock on a local disk, by a conditional write on S3 (If-Match on the ETag read, or
        If-None-Match for a new object), retried when another writer got there first."""
        if not self.remote:
            import fcntl
            dest = Path(self.path(rel))
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest.with_name(dest.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                value = change(json.loads(dest.read_text()) if dest.exists() else default)
                self.write_bytes(rel, json.dumps(value, indent=2).encode())
                return value
        if self.scheme not in ("s3", "s3a"):
            raise StorageError(f"{self.scheme}:// storage: the model registry needs a conditional write, "
                               "which Sprout implements for local folders and s3:// (S3, MinIO, Ceph)")
        client, bucket, key = self._s3(rel)
        from botocore.exceptions import ClientError
        for attempt in range(attempts):
            try:
                got = client.get_object(Bucket=bucket, Key=key)
                etag, value = got["ETag"], json.loads(got["Body"].read())
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                    raise
                etag, value = None, default
            value = change(value)
            body = json.dumps(value, indent=2).encode()
            cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **cond)
                return value
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code")
                if code not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                    raise
            time.sleep(random.uniform(0.05, 0.2) * (1 + attempt))  # another writer won: read again
        raise StorageError(f"{self.name(rel)}: still contended after {attempts} attempts")

    def _s3(self, rel: str):
        """A boto3 client for the same endpoint pyarrow uses (its URI options), bucket and key."""
        try:
            import boto3
        except ImportError:
            raise StorageError("s3:// storage needs boto3 for the registry's conditional write: "
                               "pip install boto3") from None
        q = {k: v[-1] for k, v in parse_qs(self.query).items()}
        endpoint = q.get("endpoint_override")
        if endpoint and "://" not in endpoint:
            endpoint = f"{q.get('scheme', 'https')}://{endpoint}"
        region = q.get("region") or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") \
            or "us-east-1"
        client = boto3.client("s3", endpoint_url=endpoint, region_name=region)
        bucket, _, prefix = self.path(rel).partition("/")
        return client, bucket, prefix


def redact(uri: str) -> str:
    """A URI fit for logs: user:password@ and secret query options removed."""
    s = urlsplit(str(uri))
    if not s.scheme:
        return str(uri)
    netloc = s.netloc.rsplit("@", 1)[-1]
    query = "&".join(p for p in s.query.split("&") if p and not re.match(r"(?i)(secret|access|session|token)", p))
    return f"{s.scheme}://{netloc}{s.path}" + (f"?{query}" if query else "")


def cached_copy(store: Storage, rel: str, kind: str = "models") -> Path:
    """A node-local copy of the folder ``rel`` (a model), downloaded once per node and reused:
    made in a private folder and renamed into place, so ranks on one node never see half of it."""
    key = hashlib.sha256(store.name(rel).encode()).hexdigest()[:16]
    dest = scratch_dir("cache", kind) / f"{Path(store.path(rel)).name}-{key}"
    if dest.is_dir():
        return dest
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        if not store.download(rel, tmp):
            raise StorageError(f"{store.name(rel)}: nothing there")
        try:
            tmp.rename(dest)
        except OSError:  # another rank on this node made it first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def open_storage(value: str | None, runs_root: str | None = None) -> Storage:
    """``--storage`` / SPROUT_STORAGE, else the runs root (SPROUT_RUNS_ROOT's old meaning)."""
    return Storage(value or os.environ.get(STORAGE_ENV) or runs_root or "runs")
