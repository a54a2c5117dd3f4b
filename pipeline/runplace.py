"""Where one run's files live: its folder in the storage (pipeline/storage.py), the local copy the
driver's stages read and write, the model registry beside them, and models by reference.

With a local storage folder (the default) the run folder *is* the local copy and nothing moves:
Sprout behaves as it always has. With an object store the driver works in a node-local scratch
folder, pushes each stage's files to ``<storage>/<run>/`` when the stage ends, and models are
named by URI (``s3://bucket/prefix/<run>/model/skills``) and downloaded where they are needed."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from .storage import Storage, cached_copy, open_storage, scratch_dir

REGISTRY = "models.json"
_NOT_PUSHED = ("checkout/", "model/checkpoints/", "model/ray_stage/")
"""Not copied to the store: the clone (rebuilt from git), and training's own checkpoints (Ray
Train reports those to ``<run>/ray`` itself)."""


class RunPlace:
    def __init__(self, storage: str, out: str | None, name: str):
        self.store: Storage = open_storage(storage)
        self.remote = self.store.remote
        if not self.remote:
            self.root = Path(storage)
            self.local = Path(out) if out else self.root / name
            self.rel = None
        else:
            rel = (out or name).strip("/")
            if not re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", rel) or ".." in rel.split("/"):
                raise ValueError(f"--out {out!r}: with object storage, a run name (letters, digits, . _ - /)")
            self.rel = rel
            self.root = scratch_root(self.store)  # the driver's working copy of the storage root
            self.local = self.root / rel
            # a rerun with the same --out resumes: the stages' files come back from the store
            self.store.download(rel, self.local, keep=lambda n: not n.startswith(_NOT_PUSHED))
        self.local.mkdir(parents=True, exist_ok=True)
        self._pushed: dict[str, tuple] = {}
        self._models: dict[str, str] = {}  # local copy -> the name it was fetched by

    # -- the run folder ------------------------------------------------------------------------
    def name(self, sub: str = "") -> str:
        """What the registry and reports record for ``sub`` of this run: a path or a URI."""
        if not self.remote:
            return str((self.local / sub).resolve()) if sub else str(self.local.resolve())
        return self.store.name(f"{self.rel}/{sub}" if sub else self.rel)

    def uri(self, sub: str) -> str:
        """``sub`` of this run as a URI a worker on another node opens (endpoint options kept)."""
        return self.store.uri_of(f"{self.rel}/{sub}")

    def push(self) -> None:
        """Copy to the store the files changed since the last push (nothing with a local store)."""
        if not self.remote:
            return
        changed = {}
        for p in self.local.rglob("*"):
            if p.is_file():
                rel = p.relative_to(self.local).as_posix()
                st = p.stat()
                if not rel.startswith(_NOT_PUSHED) and self._pushed.get(rel) != (st.st_size, st.st_mtime_ns):
                    changed[rel] = (st.st_size, st.st_mtime_ns)
        names = set(changed)
        # manifest.json last: it says which stages are done, so it never runs ahead of their files
        self.store.upload(self.local, self.rel, keep=lambda n: n in names, last=("manifest.json",))
        self._pushed.update(changed)

    def pull_model(self, sub: str) -> None:
        """The exported models under ``sub`` (training wrote them to the store) into the local copy."""
        if self.remote:
            self.store.download(f"{self.rel}/{sub}", self.local / sub,
                                keep=lambda n: not n.startswith(("checkpoints/", "ray_stage/")))
            for p in (self.local / sub).rglob("*"):  # already in the store: never pushed back
                if p.is_file():
                    st = p.stat()
                    self._pushed[p.relative_to(self.local).as_posix()] = (st.st_size, st.st_mtime_ns)

    # -- the registry --------------------------------------------------------------------------
    def registry(self) -> list[dict]:
        data = self.store.read_bytes(REGISTRY)
        return json.loads(data) if data else []

    def register(self, entry: dict) -> None:
        """Add or replace ``entry`` (by id); two runs registering at once both land (see
        ``Storage.update_json``)."""
        self.store.update_json(REGISTRY, lambda models: [m for m in (models or []) if m["id"] != entry["id"]]
                               + [entry], default=[])

    # -- models by reference -------------------------------------------------------------------
    def model_exists(self, ref: str) -> bool:
        rel = self.store.locate(ref) if self.remote else None
        if rel is None:
            return Path(ref).exists()
        return self.store.exists(f"{rel}/config.json")

    def local_model(self, ref: str | Path) -> Path:
        """A folder ``from_pretrained`` opens for a registry/report reference (a path, or a URI in
        the store, downloaded once per node)."""
        ref = str(ref)
        rel = self.store.locate(ref) if self.remote else None
        if rel is None:
            return Path(ref)
        if self.rel and rel.startswith(self.rel + "/") and (self.local / rel[len(self.rel) + 1:] / "config.json").exists():
            path = self.local / rel[len(self.rel) + 1:]
        else:
            path = cached_copy(self.store, rel)
        self._models[str(path)] = rel
        return path

    def name_of(self, local: Path) -> str:
        """The reference to record for a model folder this run used (its URI when it came from the store)."""
        rel = self._models.get(str(local))
        return self.store.name(rel) if rel is not None else str(local)

    def local_files(self, ref: str, names: tuple[str, ...]) -> list[Path]:
        """Files of another run folder (a registry reference) that exist, as local paths."""
        rel = self.store.locate(ref) if self.remote else None
        if rel is None:
            return [p for p in (Path(ref) / n for n in names) if p.exists()]
        dest = scratch_dir("runs", hashlib.sha256(ref.encode()).hexdigest()[:12])
        self.store.download(rel, dest, keep=lambda n: n in names)
        return [p for p in (dest / n for n in names) if p.exists()]

    def shared_model(self, local: Path) -> str:
        """A URI every node can read ``local`` from: where it was fetched from, else a copy in
        ``<storage>/students/`` (uploaded once, e.g. the converted base student)."""
        rel = self._models.get(str(local))
        if rel is None:
            marker = local / "sprout_student.json"
            digest = hashlib.sha256((local / "config.json").read_bytes()
                                    + (marker.read_bytes() if marker.exists() else b"")).hexdigest()[:12]
            rel = f"students/{local.name}-{digest}"
            if not self.store.exists(f"{rel}/config.json"):
                self.store.upload(local, rel, last=("config.json",))
        return self.store.uri_of(rel)

    def student(self, spec: str, taxonomy_root: Path, resolve, log) -> Path:
        """``--student``: the tiny smoke student is kept in the storage (students/tiny), so every
        run and node starts from the same one; everything else resolves as before."""
        if not (self.remote and spec == "tiny"):
            return resolve(spec, self.root, taxonomy_root, log=log)
        if self.store.exists("students/tiny/config.json"):
            return self.local_model(self.store.name("students/tiny"))
        built = resolve(spec, self.root, taxonomy_root, log=log)  # root/students/tiny, in scratch
        self.store.upload(built, "students/tiny", last=("config.json",))
        self._models[str(built)] = "students/tiny"
        return built


def scratch_root(store: Storage) -> Path:
    """The node-local working copy of an object store's root (run folders under it by name)."""
    return scratch_dir("storage", hashlib.sha256(store.name().encode()).hexdigest()[:12])
