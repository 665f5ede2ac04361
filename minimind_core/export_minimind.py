"""Write a course model the way MiniMind's own scripts save and load it: a half-precision `.pth`.

MiniMind2's trainers end with `torch.save({k: v.half() for k, v in state_dict.items()}, path)`, the
file named after the stage and the width: `pretrain_512.pth`, `full_sft_512.pth`, `rlhf_512.pth`
(DPO), `full_dist_512.pth` (distillation), a `_moe` suffix for the mixture-of-experts model, and a
LoRA adapter alone under `lora/lora_identity_512.pth`. Its `eval_model.py --load 0` rebuilds the
model from three command-line settings (hidden_size, num_hidden_layers, use_moe), loads that file
with `load_state_dict(strict=True)`, and takes the tokenizer from MiniMind's `./model/` folder.

Our parameter names are MiniMind's, so the state dict goes over as it is (both tied names, as in
the official files). What does not go over by itself is written down: the exact `eval_model.py`
command, and the settings `eval_model.py` has no flag for (vocab size, head counts, ...) when a
course model differs from MiniMind2-Small there. They go to the screen and to README.txt.

A LoRA adapter is written in MiniMind's adapter format when MiniMind's `apply_lora` can hold it:
rank-8 A and B on every square projection (for MiniMind2: q_proj and o_proj), no scaling. A lower
rank is padded with zeros, our alpha/rank scale is folded into B, and a square layer the adapter
does not touch gets zeros. Adapters on other layers (the course's default adapts all seven
projections) cannot be expressed: they are merged into the weights and written as one full file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import ExportError

# our training stages -> MiniMind's weight names (their trainers' --save_weight)
WEIGHT_OF_STAGE = {"pretrain": "pretrain", "sft": "full_sft", "dpo": "rlhf", "distill": "full_dist"}
# eval_model.py --model_mode: which weight name each mode loads (modes 0-3 mean the same in every
# MiniMind2 release; 4 and up changed between them)
EVAL_MODES = {"pretrain": 0, "full_sft": 1, "rlhf": 2, "reason": 3}
MINIMIND_LORA_RANK = 8     # eval_model.py calls apply_lora(model) with its default rank
# settings eval_model.py cannot pass to MiniMindConfig, with MiniMind2's defaults
FIXED_SETTINGS = {"vocab_size": 6400, "num_attention_heads": 8, "num_key_value_heads": 2,
                  "rms_norm_eps": 1e-5, "rope_theta": 1e6}


@dataclass
class MiniMindExport:
    """What was written, and how MiniMind's eval_model.py loads it."""

    out_dir: Path
    weights: Path                      # the model's .pth
    lora: Path | None                  # lora/lora_<name>_<hidden>.pth, when an adapter was exported
    command: str                       # the eval_model.py command line
    config_edits: dict = field(default_factory=dict)   # MiniMindConfig settings to add by hand
    notes: list[str] = field(default_factory=list)
    readme: Path | None = None

    def summary(self) -> str:
        """What the command line prints: the files, then README.txt's instructions."""
        return self.readme.read_text(encoding="utf-8") if self.readme else str(self.weights)


# ----------------------------------------------------------------------------------------------
# what the model is


def _stage_of(model_dir: Path) -> str | None:
    """The training stage recorded beside a checkpoint (checkpoint.json) or in its run (run.json)."""
    from .checkpoint import CHECKPOINT_INFO, RUN_INFO

    for f in (model_dir / CHECKPOINT_INFO, model_dir.parent.parent / RUN_INFO, model_dir / RUN_INFO):
        if f.is_file():
            try:
                stage = json.loads(f.read_text(encoding="utf-8")).get("stage")
            except (json.JSONDecodeError, AttributeError):
                continue
            if stage:
                return stage
    return None


def _adapter_name(model_dir: Path) -> str:
    """MiniMind names an adapter after its data (lora_identity.jsonl -> identity)."""
    from .checkpoint import RUN_INFO

    for f in (model_dir.parent.parent / RUN_INFO, model_dir / RUN_INFO):
        if f.is_file():
            try:
                data = json.loads(f.read_text(encoding="utf-8")).get("data")
            except (json.JSONDecodeError, AttributeError):
                continue
            if data:
                stem = Path(data).stem
                return stem[len("lora_"):] if stem.startswith("lora_") and len(stem) > 5 else stem
    return "custom"


def minimind_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's weights as MiniMind saves them: fp16, on the CPU, both tied names present."""
    return {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}


def _square_linears(model) -> list[str]:
    """The layers MiniMind's apply_lora adapts: every Linear whose weight is square."""
    from torch import nn

    from .lora import LoRALinear

    out = []
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear) and m.in_features == m.out_features:
            out.append(name)
        elif isinstance(m, nn.Linear) and m.weight.shape[0] == m.weight.shape[1]:
            out.append(name)
    return out


