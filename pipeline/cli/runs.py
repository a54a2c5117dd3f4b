"""`sprout run`, `preview`, `precheck`, `submit`, `models`: the pipeline and its runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .train import STUDENT_HELP, _recipe_args


def cmd_run(args: argparse.Namespace) -> int:
    from ..run import RunConfig, run
    config = RunConfig(taxonomy=args.taxonomy, ref=args.ref, out=args.out, storage=_storage(args),
                       placement=args.placement, teacher=args.teacher, teacher_model=args.model,
                       teacher_concurrency=args.teacher_concurrency, student=args.student,
                       judge=args.judge, judge_model=args.judge_model, recipe=args.recipe,
                       train_layers=args.train_layers, lr=args.lr, precision=args.precision, probe_questions=args.probe_questions,
                       start_from=args.start_from, workers=args.workers, gpu=args.gpu, epochs=args.epochs,
                       max_steps=args.max_steps, checkpoint_every=args.checkpoint_every,
                       embeddings=not args.no_embeddings,
                       gradient_checkpointing=args.gradient_checkpointing)
    done = _pipeline("run", run, config, until=args.until)
    if done is None:
        return 1
    out, report = done
    if report is None:
        print(f"stopped after {args.until}: {out} (rerun without --until to continue from there)")
        return 0
    from ..report import forgetting_text, smoke_line, verdict_line
    smoke = smoke_line(report)
    if smoke:
        print(smoke.replace("**", ""))
    print(verdict_line(report))
    st = report["student"]
    print(f"student {st['name']} · {'recipe ' + report['recipe']['text'] if report.get('recipe') else ''} · teacher {report['teacher']['name']}")
    print(f"{'class':<20} {'key facts deployed -> new':>26} {'wrong':>5} {'score':>13}  leaf")
    for leaf in report["leaves"]:
        kf = leaf.get("key_facts")
        facts = f"{kf['deployed']} -> {kf['new']} of {kf['items']}" if kf else "-"
        print(f"{leaf['class']:<20} {facts:>26} {kf['new_wrong'] if kf else '-':>5} "
              f"{leaf['deployed_score']:.3f}->{leaf['new_score']:.3f}  {leaf['path']}"
              + ("" if leaf.get("changed", True) else " (unchanged)"))
    print("forgetting: " + forgetting_text(report["forgetting"]))
    from ..sdg.cost import text
    for stage, cost in (report.get("cost") or {}).items():
        print(f"teacher cost, {stage}: {text(cost)}")
    stored = _stored_at(out, _storage(args))
    print(f"verdict: {report['verdict']}   report: {stored or out}/report.md (also report.html, report.json)")
    if args.print_report:
        _print_markers(out / "report.md")
    if stored:  # everything is in the object store: the node-local working copy goes
        import shutil
        shutil.rmtree(out, ignore_errors=True)
    return 0 if report["verdict"] == "accepted" else REJECTED


def _stored_at(out: Path, storage: str) -> str | None:
    """The run folder's name in object storage when ``out`` is its node-local working copy."""
    from ..storage import is_uri, open_storage
    if not is_uri(storage):
        return None
    store = open_storage(storage)
    from ..runplace import scratch_root
    return store.name(out.relative_to(scratch_root(store)).as_posix())


def _storage(args: argparse.Namespace) -> str:
    """--storage (or its old name --runs-root), else SPROUT_STORAGE, else the local folder runs."""
    from ..storage import STORAGE_ENV
    return args.storage or os.environ.get(STORAGE_ENV) or "runs"


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", "--runs-root", dest="storage", metavar="URI",
                   help="where the model registry, run folders, checkpoints and models live: a folder or "
                        "s3://bucket/prefix (S3-compatible stores: ?endpoint_override=HOST:PORT&scheme=http), "
                        "gs://bucket/prefix (default: $SPROUT_STORAGE, else runs; --runs-root is its old name)")


