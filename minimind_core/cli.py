"""`python -m minimind_core COMMAND ...`: the course's command line.

Each command's work lives in its own module; this file only parses arguments and dispatches.
"""
from __future__ import annotations

import argparse
import sys


class CLIError(Exception):
    """An error to report to the user in one line, without a traceback."""


def _data_parsers(sub):
    p = sub.add_parser("data", help="check, generate or download training data")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    c = dsub.add_parser("check", help="validate a JSONL file against a stage's schema")
    c.add_argument("file")
    c.add_argument("--stage", required=True, choices=["pretrain", "sft", "dpo"])
    c.add_argument("--max-errors", type=int, default=20, help="stop listing after this many bad lines")
    c.set_defaults(handler="minimind_core.jsonl:cli_check")

    s = dsub.add_parser("sample", help="write the bundled bilingual sample corpus")
    s.add_argument("--out", default=None, help="output folder (default: data/sample)")
    s.add_argument("--seed", type=int, default=None, help="random seed (default: the committed corpus' seed)")
    s.set_defaults(handler="minimind_core.sample_corpus:cli_sample")

    d = dsub.add_parser("download", help="fetch MiniMind's data files (ModelScope, then Hugging Face)")
    d.add_argument("names", nargs="*", help="files to fetch, e.g. pretrain_hq sft_mini_512 (none: list them)")
    d.add_argument("--out", default=None, help="output folder (default: data/)")
    d.add_argument("--source", choices=["auto", "modelscope", "huggingface"], default="auto")
    d.set_defaults(handler="minimind_core.download:cli_download")


def _tokenizer_parsers(sub):
    p = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer")
    tsub = p.add_subparsers(dest="tokenizer_command", required=True, metavar="SUBCOMMAND")
    t = tsub.add_parser("train", help="train a tokenizer on the text of a JSONL file")
    t.add_argument("--data", required=True, help="JSONL file (pretrain or sft schema)")
    t.add_argument("--vocab-size", type=int, default=6400)
    t.add_argument("--out", required=True)
    t.add_argument("--max-lines", type=int, default=None, help="use only the first N lines")
    t.set_defaults(handler="minimind_core.tokenizer:cli_train")


def _export_parsers(sub):
    p = sub.add_parser("export", help="export a trained model to other formats")
    esub = p.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    e = esub.add_parser("llama", help="write a transformers LlamaForCausalLM folder")
    e.add_argument("--model", required=True, help="a model folder or a run folder")
    e.add_argument("--out", required=True)
    e.set_defaults(handler="minimind_core.export:cli_export_llama")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minimind_core",
        description="MiniMind course: build and train MiniMind2-Small from scratch.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _data_parsers(sub)
    _tokenizer_parsers(sub)
    _export_parsers(sub)
    try:  # the training engine registers `train` and `eval`
        from .train_cli import add_parsers as _train_parsers
    except ImportError:
        _train_parsers = None
    if _train_parsers is not None:
        _train_parsers(sub)
    return parser


def _resolve(handler: str):
    import importlib

    module, func = handler.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = _resolve(args.handler) if isinstance(args.handler, str) else args.handler
    try:
        return int(handler(args) or 0)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
