"""The wheel holds every file the code can open and nothing else: each git-tracked file under
pipeline/ and bot/ (modules and package data: schemas, prompts, probe, replay), every entry of
pipeline/package_data.py, the ``sprout`` console script, and no tests, caches or stray folders.
The sdist holds the same sources plus what builds them.   python .ci/wheel_files.py WHEEL [SDIST]"""

import ast
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGES = ("pipeline", "bot")


def main(wheel: str, sdist: str | None = None) -> int:
    tracked = set(subprocess.run(["git", "ls-files", "-z", *PACKAGES], check=True, capture_output=True,
                                 text=True).stdout.split("\0")) - {""}
    tracked = {p for p in tracked if Path(p).exists()}  # deleted in the work tree, not committed yet
    names = set(zipfile.ZipFile(wheel).namelist())
    problems = [f"missing from the wheel: {p}" for p in sorted(tracked - names)]
    dist_info = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    problems += [f"not a tracked source file: {n}" for n in sorted(names - tracked - dist_info)]
    # The data the code names (pipeline/package_data.py), folder entries included.
    tree = ast.parse(Path("pipeline/package_data.py").read_text())
    data = next(ast.literal_eval(n.value) for n in tree.body
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "DATA")
    for name, rel in data.items():
        prefix = f"pipeline/{rel}"
        if not any(n == prefix or n.startswith(prefix + "/") for n in names):
            problems.append(f"package data {name!r} ({prefix}) is not in the wheel")
    entry_points = next((n for n in dist_info if n.endswith("entry_points.txt")), None)
    if not entry_points or "sprout = pipeline.cli:main" not in zipfile.ZipFile(wheel).read(entry_points).decode():
        problems.append("no `sprout` console script")
    if sdist:
        with tarfile.open(sdist) as tar:
            members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
        problems += [f"missing from the sdist: {p}" for p in
                     sorted((tracked | {"pyproject.toml", "README.md"}) - members)]
    for p in problems:
        print("wheel check:", p)
    print(f"wheel check: {len(names)} files in {Path(wheel).name}, {len(tracked)} tracked under "
          f"{', '.join(PACKAGES)}: {'FAILED' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
