"""The verdict's error rates, measured by simulation with the project's own code (fast)."""

import random

import numpy as np
import pytest

from pipeline.eval.stats import holm, sign_flip_interval, sign_flip_p
from pipeline.eval.verdict import NOT_ENOUGH, VerdictConfig, classify, leaf_test
from pipeline.sdg.generate import leaf_info
from pipeline.taxonomy.reader import iter_leaves
from tests.conftest import ROOT

RUNS = 1000


def sample_taxonomy_sizes() -> dict[str, tuple[str, int]]:
    """Per leaf of the sample taxonomy: (kind, paired items the verdict tests), from the real split."""
    out = {}
    for leaf in iter_leaves(ROOT / "taxonomy"):
        info = leaf_info(leaf, 0)
        if info["kind"] == "knowledge":
            out[leaf.path] = ("knowledge", sum(1 for h in info["heldout"] if h["facts"]))
        else:
            out[leaf.path] = ("skill", len(info["heldout"]))
    return out


def simulate_null_run(sizes, sd: float, rng: np.random.Generator) -> dict:
    """A new model that changed nothing: knowledge hits are independent draws of the same
    per-item chance for both models; skill scores are the same per-item mean plus noise sd."""
    tests = {}
    for path, (kind, n) in sizes.items():
        if kind == "knowledge":
            p = rng.uniform(0.1, 0.9, n)
            dep, new = (rng.random(n) < p).astype(float), (rng.random(n) < p).astype(float)
            base = np.zeros(n)  # the restating baseline carries no fact
        else:
            mu = rng.uniform(0.2, 0.6, n)
            dep, new, base = (mu + rng.normal(0, sd, n) for _ in range(3))
        tests[path] = leaf_test(list(dep), list(new), list(base), interval=False)
    return classify(tests)


def test_the_exact_sign_flip_test_enumerates_and_matches_the_sign_test():
    assert sign_flip_p([1, 1, 1], "greater") == pytest.approx(1 / 8)
    assert sign_flip_p([0.5, 0.2, -0.1, 0.3], "greater") == pytest.approx(2 / 16)  # obs and one flip tie
    assert sign_flip_p([1, 1, 0, 0, -1], "greater") == pytest.approx(sign_flip_p([2, 2, -2], "greater"))
    assert sign_flip_p([0, 0], "less") == 1.0
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == {"a": 0.03, "b": 0.06, "c": 0.06}


def test_two_items_are_not_enough_evidence_whatever_they_say():
    tests = classify({"skill": leaf_test([0.9, 0.8], [0.1, 0.0], [0.0, 0.0])})
    assert tests["skill"]["class"] == NOT_ENOUGH and tests["skill"]["interval"] is None


@pytest.mark.parametrize("sd", [0.1, 0.3])
def test_a_model_that_changed_nothing_rejects_at_most_5_percent_of_runs(sd):
    sizes = sample_taxonomy_sizes()
    rng = np.random.default_rng(int(sd * 100))
    rejected = improved = 0
    for _ in range(RUNS):
        classes = [t["class"] for t in simulate_null_run(sizes, sd, rng).values()]
        rejected += "Regressed" in classes
        improved += classes.count("Improved")
    print(f"sd {sd}: {rejected / RUNS:.3f} of {RUNS} null runs rejected; false Improved per leaf "
          f"{improved / (RUNS * len(sizes)):.4f}")
    assert rejected / RUNS <= 0.05
    assert improved / (RUNS * len(sizes)) <= 0.05


def test_a_real_gain_of_0_2_on_a_10_item_leaf_is_improved_at_least_80_percent():
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(RUNS):
        mu = rng.uniform(0.2, 0.6, 10)
        dep, base = mu + rng.normal(0, 0.1, 10), mu + rng.normal(0, 0.1, 10)
        new = mu + 0.2 + rng.normal(0, 0.1, 10)
        t = classify({"leaf": leaf_test(list(dep), list(new), list(base), interval=False)})["leaf"]
        hits += t["class"] == "Improved"
    print(f"power at +0.2, n=10, noise sd 0.1 per model: {hits / RUNS:.3f}")
    assert hits / RUNS >= 0.80


@pytest.mark.parametrize("n,sd", [(10, 0.1), (10, 0.3), (12, 0.2)])
def test_printed_intervals_cover_within_3_points_of_their_level(n, sd):
    rng = np.random.default_rng(n * 10 + int(sd * 10))
    level, covered, sims = VerdictConfig().level, 0, RUNS
    for _ in range(sims):
        gains = 0.1 + rng.normal(0, sd, n) - rng.normal(0, sd, n)
        lo, hi = sign_flip_interval(gains, level)
        covered += lo <= 0.1 <= hi
    print(f"n {n}, sd {sd}: {covered / sims:.3f} of {sims} intervals cover the true gain (stated {level})")
    assert abs(covered / sims - level) <= 0.03
