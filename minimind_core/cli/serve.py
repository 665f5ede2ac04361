"""`serve`: answer OpenAI-style chat requests with a trained model (see minimind_core/serve.py)."""
from __future__ import annotations

from .errors import CLIError


def add_parsers(sub) -> None:
    p = sub.add_parser("serve", help="serve a model over an OpenAI-compatible API (/v1/chat/completions)")
    p.add_argument("--model", required=True, help="a model folder, a run folder or a LoRA adapter folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: this machine only; the server has no authentication)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--name", default=None, help="the model id clients see (default: the folder's name)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(handler=run_serve)


def run_serve(args) -> int:
    """`serve --model DIR [--host 127.0.0.1] [--port 8000] [--name ID] [--device DEV]`."""
    if not 0 < args.port < 65536:
        raise CLIError(f"--port {args.port}: expected 1-65535")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise CLIError("serve needs FastAPI and uvicorn: pip install -e \".[serve]\"") from None
    from ..serve import serve

    serve(args.model, host=args.host, port=args.port, name=args.name, device=args.device)
    return 0
