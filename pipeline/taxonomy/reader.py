"""Find and read leaves on disk, safely: bounded reads, no escape through symlinks."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from . import diagnostics as d
from .loader import too_large
from .rules import KNOWN_TREES
from .validate import LeafResult, Options, validate_leaf

LEAF_NAMES = ("qna.yaml", "qna.yml")


def split_taxonomy_path(path: Path) -> tuple[Path, PurePosixPath]:
    """(taxonomy root, path inside it), found from the last known top-level folder name."""
    root, rel = _split(str(path))
    return Path(root), PurePosixPath(rel)


def _split(path: str) -> tuple[str, str]:
    parts = path.split(os.sep)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in KNOWN_TREES:
            return os.sep.join(parts[:i]) or ".", "/".join(parts[i:])
    return os.path.dirname(path) or ".", parts[-1]


def display(path: str) -> str:
    cwd = os.getcwd() + os.sep
    return path[len(cwd):] if path.startswith(cwd) else path


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """Read at most ``max_bytes + 1`` bytes so that the size check never loads a huge file."""
    with open(path, "rb") as f:
        return f.read(max_bytes + 1)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError, RuntimeError):
        return False


def read_leaf(path: Path, options: Options = Options(), root: Path | None = None) -> LeafResult:
    path = os.path.abspath(path)  # plain strings: pathlib costs ~80 us a leaf on this hot path
    tax_root, rel = _split(path)
    root = Path(os.path.abspath(root) if root else tax_root)
    shown = display(path)
    result = LeafResult(path=rel, file=shown)
    if os.path.islink(path) and not _inside(Path(path), root):
        result.diagnostics.append(d.make(d.PATH_ESCAPE, shown, 1, 1,
                                         "this leaf is a symbolic link pointing outside the taxonomy",
                                         "Commit the file itself; links out of the tree are refused."))
        return result
    try:
        size = os.stat(path).st_size
        if size > options.max_bytes and os.path.isfile(path):
            e = too_large(size, options.max_bytes)
            result.diagnostics.append(d.make(e.rule, shown, 1, 1, e.message, e.hint))
            return result
        raw = read_bounded(path, options.max_bytes)
    except IsADirectoryError:
        raw = None
        msg = "is a folder, not a file"
    except FileNotFoundError:
        raw = None
        msg = "does not exist"
    except OSError as e:
        raw = None
        msg = f"cannot be read: {e.strerror or e}"
    if raw is None:
        result.diagnostics.append(d.make(d.FILE_UNREADABLE, shown, 1, 1, f"the file {msg}"))
        return result

    def attribution() -> bytes | None:
        sib = os.path.join(os.path.dirname(path), "attribution.txt")
        if not os.path.isfile(sib) or (os.path.islink(sib) and not _inside(Path(sib), root)):
            return None
        try:
            return read_bounded(sib, options.max_bytes)
        except OSError:
            return None

    return validate_leaf(rel, raw, attribution=attribution, file=shown, options=options)


def find_leaves(root: Path) -> Iterator[Path]:
    """Every qna.yaml (and misnamed qna.yml) under ``root``, in sorted order; the known
    top-level trees only when ``root`` is a taxonomy root."""
    root = Path(root)
    tops = [root / t for t in KNOWN_TREES if (root / t).is_dir()]
    for top in tops or [root]:
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames[:] = sorted(n for n in dirnames if n != ".git")  # the reference visits dot-folders too
            for name in sorted(filenames):
                if name in LEAF_NAMES:
                    yield Path(dirpath) / name


def expand(paths: Iterable[Path]) -> Iterator[Path]:
    for p in paths:
        p = Path(p)
        if p.is_dir():
            yield from find_leaves(p)
        else:
            yield p


def validate_paths(paths: Iterable[Path], options: Options = Options()) -> list[LeafResult]:
    return [read_leaf(p, options) for p in expand(paths)]


def iter_leaves(root: Path, options: Options = Options()) -> Iterator[LeafResult]:
    """Parsed and validated leaves of a taxonomy; ``data`` is set when the leaf parsed."""
    root = Path(root)
    for p in find_leaves(root):
        yield read_leaf(p, options, root=root)
