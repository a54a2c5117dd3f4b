"""`sprout model serve` and `sprout bot serve`: the long-running servers."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def cmd_model_serve(args: argparse.Namespace) -> int:
    if (args.model_dir is None) == (args.follow is None):
        print("sprout model serve: give a model folder or --follow STORAGE (not both)", file=sys.stderr)
        return 2
    if args.model_dir is not None and not (Path(args.model_dir) / "config.json").is_file():
        print(f"sprout model serve: {args.model_dir} is not a Hugging Face model directory (no config.json)",
              file=sys.stderr)
        return 2
    if args.follow is not None:
        from ..serve.follow import read_registry
        try:
            read_registry(args.follow)
        except (OSError, ValueError) as e:
            print(f"sprout model serve: --follow {args.follow}: {e}", file=sys.stderr)
            return 2
    import uvicorn

    from ..serve.openai_server import create_app
    app = create_app(Path(args.model_dir) if args.model_dir else None, name=args.name, follow=args.follow,
                     batch_size=args.max_batch, wait_ms=args.batch_wait_ms, interval=args.poll,
                     default_max_tokens=args.default_max_tokens,
                     api_key=os.environ.get("SPROUT_SERVE_API_KEY") or None)
    current = app.state.slot.current
    what = (f"the registry's newest accepted model under {args.follow} "
            f"({current.id if current else 'none yet: 503 until one is accepted'}; checked every {args.poll:g}s)"
            if args.follow else str(args.model_dir))
    print(f"serving {what} at http://{args.host}:{args.port}/v1 (OpenAI-compatible; /healthz, /metrics)",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_model_stamp(args: argparse.Namespace) -> int:
    """Give a model made before exports carried their system prompt (or any HF folder) one."""
    folder = Path(args.model_dir)
    if not (folder / "config.json").is_file():
        print(f"sprout model stamp: {folder} is not a Hugging Face model directory (no config.json)", file=sys.stderr)
        return 2
    from transformers import AutoTokenizer

    from ..mix import SYSTEM
    from ..train.chat_format import carried_system_prompt, stamp
    tok = AutoTokenizer.from_pretrained(folder)
    before = carried_system_prompt(tok)
    try:
        stamp(tok, args.system_prompt if args.system_prompt is not None else SYSTEM)
    except ValueError as e:
        print(f"sprout model stamp: {folder}: {e}", file=sys.stderr)
        return 2
    tok.save_pretrained(folder)
    print(f"{folder}: default system prompt {carried_system_prompt(tok)!r}"
          + (f" (was {before!r})" if before is not None else ""))
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
    if args.worker_mode == "process":
        from bot.workerproc import WorkerProcess
        worker = WorkerProcess(threads=args.workers, retrain=not args.no_retrain, log_level=args.log_level,
                               nice=args.worker_nice)
        app = create_app(settings, workers=0, worker_process=worker)
    else:
        dispatcher = None
        if not args.no_retrain:
            from bot.dispatch import Dispatcher
            dispatcher = Dispatcher.from_settings(settings)
        app = create_app(settings, dispatcher=dispatcher, workers=args.workers)
    print(f"Sprout bot on http://{args.host}:{args.port} (webhook: POST /webhook, status: /, "
          f"metrics: /metrics); store {settings.database_path}; worker: {args.workers} thread(s) "
          f"in {'its own process' if args.worker_mode == 'process' else 'this process'}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, **uvicorn_options(settings))
    return 0


def uvicorn_options(settings) -> dict:
    """Proxy headers off unless SPROUT_FORWARDED_ALLOW_IPS names the proxies: uvicorn's default
    believes X-Forwarded-For from 127.0.0.1, so behind a same-host proxy that passes it through,
    anyone could claim to be the loopback client the status page answers."""
    if settings.forwarded_allow_ips:
        return {"proxy_headers": True, "forwarded_allow_ips": settings.forwarded_allow_ips}
    return {"proxy_headers": False}


def settings_help() -> str:
    try:
        from bot.settings_table import plain
    except ImportError:  # installed without the bot
        return "settings: see the README (bot section)"
    return plain()


def register(sub) -> None:
    md = sub.add_parser("model", help="work with models")
    msub = md.add_subparsers(dest="model_command", metavar="COMMAND")
    ms = msub.add_parser(
        "serve", help="serve a model with an OpenAI-compatible API",
        description="Serve a Hugging Face causal-LM directory, or with --follow the registry's newest "
                    "accepted model, at /v1/models, /v1/chat/completions and /v1/completions (stream, "
                    "stop, max_tokens, temperature (0: greedy), top_p, n, seed, usage), with /healthz "
                    "and /metrics. Requests that arrive together are generated as one batch. A model "
                    "Sprout trained carries its system prompt in its chat template: send none. Also a "
                    "teacher for 'sprout generate --teacher http://127.0.0.1:8000/v1'. With "
                    "SPROUT_SERVE_API_KEY set, /v1 requires 'Authorization: Bearer <key>'.")
    ms.add_argument("model_dir", nargs="?", help="a model directory (config.json, weights, tokenizer)")
    ms.add_argument("--follow", metavar="STORAGE",
                    help="serve the newest accepted model of this storage's registry (models.json: a runs "
                         "root folder, or s3://bucket/prefix, gs://... as SPROUT_STORAGE) and "
                         "switch to each newly accepted one without failing a request; never a rejected one")
    ms.add_argument("--poll", type=float, default=2.0, metavar="SECONDS",
                    help="with --follow: how often the registry is read (default: 2)")
    ms.add_argument("--host", default="127.0.0.1")
    ms.add_argument("--port", type=int, default=8000)
    ms.add_argument("--name", help="model id to serve under (default: the folder name; with --follow 'sprout')")
    ms.add_argument("--max-batch", type=int, default=16, metavar="ROWS",
                    help="most sequences generated together (default: 16; 1 serves one request at a time)")
    ms.add_argument("--batch-wait-ms", type=float, default=5.0, metavar="MS",
                    help="how long a request waits for others to batch with (default: 5)")
    ms.add_argument("--default-max-tokens", type=int, default=256, metavar="N",
                    help="max_tokens of a request that sets none (default: 256, within the context)")
    ms.set_defaults(func=cmd_model_serve)
    st = msub.add_parser("stamp", help="make a model folder carry a default system prompt",
                         description="Rewrite a model folder's chat template so that a conversation without "
                                     "a system message gets SYSTEM_PROMPT (default: Sprout's training prompt), "
                                     "as every model Sprout exports does: for models trained before that, or "
                                     "any Hugging Face folder. Conversations with a system message are unchanged.")
    st.add_argument("model_dir", help="a model directory (its tokenizer files are rewritten)")
    st.add_argument("--system-prompt", metavar="TEXT", help="the prompt (default: pipeline/mix.py SYSTEM)")
    st.set_defaults(func=cmd_model_stamp)
    md.set_defaults(func=lambda a: (md.print_help(), 2)[1])

    b = sub.add_parser("bot", help="the GitHub webhook bot",
                       description="The GitHub-facing bot: validates pull requests, answers "
                                   "/sprout commands, dispatches retraining on merge.")
    bsub = b.add_subparsers(dest="bot_command", metavar="COMMAND")
    serve = bsub.add_parser(
        "serve", help="run the webhook server and its worker",
        description="Serve POST /webhook, GET /healthz, GET /metrics and a status page at /. "
                    "Deliveries are stored durably (SQLite, one fsync per group of deliveries "
                    "that arrive together) before GitHub gets its 202; a worker process, at a "
                    "lower CPU priority and restarted if it dies, handles them.",
        epilog=settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker threads handling deliveries (default: 1)")
    serve.add_argument("--worker-mode", choices=["process", "thread"], default="process",
                       help="process (default): the worker runs in its own process, so that "
                            "acknowledging deliveries never waits on handling them; thread: in "
                            "the web server's process (one process to debug)")
    serve.add_argument("--worker-nice", type=int, default=10, metavar="N",
                       help="how much lower the worker process's CPU priority is (default: 10; "
                            "0: equal to the web server's): acknowledging deliveries comes first")
    serve.add_argument("--no-retrain", action="store_true",
                       help="do not dispatch retraining jobs to Ray on merge")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_bot_serve)
    b.set_defaults(func=lambda a: (b.print_help(), 2)[1])