def minimind_lora_state_dict(model) -> dict[str, torch.Tensor]:
    """Our adapters in MiniMind's adapter format (`<layer>.lora.A.weight` [8, in], `.lora.B.weight`
    [out, 8], no scaling), or an ExportError when MiniMind's apply_lora cannot hold them."""
    from .lora import lora_layers

    layers = lora_layers(model)
    square = _square_linears(model)
    outside = sorted(set(layers) - set(square))
    if outside:
        raise ExportError(f"it adapts {', '.join(outside[:2])}{' ...' if len(outside) > 2 else ''}, "
                          "and MiniMind's apply_lora adapts only square layers")
    ranks = sorted({l.rank for l in layers.values()})
    if ranks[-1] > MINIMIND_LORA_RANK:
        raise ExportError(f"it has rank {ranks[-1]}, and eval_model.py builds rank {MINIMIND_LORA_RANK} adapters")
    out = {}
    for name in square:
        mod = model.get_submodule(name)
        a = torch.zeros(MINIMIND_LORA_RANK, mod.in_features)
        b = torch.zeros(mod.out_features, MINIMIND_LORA_RANK)
        if name in layers:
            l = layers[name]
            a[:l.rank] = l.lora_A.detach().float().cpu()
            b[:, :l.rank] = l.lora_B.detach().float().cpu() * l.scale
        out[f"{name}.lora.A.weight"] = a.half()
        out[f"{name}.lora.B.weight"] = b.half()
    return out


def write_tokenizer_for_minimind(tokenizer, out_dir: Path) -> Path:
    """The tokenizer files MiniMind's ./model/ folder holds, readable by the transformers MiniMind2
    pins (4.48): tokenizer.save_tokenizer's files (tokenizer.json, and a tokenizer_config.json
    naming PreTrainedTokenizerFast with the chat template inside it)."""
    from .tokenizer import save_tokenizer

    return save_tokenizer(tokenizer, out_dir)


# ----------------------------------------------------------------------------------------------
# the command MiniMind's eval_model.py needs


def config_edits(config) -> dict:
    """MiniMindConfig settings this model needs that eval_model.py has no flag for."""
    from .config import swiglu_hidden_size

    edits = {k: getattr(config, k) for k, v in FIXED_SETTINGS.items() if getattr(config, k) != v}
    if config.intermediate_size != swiglu_hidden_size(config.hidden_size):
        edits["intermediate_size"] = config.intermediate_size
    if config.use_moe:
        for k, default in (("num_experts_per_tok", 2), ("n_routed_experts", 4), ("n_shared_experts", 1)):
            if getattr(config, k) != default:
                edits[k] = getattr(config, k)
    return edits


def eval_command(config, weight: str, lora_name: str | None = None) -> str:
    """`python eval_model.py ...` that loads `<weight>_<hidden>.pth` from MiniMind's out/ folder."""
    parts = ["python eval_model.py", "--load 0", f"--model_mode {EVAL_MODES.get(weight, 1)}",
             f"--hidden_size {config.hidden_size}", f"--num_hidden_layers {config.num_hidden_layers}"]
    if config.use_moe:
        parts.append("--use_moe 1")
    if lora_name:
        parts.append(f"--lora_name {lora_name}")
    return " ".join(parts)


def _readme(exp: MiniMindExport, config, weight: str, tokenizer_dir: Path) -> str:
    rel = exp.weights.name
    lines = [
        "MiniMind weights exported from the MiniMind course",
        "",
        f"  {rel}: the model's state dict in float16, MiniMind's parameter names"
        + (f"\n  lora/{exp.lora.name}: the LoRA adapter in MiniMind's format" if exp.lora else ""),
        f"  tokenizer/: the tokenizer this model was trained with (vocab {config.vocab_size})",
        "",
        "To chat with it through MiniMind2's eval_model.py, from MiniMind's folder:",
        "",
        f"  cp {rel} out/" + (f" && mkdir -p out/lora && cp lora/{exp.lora.name} out/lora/" if exp.lora else ""),
        f"  {exp.command}",
        "",
        "(eval_model.py reads ./out/<name>_<hidden_size>.pth; type 0 for its automatic prompts, 1 to chat.)",
    ]
    if exp.lora:
        lines += ["", f"The adapter has rank {MINIMIND_LORA_RANK}, what MiniMind2's apply_lora builds from its "
                      "2025-04-27 release on (earlier releases and MiniMind-3 build rank 16)."]
    if weight not in EVAL_MODES:
        lines += ["", f"eval_model.py has no --model_mode for '{weight}' weights: copy the file as "
                      f"full_sft_{config.hidden_size}.pth to load it with --model_mode 1."]
    if exp.config_edits:
        args = ", ".join(f"{k}={v!r}" for k, v in exp.config_edits.items())
        lines += ["", "This model differs from MiniMind2's defaults in settings eval_model.py has no flag for.",
                  "Add them to the MiniMindConfig(...) call in eval_model.py's init_model:", "",
                  f"  {args}"]
    lines += ["", "eval_model.py takes the tokenizer from MiniMind's ./model/ folder."]
    if config.vocab_size != FIXED_SETTINGS["vocab_size"]:
        lines += [f"This model was trained with its own {config.vocab_size}-token tokenizer: copy "
                  f"{tokenizer_dir.name}/tokenizer.json and {tokenizer_dir.name}/tokenizer_config.json over "
                  "./model/'s (keep a copy of MiniMind's), or the text will be garbage."]
    else:
        lines += ["If this model was trained with a tokenizer of your own rather than MiniMind's, copy "
                  f"{tokenizer_dir.name}/tokenizer.json and tokenizer_config.json over ./model/'s."]
    if exp.notes:
        lines += [""] + exp.notes
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# the export


