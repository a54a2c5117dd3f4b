"""`sprout generate`, `sprout filter`, `sprout mix`: synthetic data, its filters, the phase datasets."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit="leaf", disable=not sys.stderr.isatty() or None)
    except ImportError:  # pragma: no cover
        return None


def cmd_generate(args: argparse.Namespace) -> int:
    import time

    from ..sdg.documents import DocumentError
    from ..sdg.generate import GenerateConfig, GenerateError, generate
    from ..sdg.teachers import GenParams, TeacherError, make_teacher

    taxonomy = Path(args.taxonomy or ("taxonomy" if Path("taxonomy").is_dir() else "."))
    out = Path(args.out)
    try:
        teacher = make_teacher(args.teacher, model=args.model, api_key=os.environ.get("SPROUT_TEACHER_API_KEY"),
                               concurrency=args.teacher_concurrency)
    except TeacherError as e:
        print(f"sprout generate: {e}", file=sys.stderr)
        return 2
    config = GenerateConfig(samples=args.samples, skill_tasks=args.skill_tasks,
                            params=GenParams(temperature=args.temperature, seed=args.seed))
    runner = None
    if args.ray:
        from ..distributed import ray_runner
        runner = ray_runner(teacher)
    bar = None
    started = time.time()

    def progress(path: str, done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = _progress(total, "generate")
        if bar is not None:
            bar.set_postfix_str(path.rsplit("/", 2)[-2])
            bar.update(1)
    try:
        summary = generate(taxonomy, out, teacher, config, only=args.leaves, progress=progress, runner=runner)
    except (GenerateError, DocumentError, TeacherError) as e:
        print(f"sprout generate: {e}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
        from ..sdg.teachers import close_teachers
        close_teachers(teacher)
    leaves = summary["leaves"]
    print(f"teacher: {summary['teacher']}   prompts: {summary['prompts']}")
    # numbers first, the full leaf path last: a long path never gets cut
    print(f"{'status':<10}{'samples':>8}{'malformed':>10}  leaf")
    for leaf in leaves:
        print(f"{leaf['status']:<10}{leaf['samples']:>8}{leaf['malformed']:>10}  {leaf['path']}")
    fresh = sum(x["status"] == "generated" for x in leaves)
    print(f"{len(leaves)} leaves ({fresh} generated, {len(leaves) - fresh} from cache), "
          f"{sum(x['samples'] for x in leaves)} samples in {time.time() - started:.1f} s -> {out / 'generated'}")
    from ..sdg.cost import text
    funnel = ", ".join(f"{k} {v}" for k, v in summary["funnel"].items() if v)
    print(f"teacher: {text(summary['cost'])}" + (f"; completions: {funnel}" if funnel else ""))
    return 0


def cmd_filter(args: argparse.Namespace) -> int:
    from ..filter.run import FilterConfig, read_replies, run_filters, write_report
    from ..filter.safety import SafetyConfig
    from ..sdg.generate import read_jsonl, read_leaf_infos, write_jsonl
    from ..sdg.teachers import TeacherError, make_teacher

    src = Path(args.input)
    gen = src / "generated"
    if not gen.is_dir():
        print(f"sprout filter: {gen} not found; run 'sprout generate --out {src}' first", file=sys.stderr)
        return 2
    records = [r for f in sorted(gen.glob("*.jsonl")) for r in read_jsonl(f)]
    leaves = read_leaf_infos(src)
    teacher = None
    if args.judge:
        try:
            teacher = make_teacher(args.judge, model=args.model)
        except TeacherError as e:
            print(f"sprout filter: {e}", file=sys.stderr)
            return 2
    config = FilterConfig(use_embeddings=not args.no_embeddings, embedding_model=args.embedding_model,
                          safety=SafetyConfig(pii=args.pii, blocklist=tuple(args.block or ())))
    if args.ray:
        from ..distributed import ray_map
        from ..filter.run import run_filters_by_leaf
        kept, rep = run_filters_by_leaf(records, leaves, config, teacher=teacher, runner=ray_map,
                                        replies=read_replies(src))
    else:
        kept, rep = run_filters(records, leaves, config, teacher=teacher, replies=read_replies(src),
                                progress=lambda name: print(f"  {name} done", file=sys.stderr))
    out = Path(args.out or src)
    write_jsonl(out / "filtered.jsonl", kept)
    write_report(rep, out)
    t = rep["totals"]
    print(f"{'filter':<16}{'dropped':>9}")
    for name, f in t["filters"].items():
        print(f"{name:<16}{f['dropped']:>9}  {f.get('skipped', '')}")
    print(f"{t['in']} samples in, {t['out']} kept -> {out / 'filtered.jsonl'}; report: {out / 'filter_report.md'}")
    for p, leaf in rep["leaves"].items():
        if leaf.get("emptied_by"):
            e = leaf["emptied_by"]
            print(f"warning: {p} lost every sample to the {e['filter']} filter ({'; '.join(e['reasons'])})",
                  file=sys.stderr)
    return 0


def cmd_mix(args: argparse.Namespace) -> int:
    from ..mix import Recipe, mix
    from ..sdg.generate import read_jsonl, read_leaf_infos

    src = Path(args.input)
    if not (src / "filtered.jsonl").exists():
        print(f"sprout mix: {src / 'filtered.jsonl'} not found; run 'sprout filter {src}' first", file=sys.stderr)
        return 2
    try:
        recipe = Recipe.load(Path(args.recipe)) if args.recipe else Recipe()
    except (OSError, ValueError, TypeError) as e:
        print(f"sprout mix: recipe {args.recipe}: {e}", file=sys.stderr)
        return 2
    if args.replay:
        from dataclasses import replace
        recipe = replace(recipe, replay_sources=tuple(args.replay))
    leaves = read_leaf_infos(src)
    out = Path(args.out or src)
    summary = mix(read_jsonl(src / "filtered.jsonl"), leaves, out, recipe)
    for leaf, note in summary["leaves"].items():
        print(f"{leaf[:70]:<72}{note['action']}")
    p1, p2 = summary["phase1"], summary["phase2"]
    print(f"phase 1: {p1['samples']} samples ({p1['knowledge']} knowledge, {p1['replay']} replay) -> {out / 'phase1.jsonl'}")
    print(f"phase 2: {p2['samples']} samples ({p2['skills']} skills, {p2['knowledge_replay']} knowledge replay, "
          f"{p2['reading_comprehension']} reading comprehension, {p2['replay']} replay) -> {out / 'phase2.jsonl'}")
    print(f"recipe and per-leaf caps: {out / 'recipe.json'}")
    return 0


def register(sub) -> None:
    g = sub.add_parser("generate", help="generate synthetic training data from a taxonomy",
                       description="Generate synthetic question/answer samples for each leaf with a "
                                   "teacher. Each leaf's output is cached under a hash of its content, "
                                   "documents commit, teacher, prompts and parameters: a rerun only "
                                   "regenerates what changed, and an interrupted run resumes.",
                       epilog="teachers: 'offline' (default; no model, smoke-level quality), an "
                              "OpenAI-compatible URL such as http://127.0.0.1:8000/v1 (vLLM, "
                              "llama.cpp, Ollama, 'sprout model serve'; key in SPROUT_TEACHER_API_KEY), "
                              "or a Hugging Face model directory.")
    g.add_argument("taxonomy", nargs="?", help="taxonomy folder (default: ./taxonomy)")
    g.add_argument("--out", default="runs/data", help="output folder (default: runs/data)")
    g.add_argument("--teacher", default="offline", help="offline | URL | model directory")
    g.add_argument("--model", help="model name on an OpenAI-compatible server")
    g.add_argument("--teacher-concurrency", type=int, default=128, metavar="N",
                   help="requests in flight to an OpenAI-compatible teacher, all leaves together; 429/503 "
                        "answers shrink it, Retry-After is honoured (default: 128)")
    g.add_argument("--leaves", nargs="+", metavar="PATH", help="only these leaves (paths or folders)")
    g.add_argument("--samples", type=int, default=2, help="completions per prompt (default: 2)")
    g.add_argument("--skill-tasks", type=int, default=30, help="new tasks per skill leaf (default: 30)")
    g.add_argument("--temperature", type=float, default=0.7)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--ray", action="store_true", help="distribute leaves with Ray Data (local Ray or RAY_ADDRESS)")
    g.set_defaults(func=cmd_generate)

    f = sub.add_parser("filter", help="filter generated samples and report what was dropped",
                       description="Run the filters in order: format, safety (PII scrubbed, block list), "
                                   "exact duplicates, near duplicates (MinHash LSH), grounding, paraphrases "
                                   "and off-topic samples (sentence embeddings), and an LLM judge when a "
                                   "model is given. Writes filtered.jsonl and filter_report.json/.md.")
    f.add_argument("input", nargs="?", default="runs/data", help="the generate output folder (default: runs/data)")
    f.add_argument("--out", help="output folder (default: the input folder)")
    f.add_argument("--judge", metavar="TEACHER", help="a model teacher (URL or folder) to judge samples")
    f.add_argument("--model", help="model name on an OpenAI-compatible judge server")
    f.add_argument("--pii", choices=["scrub", "drop"], default="scrub", help="what to do with personal data")
    f.add_argument("--block", nargs="+", metavar="WORD", help="drop samples containing these words")
    f.add_argument("--no-embeddings", action="store_true", help="skip the embedding-based filters")
    f.add_argument("--embedding-model", metavar="DIR", help="a sentence-embedding model directory")
    f.add_argument("--ray", action="store_true",
                   help="filter leaf by leaf on Ray Data (local Ray or RAY_ADDRESS); duplicates are then "
                        "judged within each leaf")
    f.set_defaults(func=cmd_filter)

    m = sub.add_parser("mix", help="balance leaves, add replay, write the phase datasets",
                       description="Write phase1.jsonl (knowledge) and phase2.jsonl (skills, knowledge "
                                   "replay, reading comprehension, replay buffer) as messages JSONL, and "
                                   "recipe.json with every cap and what it did to each leaf.")
    m.add_argument("input", nargs="?", default="runs/data", help="the filter output folder (default: runs/data)")
    m.add_argument("--out", help="output folder (default: the input folder)")
    m.add_argument("--recipe", help="a recipe JSON file (keys: see pipeline/mix.py Recipe)")
    m.add_argument("--replay", nargs="+", metavar="JSONL", help="replay sources (messages JSONL)")
    m.set_defaults(func=cmd_mix)
