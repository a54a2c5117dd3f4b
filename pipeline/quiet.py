"""Quiet by default: third-party chatter we know to be harmless stays out of Sprout's output
(``--verbose`` or SPROUT_VERBOSE=1 lets it through). Set before the libraries are imported, as
environment variables, so Ray workers and DeepSpeed's subprocesses inherit it too."""

from __future__ import annotations

import glob
import logging
import os
import warnings


def quiet(verbose: bool = False) -> None:
    if verbose or os.environ.get("SPROUT_VERBOSE") == "1":
        os.environ["SPROUT_VERBOSE"] = "1"
        return
    # transformers: per-load "Loading weights" / "Writing model shards" bars and generation-flag notes
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # DeepSpeed: "Setting accelerator to CPU. If you have GPU ..." on every start without a GPU
    # (no NVIDIA device node: told up front; importing torch here would slow `sprout validate`)
    if not glob.glob("/dev/nvidia[0-9]*"):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    for name in ("DeepSpeed", "deepspeed", "transformers", "accelerate", "ray", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for pattern in (r".*TRANSFORMERS_CACHE.*", r".*torch\.utils\._pytree.*", r".*pkg_resources is deprecated.*",
                    r".*`torch_dtype` is deprecated.*", r".*generation flags are not valid.*"):
        warnings.filterwarnings("ignore", message=pattern)
