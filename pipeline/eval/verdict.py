"""Classes per leaf and the run's decision, from paired per-item scores: a pure function, so the
report and the simulations that measure its error rates (tests/test_verdict_stats.py) run the
same code.

Per leaf, with ``n`` paired items (knowledge: 0/1 key-fact hits; skills: answer scores):

- fewer than ``min_items``: **Not enough evidence** (neither rejects a run nor claims a leaf was
  learnt; with 2 items no test can say anything);
- **Improved**: the new model beats the deployed model *and* the restating baseline, each by an
  exact one-sided sign-flip test at ``alpha`` (both must hold: an intersection-union test, no
  correction needed);
- **Regressed**: the new model is below the deployed one with a Holm-adjusted p-value (over all
  leaves with enough evidence) at most ``alpha``; any Regressed leaf rejects the run, so a model
  that changed nothing is rejected with probability at most ``alpha``;
- otherwise **No change**; ``lower`` flags one whose unadjusted test says lower (its interval
  lies below zero) but does not survive the correction: "lower, not significant".
"""

from __future__ import annotations

from dataclasses import dataclass

from .stats import holm, sign_flip_interval, sign_flip_p

NOT_ENOUGH = "Not enough evidence"


@dataclass(frozen=True)
class VerdictConfig:
    alpha: float = 0.05
    """Error rate of each claim (Improved per leaf; Regressed over the whole run, by Holm)."""
    min_items: int = 10
    """Paired items a leaf needs before it is classed at all."""
    level: float = 0.90
    """Confidence of the printed interval of the mean gain (sign-flip inversion)."""


def _mean(xs) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def leaf_test(deployed: list[float], new: list[float], baseline: list[float] | None,
              config: VerdictConfig = VerdictConfig(), interval: bool = True) -> dict:
    """One leaf's tests (no class yet: Regressed needs every leaf's p-value)."""
    gains = [n - d for n, d in zip(new, deployed)]
    out = {"items": len(gains), "gain": _mean(gains), "p_up": sign_flip_p(gains, "greater"),
           "p_down": sign_flip_p(gains, "less")}
    if baseline is not None:
        out["p_baseline"] = sign_flip_p([n - b for n, b in zip(new, baseline)], "greater")
    iv = sign_flip_interval(gains, config.level) if interval and len(gains) >= config.min_items else None
    out["interval"] = list(iv) if iv else None
    return out


def classify(tests: dict[str, dict], config: VerdictConfig = VerdictConfig()) -> dict[str, dict]:
    """Adds ``class``, ``p_down_holm`` and ``lower`` to each leaf's test; Holm runs over the
    leaves with enough items."""
    tested = {k: t["p_down"] for k, t in tests.items() if t["items"] >= config.min_items}
    adjusted = holm(tested)
    for k, t in tests.items():
        if t["items"] < config.min_items:
            t.update({"class": NOT_ENOUGH, "p_down_holm": None, "lower": False})
            continue
        t["p_down_holm"] = adjusted[k]
        beats_baseline = t.get("p_baseline", 0.0) <= config.alpha
        if t["gain"] > 0 and t["p_up"] <= config.alpha and beats_baseline:
            t["class"] = "Improved"
        elif t["gain"] < 0 and adjusted[k] <= config.alpha:
            t["class"] = "Regressed"
        else:
            t["class"] = "No change"
        t["lower"] = t["class"] == "No change" and t["gain"] < 0 and (
            t["p_down"] <= config.alpha or (t["interval"] is not None and t["interval"][1] < 0))
    return tests
