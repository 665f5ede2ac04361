"""`eval qa | ppl`: held-out question accuracy and perplexity of a trained model.

    python -m minimind_core eval qa --model runs/tiny/sft
    python -m minimind_core eval ppl --model runs/tiny/pretrain --data minimind_core/sample/pretrain.jsonl
"""
from __future__ import annotations

from pathlib import Path

from ..profiles import PROFILE_NAMES
from .errors import CLIError


def add_parsers(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model: held-out question accuracy or perplexity")
    esub = p.add_subparsers(dest="eval_command", required=True, metavar="SUBCOMMAND")
    q = esub.add_parser("qa", help="greedy answers to held-out questions; prints `accuracy: 0.xx (n/N)`")
    q.add_argument("--model", required=True, help="model or run folder")
    q.add_argument("--data", default=None, help="eval JSONL (default: the profile's eval_qa file)")
    q.add_argument("--profile", choices=PROFILE_NAMES, default=None)
    q.add_argument("--limit", type=int, default=None, help="only the first N questions")
    q.add_argument("--show", type=int, default=0, help="print the first N answers")
    q.add_argument("--verbose", action="store_true", help="print every answer")
    q.add_argument("--max-new-tokens", type=int, default=None, help="reply length limit (default 48)")
    q.add_argument("--batch-size", type=int, default=None, help="questions answered together (default 16)")
    q.set_defaults(handler=run_qa)
    s = esub.add_parser("ppl", help="perplexity of a model on a JSONL file")
    s.add_argument("--model", required=True, help="model or run folder")
    s.add_argument("--data", required=True)
    s.add_argument("--seq-len", type=int, default=None)
    s.add_argument("--limit", type=int, default=None, help="only the first N records")
    s.add_argument("--max-tokens", type=int, default=None, help="stop after scoring N tokens")
    s.set_defaults(handler=run_ppl)


def _eval_file(args) -> Path:
    """--data, else the eval file of --profile (or of MINIMIND_PROFILE's profile)."""
    if args.data:
        return Path(args.data)
    from ..profiles import get_profile

    profile = get_profile(args.profile)
    if profile.eval_qa is None:
        raise CLIError(f"profile {profile.name} has no eval file; pass --data")
    return Path(profile.eval_qa)


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"{path}: no such file")
    return path


def run_qa(args) -> int:
    """`eval qa --model DIR [--data FILE] [--limit N] [--show N]`.

    Prints the first --show answers (all of them with --verbose), the accuracy per language and
    per kind, the in-format rate, and last `accuracy: 0.xx (n/N)`.
    """
    from ..checkpoint import load_model_and_tokenizer
    from ..evaluate import format_row, qa_accuracy

    path = _existing(_eval_file(args))
    model, tokenizer = load_model_and_tokenizer(args.model)
    result = qa_accuracy(model, tokenizer, path, max_new_tokens=args.max_new_tokens or 48, limit=args.limit,
                         batch_size=args.batch_size or 16, progress=True)
    show = len(result.rows) if args.verbose else args.show
    for row in result.rows[:show]:
        print(format_row(row))
    for title, groups in (("lang", result.by_lang), ("kind", result.by_kind)):
        if len(groups) > 1:
            print(f"by {title}: " + ", ".join(f"{k or '?'} {g['accuracy']:.2f} ({g['n_correct']}/{g['n']})"
                                              for k, g in groups.items()))
    print(f"in format: {result.in_format:.2f} (replies closed with <|im_end|>)")
    print(result.line())
    return 0


def run_ppl(args) -> int:
    """`eval ppl --model DIR --data FILE [--seq-len N] [--limit N]`: prints `perplexity: X.XX (N tokens)`."""
    from ..checkpoint import load_model_and_tokenizer
    from ..evaluate import perplexity

    path = _existing(args.data)
    model, tokenizer = load_model_and_tokenizer(args.model)
    seq_len = args.seq_len or min(256, model.config.max_position_embeddings)
    ppl, nll, n = perplexity(model, tokenizer, path, seq_len=seq_len, max_tokens=args.max_tokens, limit=args.limit,
                             progress=True)
    print(f"mean NLL: {nll:.4f} nats per token")
    print(f"perplexity: {ppl:.2f} ({n} tokens)")
    return 0
