"""`export llama`: write a trained model as a plain transformers LlamaForCausalLM folder."""
from __future__ import annotations

from .errors import CLIError


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="export a trained model to other formats")
    esub = p.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    e = esub.add_parser("llama", help="write a transformers LlamaForCausalLM folder")
    e.add_argument("--model", required=True, help="a model folder or a run folder")
    e.add_argument("--out", required=True)
    e.set_defaults(handler=run_llama)


def run_llama(args) -> int:
    """`export llama --model DIR --out DIR`; a missing or unusable model is a CheckpointError
    (printed by cli.main), a model with no Llama equivalent (MoE) a ValueError."""
    from ..export import export_llama

    try:
        out = export_llama(args.model, args.out)
    except ValueError as e:
        raise CLIError(str(e)) from None
    print(f"wrote a LlamaForCausalLM folder to {out}")
    print(f"load it with: AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0
