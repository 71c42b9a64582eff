"""`sr3 serve`: the upscale web page (or, with --study, SR3's 2AFC study) on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from sr3.errors import SR3Error
from sr3.pretrained import DEFAULT_MODEL

EXAMPLES = """examples:
  sr3 serve                                   # http://127.0.0.1:7860, every shipped model
  sr3 serve --model faces-8x --port 8000      # faces-8x preselected
  sr3 serve --model runs/my-run               # your own run beside the shipped models
  sr3 serve --study study.sqlite              # the 2AFC study made by `sr3 study create`
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="web page to upscale and compare, or run a fool-rate study", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model preselected on the page: a shipped name, or a run or weights file to offer too "
                        f"(default {DEFAULT_MODEL})")
    p.add_argument("--max-pixels", type=int, default=1_000_000,
                   help="largest input image accepted, in pixels (default 1000000, e.g. 1000x1000)")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest upload accepted (default 20 MB)")
    p.add_argument("--max-waiting", type=int, default=16,
                   help="jobs that may wait at once; one more upload is refused (HTTP 429) until some have run (default 16)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--study", type=Path, help="serve this study file (`sr3 study create`) instead of the upscale page")
    p.add_argument("--show-seconds", type=float, default=3.0, help="study: seconds each pair is shown (default 3, as SR3)")


def run(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise SR3Error(f"--port must be from 1 to 65535; got {args.port}")
    if args.max_pixels < 1 or args.max_upload_mb <= 0 or args.show_seconds <= 0 or args.max_waiting < 1:
        raise SR3Error("--max-pixels, --max-upload-mb, --max-waiting and --show-seconds must be positive")
    import uvicorn

    from sr3.serve.app import ServeConfig, create_app, offered_models

    models, default = offered_models(args.model)
    cfg = ServeConfig(
        models=models,
        default_model=default,
        max_pixels=args.max_pixels,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_waiting_jobs=args.max_waiting,
        device=args.device,
        study=args.study,
        show_seconds=args.show_seconds,
    )
    app = create_app(cfg)
    print(f"sr3 serve: http://{args.host}:{args.port}/ ({'study ' + str(args.study) if args.study else 'upscale'}); "
          "Ctrl+C stops it")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