def _adapter_base(d: Path) -> Path | None:
    """The base model folder an adapter folder names in adapter_config.json."""
    from .checkpoint import ADAPTER_CONFIG, read_json, resolve_model_dir

    base = read_json(d / ADAPTER_CONFIG).get("base") if (d / ADAPTER_CONFIG).is_file() else None
    if not base:
        return None
    base = Path(base) if Path(base).is_absolute() else (d / base).resolve()
    return resolve_model_dir(base)


def export_minimind(model_dir: str | Path, out_dir: str | Path, weight: str | None = None,
                    lora_name: str | None = None, merge: bool = False) -> MiniMindExport:
    """Write `model_dir` (a model, run or LoRA adapter folder) as MiniMind `.pth` files in `out_dir`.

    weight:     MiniMind's name for the weights (pretrain, full_sft, rlhf, full_dist, reason, ...);
                default: from the stage that trained the checkpoint (for an adapter: its base's).
    lora_name:  the adapter's name in `lora/lora_<name>_<hidden>.pth` (default: from its data file).
    merge:      fold a LoRA adapter into the weights and write one full file (done anyway, with a
                note, when MiniMind's adapter format cannot hold the adapter).
    """
    from .checkpoint import load_model_and_tokenizer, resolve_model_dir
    from .lora import lora_layers, merge_lora, remove_lora

    d = resolve_model_dir(model_dir)
    model, tokenizer = load_model_and_tokenizer(d, device="cpu")
    cfg = model.config
    if not cfg.tie_word_embeddings:
        raise ExportError(f"{d}: untied embeddings; MiniMind2's model always ties lm_head to embed_tokens")
    if weight is not None and not weight.replace("_", "").isalnum():
        raise ExportError(f"--weight {weight!r}: expected a name such as full_sft or rlhf")
    stage = _stage_of(d)
    notes = []
    lora_state = None
    if lora_layers(model):
        base = _adapter_base(d)
        stage = (_stage_of(base) if base is not None else None) or "sft"   # the adapted model chats
        if not merge:
            try:
                lora_state = minimind_lora_state_dict(model)
            except ExportError as e:
                notes.append(f"The LoRA adapter is merged into these weights: {e}.")
        if lora_state is not None:
            remove_lora(model)
        else:
            merge_lora(model)
            if merge:
                notes.append("The LoRA adapter is merged into these weights (--merge).")
    if weight is None:
        if stage not in WEIGHT_OF_STAGE:
            names = ", ".join(sorted(set(WEIGHT_OF_STAGE.values()) | set(EVAL_MODES)))
            raise ExportError(f"{d}: no record of the stage that trained this model ({stage or 'none found'}); "
                              f"pass --weight NAME, one of {names}")
        weight = WEIGHT_OF_STAGE[stage]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lora_path = eval_lora = None
    if lora_state is not None:
        name = lora_name or _adapter_name(d)
        eval_lora = f"lora_{name}"
        lora_path = out / "lora" / f"{eval_lora}_{cfg.hidden_size}.pth"
        lora_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(lora_state, lora_path)
    weights = out / f"{weight}_{cfg.hidden_size}{'_moe' if cfg.use_moe else ''}.pth"
    torch.save(minimind_state_dict(model), weights)
    tok_dir = out / "tokenizer"
    write_tokenizer_for_minimind(tokenizer, tok_dir)

    if cfg.qk_norm:
        notes.append("This is a MiniMind-3 model (q/k-norm): MiniMind2's eval_model.py cannot build it. MiniMind-3's "
                     f"code loads the same file with `python eval_llm.py --weight {weight} --hidden_size "
                     f"{cfg.hidden_size} --num_hidden_layers {cfg.num_hidden_layers}"
                     f"{' --use_moe 1' if cfg.use_moe else ''}` when its other settings are MiniMind-3's.")
    exp = MiniMindExport(out_dir=out, weights=weights, lora=lora_path, command=eval_command(cfg, weight, eval_lora),
                         config_edits=config_edits(cfg), notes=notes)
    exp.readme = out / "README.txt"
    exp.readme.write_text(_readme(exp, cfg, weight, tok_dir), encoding="utf-8")
    return exp


__all__ = ["WEIGHT_OF_STAGE", "EVAL_MODES", "MiniMindExport", "export_minimind", "minimind_state_dict",
           "minimind_lora_state_dict", "eval_command", "config_edits", "write_tokenizer_for_minimind"]
