"""`export hf | llama | qwen3 | gguf | minimind`: a trained model as a transformers folder (Llama for
MiniMind2, Qwen3 for MiniMind-3; `hf` picks from the model's config), one GGUF file for llama.cpp
and Ollama, or MiniMind's own `.pth` weights."""
from __future__ import annotations

from .errors import CLIError


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="export a trained model to other formats")
    esub = p.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    for name, what in (("hf", "a transformers folder: Llama (MiniMind2) or Qwen3 (MiniMind-3), from the config"),
                       ("llama", "a transformers LlamaForCausalLM folder (MiniMind2 models)"),
                       ("qwen3", "a transformers Qwen3ForCausalLM / Qwen3MoeForCausalLM folder (MiniMind-3 models)")):
        e = esub.add_parser(name, help=f"write {what}")
        e.add_argument("--model", required=True, help="a model folder, a run folder or a LoRA adapter folder")
        e.add_argument("--out", required=True)
        e.set_defaults(handler=run_hf, family=None if name == "hf" else name)

    g = esub.add_parser("gguf", help="write one GGUF file for llama.cpp and Ollama")
    g.add_argument("--model", required=True, help="a model folder, a run folder or a LoRA adapter folder")
    g.add_argument("--out", required=True, help="the .gguf file to write")
    g.add_argument("--dtype", choices=["f32", "f16", "q8_0"], default="f16",
                   help="weight type (norms stay f32); q8_0 is 8-bit, about half the size of f16")
    g.set_defaults(handler=run_gguf)

    m = esub.add_parser("minimind", help="write MiniMind's .pth weights and the eval_model.py command")
    m.add_argument("--model", required=True, help="a model folder, a run folder or a LoRA adapter folder")
    m.add_argument("--out", required=True, help="the folder to write")
    m.add_argument("--weight", default=None,
                   help="MiniMind's name for the weights (pretrain, full_sft, rlhf, full_dist, reason); "
                        "default: from the stage that trained the model")
    m.add_argument("--lora-name", default=None,
                   help="an adapter's name in lora/lora_<name>_<hidden>.pth (default: from its data file)")
    m.add_argument("--merge", action="store_true", help="fold a LoRA adapter into the weights (one file)")
    m.set_defaults(handler=run_minimind)


def run_hf(args) -> int:
    """`export hf | llama | qwen3 --model DIR --out DIR`; a missing or unusable model is a
    CheckpointError (printed by cli.main), a model of another family (or of none) a ValueError."""
    from ..export import export_hf

    try:
        out, family = export_hf(args.model, args.out, family=args.family)
    except ValueError as e:
        raise CLIError(str(e)) from None
    cls = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM"}[family]
    print(f"wrote a {cls} folder to {out}")
    print(f"load it with: AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def run_gguf(args) -> int:
    """`export gguf --model DIR --out FILE [--dtype f32|f16|q8_0]`."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise CLIError("export gguf needs llama.cpp's gguf package: pip install -e \".[export]\"") from None
    from ..export_gguf import export_gguf

    out = export_gguf(args.model, args.out, args.dtype)
    print(f"wrote {out} ({args.dtype}, {out.stat().st_size / 1e6:.1f} MB)")
    print(f"chat with it in llama.cpp: llama-completion -m {out} -cnv --jinja")
    return 0


def run_minimind(args) -> int:
    """`export minimind --model DIR --out DIR [--weight NAME] [--lora-name NAME] [--merge]`."""
    from ..export_minimind import export_minimind

    exp = export_minimind(args.model, args.out, weight=args.weight, lora_name=args.lora_name, merge=args.merge)
    print(exp.summary(), end="")
    print(f"(this text is also in {exp.readme})")
    return 0
