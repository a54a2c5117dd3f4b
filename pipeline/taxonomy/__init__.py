"""The taxonomy core: parse, validate and diff qna.yaml leaves.

Pure Python (pyyaml + jsonschema): the bot, the CLI, the GitHub Action and the pipeline all use
it, so it never imports torch, ray or GitHub code.
"""

from .diagnostics import RULES, Diagnostic, Severity
from .validate import LeafResult, Options, validate_leaf

__all__ = ["Diagnostic", "LeafResult", "Options", "RULES", "Severity", "validate_leaf"]
