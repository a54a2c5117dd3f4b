"""Benchmark: deduplication of generated samples — Sprout's exact hash + MinHash LSH against the
Self-Instruct novelty filter (pairwise ROUGE-L with `rouge-score`, drop when ROUGE-L F > 0.7
against any kept sample), in the same process on the same samples.

    python bench/filter.py           # 1k / 5k / 20k / 100k; the baseline at 1k and 5k
    python bench/filter.py --quick   # 1k / 5k; the baseline at 1k

The baseline is quadratic (about 27 s for 1k, 11 min for 5k here); beyond the sizes it runs at,
its time is extrapolated quadratically from the largest measured size and marked as such.
The samples: questions and answers from the public InstructLab taxonomy (../shared) and the
sample taxonomy, with a third re-generated as near duplicates (words dropped, swapped,
replaced, case and punctuation changed) and some exact repeats, as a teacher produces them.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.filter.minhash import MinHashConfig, near_dedup  # noqa: E402
from pipeline.filter.quality import exact_dedup  # noqa: E402
from pipeline.taxonomy.reader import iter_leaves  # noqa: E402

SNAPSHOT = "instructlab-taxonomy/snapshot-2024-08-20"
FILLERS = ["please", "exactly", "briefly", "now", "here", "also", "really", "simply"]


@functools.lru_cache(maxsize=1)  # read (and a missing corpus reported) once per run
def base_pairs() -> list[tuple[str, str]]:
    from _shared import shared
    snapshot = shared(SNAPSHOT, "the InstructLab taxonomy's seed pairs", "using the sample taxonomy's only")
    pairs = []
    for corpus in [c for c in (snapshot, ROOT / "taxonomy") if c is not None]:
        for leaf in iter_leaves(corpus):
            for seed in (leaf.data or {}).get("seed_examples", []) if isinstance(leaf.data, dict) else []:
                if not isinstance(seed, dict):
                    continue
                qas = seed.get("questions_and_answers") or [seed]
                for qa in qas:
                    if isinstance(qa, dict) and isinstance(qa.get("question"), str) and isinstance(qa.get("answer"), str):
                        pairs.append((" ".join(qa["question"].split())[:400], " ".join(qa["answer"].split())[:400]))
    return list(dict.fromkeys(pairs))


def perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    if len(words) < 4:
        return text + " " + rng.choice(FILLERS)
    for _ in range(rng.randint(1, 2)):
        op = rng.random()
        i = rng.randrange(len(words))
        if op < 0.3 and len(words) > 4:
            del words[i]
        elif op < 0.55:
            j = min(len(words) - 1, i + 1)
            words[i], words[j] = words[j], words[i]
        elif op < 0.8:
            words.insert(i, rng.choice(FILLERS))
        else:
            words[i] = words[i].upper() if rng.random() < 0.5 else words[i].rstrip("?.,!") + rng.choice([",", "", "!"])
    return " ".join(words)


def make_samples(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    base = base_pairs()
    vocab = sorted({w for q, a in base for w in (q + " " + a).split() if w.isalpha() and len(w) > 3})
    out: list[dict] = []
    for i in range(n):
        r = rng.random()
        if out and r < 0.05:
            src = rng.choice(out)
            q, a = src["question"], src["answer"]
        elif out and r < 0.35:
            src = rng.choice(out)
            q, a = perturb(src["question"], rng), src["answer"]
        else:
            q0, a0 = base[rng.randrange(len(base))]
            # a fresh sample on the same template: a teacher asks about new things, so about
            # half of the words change (at 5k+ samples the public seeds alone would repeat)
            words = q0.split()
            for j in rng.sample(range(len(words)), k=max(2, len(words) // 2)):
                words[j] = rng.choice(vocab)
            q, a = " ".join(words), a0
        out.append({"id": f"s{i}", "leaf": "bench/qna.yaml", "kind": "skill", "question": q, "answer": a})
    return out


def ours(samples: list[dict], threshold: float, shingle: int = 1) -> tuple[set, float]:
    t = time.perf_counter()
    exact = exact_dedup(samples, key="q")
    near = near_dedup(exact.kept, MinHashConfig(threshold=threshold, field="question", shingle=shingle))
    elapsed = time.perf_counter() - t
    return {r["id"] for r in near.kept}, elapsed


def baseline(samples: list[dict], threshold: float = 0.7) -> tuple[set, float]:
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    t = time.perf_counter()
    kept: list[tuple[str, list]] = []
    ids = set()
    for r in samples:
        tokens = scorer._tokenizer.tokenize(r["question"])
        novel = True
        for _, other in kept:
            if rouge_scorer._score_lcs(tokens, other).fmeasure > threshold:
                novel = False
                break
        if novel:
            kept.append((r["id"], tokens))
            ids.add(r["id"])
    return ids, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    # Question-only, word (1-gram) shingles, Jaccard 0.5: the setting that tracks Self-Instruct's
    # question novelty criterion (the pipeline's own default, on question+answer 2-grams at 0.7,
    # is more conservative).
    ap.add_argument("--threshold", type=float, default=0.5, help="MinHash Jaccard threshold (default 0.5)")
    ap.add_argument("--shingle", type=int, default=1, help="words per shingle (default 1)")
    args = ap.parse_args()
    sizes = [1000, 5000] if args.quick else [1000, 5000, 20000, 100000]
    base_sizes = {1000} if args.quick else {1000, 5000}
    rows, measured = [], {}
    ours(make_samples(200, seed=1), args.threshold, args.shingle)  # warm-up: imports, first LSH
    print(f"{'samples':>8}{'sprout s':>10}{'sprout/s':>10}{'kept':>8}{'baseline s':>13}{'kept':>8}{'agree':>8}{'ratio':>8}")
    for n in sizes:
        samples = make_samples(n)
        kept, t_ours = ours(samples, args.threshold, args.shingle)
        row = {"samples": n, "sprout_s": round(t_ours, 3), "sprout_per_s": round(n / t_ours), "kept": len(kept)}
        if n in base_sizes:
            bkept, t_base = baseline(samples)
            agree = sum((s["id"] in kept) == (s["id"] in bkept) for s in samples) / n
            measured[n] = t_base
            row.update(baseline_s=round(t_base, 2), baseline_kept=len(bkept), agreement=round(agree, 4),
                       ratio=round(t_base / t_ours, 1), baseline="measured")
            extra = f"{t_base:>13.2f}{len(bkept):>8}{agree:>8.1%}{t_base / t_ours:>8.0f}x"
        else:
            largest = max(measured)
            t_base = measured[largest] * (n / largest) ** 2
            row.update(baseline_s=round(t_base, 1), ratio=round(t_base / t_ours, 1), baseline="extrapolated")
            extra = f"{'~' + format(t_base, '.0f'):>13}{'':>8}{'':>8}{t_base / t_ours:>7.0f}x*"
        rows.append(row)
        print(f"{n:>8}{t_ours:>10.2f}{n / t_ours:>10.0f}{len(kept):>8}{extra}")
    print("* baseline extrapolated quadratically from its largest measured size")
    both = [r for r in rows if r["baseline"] == "measured"]
    best = max(both, key=lambda r: r["samples"])
    from _shared import goal
    goals = []
    big = rows[-1]
    goals.append(f"{big['samples']} samples deduplicated in {big['sprout_s']:.1f} s")
    if big["samples"] >= 100_000:
        goals.append(goal("100k samples deduplicated", round(big["sprout_s"], 1), 60, higher_is_better=False, unit=" s"))
    at5k = next((r for r in rows if r["samples"] == 5000 and "agreement" in r), None)
    if at5k:
        goals.append(goal("agreement with the baseline at 5k", round(at5k["agreement"] * 100, 1), 95, unit="%"))
    at20k = next((r for r in rows if r["samples"] == 20000), None)
    if at20k:
        goals.append(goal(f"speed-up at 20k (baseline {at20k['baseline']})", round(at20k["ratio"]), 100, unit="x"))
    for g in goals:
        print(g)
    print(json.dumps({"bench": "filter", "ratio": best["ratio"], "ratio_at": best["samples"], "rows": rows}))


if __name__ == "__main__":
    main()
