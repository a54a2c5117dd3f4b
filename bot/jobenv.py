"""The environment a Ray job may see: an allow-list, never the bot's GitHub credentials."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

# Exact names a job needs (paths, locale, caches, Sprout's own job settings).
ALLOWED = {
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "SHELL",
    "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUNBUFFERED", "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_EXTENSIONS_DIR", "TORCH_HOME", "XDG_CACHE_HOME",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NO_COLOR",
    "SPROUT_CACHE", "SPROUT_DOCUMENT_HOSTS", "SPROUT_DOCUMENT_FETCH_TIMEOUT",
    "SPROUT_DOCUMENT_FETCH_MAX_BYTES", "SPROUT_TEACHER_API_KEY", "SPROUT_SHARED",
}
# Prefixes of library settings that carry no credentials of ours.
PREFIXES = ("LC_", "RAY_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "DS_", "NCCL_", "GLOO_")
# Never, whatever the lists above say.
DENIED = {"RAY_ADDRESS", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RAY_AUTH_TOKEN"}


def job_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of ``env`` (default: this process's), with this Python's folder
    first on PATH so that jobs run `sprout` and `python` from the bot's installation."""
    env = os.environ if env is None else env
    out = {k: v for k, v in env.items()
           if k not in DENIED and not k.startswith(("SPROUT_GITHUB", "SPROUT_WEBHOOK", "GITHUB_", "GH_"))
           and (k in ALLOWED or k.startswith(PREFIXES))}
    out["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    return out
