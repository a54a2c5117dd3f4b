"""The taxonomy checkout a run works on, made safely from a pull request's tree.

A pull request controls every file of the tree: its ``.gitattributes`` can name filter drivers
(git-lfs, or any driver a node's git config defines) that git would run at checkout, with the
PR's ``.lfsconfig`` pointing git-lfs at any URL; its symbolic links can point at /proc or /dev.
So every git call here runs with no system or user configuration, git-lfs smudging off and the
lfs driver blanked, the filter attribute unset for every path ($GIT_DIR/info/attributes), no hooks; links are checked out as small text files (``core.symlinks=false``);
the clone and the pull-request fetch are bounded in time and size and fetch no file contents
beyond those checked out (a partial clone where the server allows it); the tree hash never
follows a link.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path


CLONE_TIMEOUT = 600.0
"""Seconds a clone or fetch of the taxonomy may take (``SPROUT_CHECKOUT_TIMEOUT``)."""
CLONE_MAX_BYTES = 2 * 1024 ** 3
"""Bytes a clone or fetch may add to the checkout (``SPROUT_CHECKOUT_MAX_BYTES``)."""

# Filter drivers come only from git configuration; with none read (GIT_CONFIG_NOSYSTEM, no global)
# a PR's "filter=x" names nothing. git-lfs is also switched off by name, in case a repository
# config (ours) ever gains it.
NO_FILTERS = ("-c", "filter.lfs.smudge=", "-c", "filter.lfs.clean=", "-c", "filter.lfs.process=",
              "-c", "filter.lfs.required=false", "-c", "core.hooksPath=/dev/null",
              "-c", "core.symlinks=false", "-c", "core.fsmonitor=false", "-c", "protocol.ext.allow=never",
              "-c", "submodule.recurse=false", "-c", "credential.helper=")


class CheckoutError(Exception):
    """The taxonomy cannot be checked out within the rules above."""


def git_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_ATTR_NOSYSTEM="1",
               GIT_LFS_SKIP_SMUDGE="1", GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false",
               SSH_ASKPASS="/bin/false")
    return env


def git(repo: Path, *args: str, timeout: float = 120) -> str:
    try:
        p = subprocess.run(["git", "-C", str(repo), *NO_FILTERS, *args], capture_output=True, text=True,
                           env=git_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CheckoutError(f"git {args[0]}: took longer than {timeout:.0f}s") from None
    if p.returncode:
        err = p.stderr.strip().splitlines()
        raise CheckoutError(f"git {' '.join(args)}: {err[-1] if err else 'failed'}")
    return p.stdout.strip()


def _limits() -> tuple[float, int]:
    return (float(os.environ.get("SPROUT_CHECKOUT_TIMEOUT") or CLONE_TIMEOUT),
            int(os.environ.get("SPROUT_CHECKOUT_MAX_BYTES") or CLONE_MAX_BYTES))




def run_bounded(cmd: list[str], watch: Path, what: str) -> None:
    """Run a git command, stopped past the time limit or once ``watch`` has grown past the size
    limit (checked every 0.2 s)."""
    from .taxonomy.sources import run_watched
    timeout, max_bytes = _limits()
    watch.mkdir(parents=True, exist_ok=True)
    why, code, err = run_watched(cmd, git_env(), watch, timeout, max_bytes,
                                 limits=(" (SPROUT_CHECKOUT_TIMEOUT)", " (SPROUT_CHECKOUT_MAX_BYTES)"))
    if why:
        raise CheckoutError(f"{what} {why}; stopped")
    if code:
        raise CheckoutError(f"{what} failed: {err or code}")


def clone(src: str, dest: Path) -> None:
    """Clone without checking out (the ref is checked out next, under the same rules). Commits and
    trees come whole (the diff needs them); file contents only as checked out, where the server
    supports partial clone (others, a plain path among them, send everything, still bounded)."""
    run_bounded(["git", *NO_FILTERS, "clone", "-q", "--no-checkout", "--filter=blob:none", "--no-recurse-submodules",
                 "--", src, str(dest)], dest, f"cloning {src}")
    # a later lazy fetch of file contents (checkout, diff) keeps to the same rules
    git(dest, "config", "core.symlinks", "false")
    git(dest, "config", "filter.lfs.required", "false")
    disable_attributes(dest / ".git")


NEUTRAL_ATTRIBUTES = "* -filter -ident -working-tree-encoding\n"
"""$GIT_DIR/info/attributes outranks every .gitattributes in the tree: whatever driver a pull
request names, and whatever drivers a node's git config defines, no filter runs."""


def disable_attributes(git_dir: Path) -> None:
    info = Path(git_dir) / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "attributes").write_text(NEUTRAL_ATTRIBUTES)


def checkout_ref(repo: Path, ref: str) -> None:
    """Check out ``ref`` detached. A merge commit is on a branch; a pull request's head may only be
    reachable from refs/pull/N/head (forks), so fetch by SHA, then the pull refs, before giving up."""
    if ref.startswith("-") or any(ch.isspace() for ch in ref):
        raise CheckoutError(f"checkout {ref!r}: not a commit or ref name")

    def checkout() -> None:
        # resolved first (rev-parse takes --end-of-options; checkout would read it as a path)
        sha = git(repo, "rev-parse", "-q", "--verify", "--end-of-options", f"{ref}^{{commit}}")
        git(repo, "checkout", "-q", "--detach", sha, timeout=_limits()[0])

    try:
        checkout()
        return
    except CheckoutError as first:
        error = first
    for refspec in (ref, "+refs/pull/*/head:refs/remotes/origin/pull/*"):
        try:
            run_bounded(["git", "-C", str(repo), *NO_FILTERS, "fetch", "-q", "--no-tags", "--filter=blob:none",
                         "--no-recurse-submodules", "--end-of-options", "origin", refspec],
                        repo, f"fetching {refspec}")
        except CheckoutError as e:
            if "longer than" in str(e) or "larger than" in str(e):
                raise
            continue
        try:
            checkout()
            return
        except CheckoutError as e:
            error = e
    raise CheckoutError(f"checkout {ref}: not found in the repository ({error})")


def tree_hash(root: Path) -> str:
    """A hash of the tree's names and contents that never follows a link (a link's text is hashed,
    not what it points at: a link to /proc/self/pagemap or /dev/zero is just a name) and reads
    only regular files; .git is skipped."""
    h = hashlib.sha256()
    root = Path(root)
    entries = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        rel = Path(dirpath).relative_to(root)
        entries += [rel / n for n in filenames]
        # a link to a folder is listed among dirnames and never entered: hash it as a link
        entries += [rel / d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
    for rel in sorted(entries):
        path = root / rel
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            data = b"link\0" + os.fsencode(os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb", opener=_no_follow) as f:
                data = b"file\0" + f.read()
        else:  # a FIFO or a device node: never opened (reading could block or never end)
            data = b"other\0"
        h.update(str(rel).encode("utf-8", "surrogateescape") + b"\0" + data + b"\0")
    return h.hexdigest()[:16]


def _no_follow(path, flags):
    return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
