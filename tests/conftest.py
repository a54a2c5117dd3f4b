import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPROUT_SHARED", ROOT.parent / "shared"))
TAXONOMY_CORPUS = SHARED / "instructlab-taxonomy"


def need_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    # Each test its own cache (generation results, document mirrors), never the user's ~/.cache.
    monkeypatch.setenv("SPROUT_CACHE", str(tmp_path / "sprout-cache"))


def run_git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout


@pytest.fixture
def sample_taxonomy(tmp_path) -> Path:
    dest = tmp_path / "taxonomy"
    shutil.copytree(ROOT / "taxonomy", dest)
    return dest
