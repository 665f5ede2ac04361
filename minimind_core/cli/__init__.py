"""`python -m minimind_core COMMAND ...`: the course's command line.

    data       check | sample | download      cli/data.py
    tokenizer  train                          cli/tokenizer.py
    export     hf | llama | qwen3 | gguf | minimind   cli/export.py
    serve      an OpenAI-compatible server    cli/serve.py
    train      pretrain | sft | lora | dpo | distill   cli/train.py
    eval       qa | ppl                       cli/eval.py

Each module registers its parsers and holds its handlers; a handler imports the library it needs
inside its body, so `--help`, `data check` and `data download` start without torch or
transformers. Any MiniMindError a command raises (a bad data line, a missing checkpoint, ...)
is printed as one line, `error: <message>`, with exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import MiniMindError
from . import data, eval as eval_cmd, export, serve, tokenizer, train
from .errors import CLIError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minimind_core",
        description="MiniMind course: build and train MiniMind2-Small from scratch.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data.add_parsers(sub)
    tokenizer.add_parsers(sub)
    export.add_parsers(sub)
    train.add_parsers(sub)
    eval_cmd.add_parsers(sub)
    serve.add_parsers(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except MiniMindError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["CLIError", "build_parser", "main"]
