"""Benchmark: Sprout's validator vs InstructLab's reference (instructlab-schema TaxonomyParser
with yamllint on, as the taxonomy repository's CI runs it), on the same leaves in one process.

    python bench/validate.py            # the 147-leaf 2024 snapshot, 5 rounds
    python bench/validate.py --quick    # 2 rounds

Also times `sprout validate --diff` for a one-leaf change as a whole process (start-up included).
The last line is one JSON object for machines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.taxonomy.reader import find_leaves, read_leaf  # noqa: E402

SNAPSHOT = "instructlab-taxonomy/snapshot-2024-08-20"


def time_ours(files: list[Path], rounds: int) -> tuple[float, int]:
    times, invalid = [], 0
    for _ in range(rounds):
        t = time.perf_counter()
        results = [read_leaf(f) for f in files]
        times.append(time.perf_counter() - t)
        invalid = sum(not r.ok for r in results)
    return min(times), invalid  # best of N: the least disturbed by other load on the machine


def time_reference(files: list[Path], rounds: int) -> tuple[float | None, int]:
    try:
        from instructlab.schema.taxonomy import TaxonomyParser
    except ImportError:
        return None, 0
    import logging
    logging.getLogger("instructlab.schema").setLevel(logging.CRITICAL)
    # schema_version=0: each file's own version, as the taxonomy CI does.
    parser = TaxonomyParser(schema_version=0, message_format="logging")
    times, invalid = [], 0
    for _ in range(rounds):
        t = time.perf_counter()
        results = [parser.parse(f) for f in files]
        times.append(time.perf_counter() - t)
        invalid = sum(r.errors > 0 for r in results)
    return min(times), invalid  # best of N: the least disturbed by other load on the machine


def time_diff_process(corpus: Path, rounds: int) -> float:
    """Whole `sprout validate --diff HEAD` process for a one-leaf change in a git checkout."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "taxonomy"
        shutil.copytree(corpus, repo)
        env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
               "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
            subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
        leaf = next(find_leaves(repo))
        leaf.write_text(leaf.read_text() + "# edited\n")
        sprout = shutil.which("sprout", path=str(Path(sys.executable).parent)) or "sprout"
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            p = subprocess.run([sprout, "validate", "--diff", "HEAD", "."], cwd=repo,
                               capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            assert "1 changed leaves" in p.stdout, p.stdout + p.stderr
        return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="a taxonomy folder (default: the shared 147-leaf snapshot)")
    ap.add_argument("--quick", action="store_true", help="fewer rounds (CI smoke run)")
    args = ap.parse_args()
    if args.corpus is None:
        from _shared import shared
        args.corpus = shared(SNAPSHOT, "the 147-leaf InstructLab taxonomy snapshot",
                             "timing the sample taxonomy instead (too small to read the ratio as the goal's)") \
            or ROOT / "taxonomy"
    if not args.corpus.is_dir():
        sys.exit(f"corpus {args.corpus} not found")
    rounds = 2 if args.quick else 5
    files = list(find_leaves(args.corpus))
    read_leaf(files[0])  # warm caches (schemas) for both sides equally: neither is timed cold
    ours, ours_invalid = time_ours(files, rounds)
    ref, ref_invalid = time_reference(files, rounds)
    diff_s = time_diff_process(args.corpus, 3 if args.quick else 7)
    n = len(files)
    print(f"{'validator':<34}{'files':>7}{'seconds':>10}{'files/s':>10}{'invalid':>9}")
    print(f"{'sprout (line-accurate schema)':<34}{n:>7}{ours:>10.3f}{n / ours:>10.0f}{ours_invalid:>9}")
    if ref is not None:
        print(f"{'instructlab-schema 0.4.2 + yamllint':<34}{n:>7}{ref:>10.3f}{n / ref:>10.0f}{ref_invalid:>9}")
        from _shared import goal
        print(f"ratio: {ref / ours:.1f}x faster")
        print(goal("validator speed-up", round(ref / ours, 1), 20, unit="x"))
    else:
        print("reference not installed (pip install instructlab-schema==0.4.2 yamllint)")
    from _shared import goal
    print(f"sprout validate --diff, one changed leaf, whole process: {diff_s:.3f} s")
    print(goal("validate --diff process time", round(diff_s, 3), 0.3, higher_is_better=False, unit=" s"))
    print(json.dumps({"bench": "validate", "corpus": str(args.corpus), "ratio": round(ref / ours, 2) if ref else None,
                      "files": n, "sprout_s": round(ours, 4), "reference_s": round(ref, 4) if ref else None,
                      "sprout_files_per_s": round(n / ours), "reference_files_per_s": round(n / ref) if ref else None,
                      "diff_process_s": round(diff_s, 3)}))


if __name__ == "__main__":
    main()
