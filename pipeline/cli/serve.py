"""`sprout model serve` and `sprout bot serve`: the long-running servers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_model_serve(args: argparse.Namespace) -> int:
    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        print(f"sprout model serve: {model_dir} is not a Hugging Face model directory (no config.json)",
              file=sys.stderr)
        return 2
    import uvicorn

    from ..serve.openai_server import create_app
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