REJECTED = 3
"""`sprout run`'s exit status for a run that finished with verdict 'rejected' (1: it stopped)."""


def _print_markers(path: Path) -> None:
    """The report as one line of JSON, for a caller that only sees the job's log (the bot, through
    Ray Jobs): "SPROUT-REPORT <nonce> {kind, verdict, markdown}". The nonce is the caller's secret
    (SPROUT_REPORT_NONCE in the job's environment), so no text a pull request makes the run print
    can pass for the report; the verdict comes from report.json, never from the Markdown."""
    import json
    data = path.with_suffix(".json")
    structured = json.loads(data.read_text()) if data.is_file() else {}
    line = {"kind": path.stem, "verdict": structured.get("verdict"), "markdown": path.read_text()}
    nonce = os.environ.get("SPROUT_REPORT_NONCE") or "-"
    # ASCII JSON: no character of the report (U+2028, NUL, ...) can end the line early
    print(f"SPROUT-REPORT {nonce} {json.dumps(line, ensure_ascii=True)}", flush=True)


def _stage_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pipeline(name: str, fn, *a, **kw):
    """Call a pipeline entry point; (out, result), or None after printing why it stopped."""
    from ..run import RunError
    try:
        return fn(*a, log=_stage_log, **kw)
    except RunError as e:
        print(f"sprout {name}: {e}", file=sys.stderr)
        return None


