"""`data check | sample | download`: validate, generate or fetch training data.

None of these needs torch: `check` streams a file through `jsonl`, `download` uses the standard
library, and `sample` imports the tokenizer trainer only when it writes the corpus.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import CLIError


def add_parsers(sub) -> None:
    p = sub.add_parser("data", help="check, generate or download training data")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    c = dsub.add_parser("check", help="validate a JSONL file against a stage's schema")
    c.add_argument("file")
    c.add_argument("--stage", required=True, choices=["pretrain", "sft", "dpo", "eval_qa"])
    c.add_argument("--max-errors", type=int, default=20, help="stop listing after this many bad lines")
    c.set_defaults(handler=run_check)

    s = dsub.add_parser("sample", help="write the bundled bilingual sample corpus")
    s.add_argument("--out", default=None, help="output folder (default: the package's sample/ folder)")
    s.add_argument("--seed", type=int, default=None, help="random seed (default: the committed corpus' seed)")
    s.set_defaults(handler=run_sample)

    d = dsub.add_parser("download", help="fetch MiniMind's data files (ModelScope, then Hugging Face)")
    d.add_argument("names", nargs="*", help="files to fetch, e.g. pretrain_t2t_mini sft_t2t_mini (none: list them)")
    d.add_argument("--out", default=None, help="output folder (default: data/)")
    d.add_argument("--source", choices=["auto", "modelscope", "huggingface"], default="auto")
    d.set_defaults(handler=run_download)


def run_check(args) -> int:
    """`data check FILE --stage pretrain|sft|dpo [--max-errors N]`: exit 0 when every line is good,
    1 when some are bad (each listed as file:line: field: reason), 2 when the file is missing."""
    from ..jsonl import BadLines, check_file

    path = Path(args.file)
    if not path.exists():
        raise CLIError(f"{path}: no such file (download it with `python -m minimind_core data download`)")
    if path.is_dir():
        raise CLIError(f"{path}: is a folder; expected a .jsonl file")
    report = BadLines(keep=args.max_errors)
    n_good, messages = check_file(path, args.stage, max_errors=args.max_errors, report=report)
    for m in messages:
        print(m)
    if report.count > len(messages):
        print(f"... and {report.count - len(messages)} more bad lines")
    blank = f", {report.blank} blank" if report.blank else ""
    status = "OK" if report.count == 0 else "BAD"
    print(f"{path}: {status}: {n_good} good {args.stage} records, {report.count} bad lines{blank}")
    return 0 if report.count == 0 else 1


def run_sample(args) -> int:
    """`data sample [--out DIR] [--seed N]`: write the sample corpus and its tokenizer, then list
    the files with their sizes in bytes, lines and tokens."""
    from ..sample_corpus import DEFAULT_SEED, SAMPLE_VOCAB_SIZE, TOKENIZER_DIR, corpus_stats, write_sample_corpus

    seed = DEFAULT_SEED if args.seed is None else args.seed
    paths = write_sample_corpus(args.out, seed)
    print(f"sample corpus (seed {seed}) written to {paths['pretrain'].parent}:")
    for name, size, lines, tokens in corpus_stats(paths):
        print(f"  {name:<16} {size:>9,} bytes {lines:>6,} lines {tokens:>8,} tokens")
    print(f"  {TOKENIZER_DIR + '/':<16} byte-level BPE, vocab {SAMPLE_VOCAB_SIZE}")
    return 0


def run_download(args) -> int:
    """`data download [NAME ...] [--out DIR] [--source auto|modelscope|huggingface]`: without
    names, list MiniMind's files and which are here; with names, fetch and verify each one."""
    from .. import download as dl
    from ..paths import DATA_DIR

    out = Path(args.out) if args.out else DATA_DIR
    if not args.names:
        print(dl.list_files(out))
        return 0
    entries, problems = [], []
    for name in args.names:  # every name is checked before anything is fetched
        try:
            entries.append(dl.resolve_name(name))
        except ValueError as e:  # unknown, or retired (the message names the replacement)
            problems.append(str(e))
    try:
        dl.source_order(args.source)
    except ValueError as e:
        problems.append(str(e))
    if problems:
        raise CLIError("\n".join(problems))
    failed = []
    for entry in entries:
        try:
            print(dl.download(entry.name, out, args.source))
        except dl.DownloadError as e:
            print(f"error: {e}", file=sys.stderr)   # report it and go on with the other files
            failed.append(entry.name)
    if failed:
        raise CLIError(f"{len(failed)} of {len(entries)} file(s) not downloaded: {', '.join(failed)}")
    return 0
