"""`tokenizer train`: train a byte-level BPE tokenizer on the text of a JSONL file."""
from __future__ import annotations

from .errors import CLIError


def add_parsers(sub) -> None:
    p = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer")
    tsub = p.add_subparsers(dest="tokenizer_command", required=True, metavar="SUBCOMMAND")
    t = tsub.add_parser("train", help="train a tokenizer on the text of a JSONL file")
    t.add_argument("--data", required=True, help="JSONL file (pretrain or sft schema)")
    t.add_argument("--vocab-size", type=int, default=6400)
    t.add_argument("--out", required=True)
    t.add_argument("--max-lines", type=int, default=None, help="use only the first N lines")
    t.set_defaults(handler=run_train)


def _texts(path, max_lines):
    """The text of each line: a pretraining document's text, or every message's content."""
    import itertools
    import json

    with open(path, encoding="utf-8") as f:
        lines = itertools.islice(f, max_lines) if max_lines else f
        for line in lines:
            if not line.strip():
                continue
            obj = json.loads(line)
            if "text" in obj:
                yield obj["text"]
            else:
                for m in obj.get("conversations", []):
                    yield m["content"]


def run_train(args) -> int:
    """`tokenizer train --data FILE --vocab-size N --out DIR [--max-lines N]`."""
    from pathlib import Path

    from ..tokenizer import train_tokenizer

    if not Path(args.data).is_file():
        raise CLIError(f"{args.data}: no such file")
    tok = train_tokenizer(_texts(args.data, args.max_lines), args.vocab_size, args.out)
    print(f"trained a {len(tok)}-token tokenizer on {args.data}; saved to {args.out}")
    return 0