def cmd_preview(args: argparse.Namespace) -> int:
    from ..preview import preview
    from ..run import RunConfig
    config = RunConfig(taxonomy=args.taxonomy, ref=args.ref, base_ref=args.base, out=args.out,
                       storage=_storage(args), teacher=args.teacher, teacher_model=args.model,
                       teacher_concurrency=args.teacher_concurrency,
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
    from ..preview import precheck
    from ..run import RunConfig
    config = RunConfig(taxonomy=args.taxonomy, ref=args.ref, base_ref=args.base, out=args.out,
                       storage=_storage(args), student=args.student)
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
    from bot.dispatch import NONCE_ENV, new_nonce
    nonce = new_nonce()
    try:
        client = JobSubmissionClient(address)
        job = client.submit_job(entrypoint=entrypoint, metadata={"submitted_by": "sprout submit"},
                                runtime_env={"env_vars": {NONCE_ENV: nonce}})
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
    from bot.dispatch import extract_report, failed_stage, log_tail
    from pipeline.mdescape import block
    report = (extract_report(logs, nonce) or {}).get("markdown")
    summary = report or ("Job " + str(status).lower() + (f" at stage {failed_stage(logs)}" if failed_stage(logs) else "")
                         + ":\n\n" + block(log_tail(logs)))
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

    from ..storage import StorageError, open_storage, redact
    try:
        store = open_storage(_storage(args))
        data = store.read_bytes("models.json")
    except (StorageError, OSError) as e:
        print(f"sprout models: {e}", file=sys.stderr)
        return 1
    models = _json.loads(data) if data else []
    if not models:
        print(f"no trained models yet under {redact(store.uri)}")
        return 0
    print(f"{'id':<34}{'verdict':<10}{'taxonomy':<14}{'created':<22}path")
    for m in models:
        print(f"{m['id'][:33]:<34}{m['verdict']:<10}{(m.get('taxonomy_sha') or '-')[:12]:<14}{m['created']:<22}{m['path']}")
    return 0


def register(sub) -> None:
    r = sub.add_parser("run", help="the whole pipeline: validate -> generate -> filter -> mix -> train -> evaluate -> report",
                       description="Run every stage on a taxonomy (default: the sample taxonomy, offline "
                                   "teacher, SmolLM2-135M-Instruct student). The run folder holds each stage's output "
                                   "and manifest.json; rerunning with the same --out resumes at the first "
                                   "unfinished stage. Exit 0 when the verdict is 'accepted', 3 when it is "
                                   "'rejected', 1 when the run stopped on an error.")
    r.add_argument("taxonomy", nargs="?", default="taxonomy", help="taxonomy folder or git URL (default: taxonomy)")
    r.add_argument("--ref", help="git commit to check out")
    r.add_argument("--out", help="run folder (default: STORAGE/run-<time>-<id>; with object storage, a run name)")
    _storage_arg(r)
    r.add_argument("--teacher", default="offline")
    r.add_argument("--model", help="model name on an OpenAI-compatible teacher server")
    r.add_argument("--teacher-concurrency", type=int, default=128, metavar="N",
                   help="requests in flight to an OpenAI-compatible teacher/judge, all leaves together; "
                        "429/503 answers shrink it (default: 128)")
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
    r.add_argument("--workers", type=int, default=1, help="Ray Train workers (default: 1, no Ray)")
    r.add_argument("--placement", choices=["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"], default="PACK",
                   help="where Ray places the training workers (STRICT_SPREAD: each on its own node; default: PACK)")
    r.add_argument("--gpu", action="store_true",
                   help="train on GPUs: one per worker, NCCL, bf16 (default: the CPU)")
    r.add_argument("--epochs", type=int, help="override the recipe's epochs (smoke runs)")
    r.add_argument("--max-steps", type=int, help="cap each training phase (smoke runs)")
    r.add_argument("--checkpoint-every", type=int, default=25, metavar="N",
                   help="optimizer steps between training checkpoints (default: 25, and one at each phase end)")
    r.add_argument("--no-embeddings", action="store_true", help="skip the embedding filters")
    r.add_argument("--until", choices=["diff", "filter", "mix", "report"], default="report",
                   help="stop after this stage (default: run everything)")
    r.add_argument("--print-report", action="store_true",
                   help="also print the report as one line of JSON tagged with $SPROUT_REPORT_NONCE (the bot "
                        "reads it from the Ray job log)")
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
    pv.add_argument("--out", help="run folder (default: STORAGE/preview-<time>-<id>)")
    _storage_arg(pv)
    pv.add_argument("--teacher", default="offline")
    pv.add_argument("--model", help="model name on an OpenAI-compatible teacher server")
    pv.add_argument("--teacher-concurrency", type=int, default=128, metavar="N",
                   help="requests in flight to an OpenAI-compatible teacher/judge, all leaves together; "
                        "429/503 answers shrink it (default: 128)")
    pv.add_argument("--samples", type=int, default=3, help="kept samples shown per leaf (default: 3)")
    pv.add_argument("--no-embeddings", action="store_true", help="skip the embedding filters")
    pv.add_argument("--print-report", action="store_true", help="also print the report as one tagged JSON line (see sprout run)")
    pv.set_defaults(func=cmd_preview)

    pc = sub.add_parser("precheck", help="ask the current student the changed leaves' seed questions",
                        description="Before a merge: ask the current student (the last "
                                    "accepted one in --storage, else the base student) the seed questions "
                                    "of the leaves changed between --base and --ref, and write "
                                    "precheck.md/precheck.json with its answers beside the expected ones "
                                    "and a score (mean of token F1 and ROUGE-L). The bot runs this for "
                                    "'/sprout precheck'.")
    pc.add_argument("taxonomy", nargs="?", default="taxonomy", help="taxonomy folder or git URL (default: taxonomy)")
    pc.add_argument("--ref", help="git commit to check out (the pull request's head)")
    pc.add_argument("--base", help="git commit to diff against (the pull request's base)")
    pc.add_argument("--out", help="run folder (default: STORAGE/precheck-<time>-<id>)")
    _storage_arg(pc)
    pc.add_argument("--student", default="default",
                    help="model directory to ask; default: the last accepted model, else the base student")
    pc.add_argument("--print-report", action="store_true", help="also print the report as one tagged JSON line (see sprout run)")
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
    _storage_arg(mo)
    mo.set_defaults(func=cmd_models)
