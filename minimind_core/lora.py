"""LoRA (低秩适配, Low-Rank Adaptation): fine-tune a frozen model through small adapters.

A frozen linear layer y = x W^T gets a trainable low-rank detour:

    y = x W^T + (x A^T B^T) * scale,    A: [rank, in], B: [out, rank], scale = alpha / rank

B starts at zero, so an adapted model starts out exactly equal to the base model. Only A and B
train (for MiniMind2-Small at rank 8 on q_proj and o_proj: 131,072 parameters, 0.5%).

Two variants:

    apply_lora(model, rank=8, targets="minimind")   MiniMind's: only the square projections
                                                    (q_proj and o_proj), A ~ N(0, 0.02^2), no scaling
    apply_lora(model, rank=8, targets="all")        q, k, v, o, gate, up and down projections

Unlike MiniMind2, the adapter can be folded into the weights: `merge_lora(model)` turns every
adapted layer back into a plain nn.Linear with W + B A * scale, so `save_pretrained` writes an
ordinary checkpoint that any Llama loader reads.

Adapter files: ours are safetensors (`save_lora`); MiniMind's are `torch.save`d state dicts whose
keys look like `model.layers.0.self_attn.q_proj.lora.A.weight` (A: [rank, in]) and
`...q_proj.lora.B.weight` (B: [out, rank]). `load_lora` reads both.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ALL_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
INITS = ("gaussian", "kaiming")
_FORMAT = "minimind_core.lora"


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update.

    The base layer's `weight` (and `bias`) stay attributes of this module under the same names,
    so the model's state-dict keys for the base weights do not change; the adapter adds
    `lora_A` [rank, in] and `lora_B` [out, rank].

    init="gaussian": A ~ N(0, 0.02^2) (MiniMind); init="kaiming": A like nn.Linear's default
    (Kaiming-uniform). B is always zero.
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float | None = None, init: str = "gaussian"):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if int(rank) != rank or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.rank = int(rank)
        self.alpha = float(rank if alpha is None else alpha)
        self.scale = self.alpha / self.rank
        self.init = init
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(self.rank, self.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.rank, device=w.device, dtype=w.dtype))
        self.reset_adapter()
        self.merged = False

    def reset_adapter(self) -> None:
        """Re-initialise A (by `self.init`) and set B to zero: the layer equals its base again."""
        with torch.no_grad():
            if self.init == "gaussian":
                self.lora_A.normal_(mean=0.0, std=0.02)
            else:
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            self.lora_B.zero_()

    def delta_weight(self) -> torch.Tensor:
        """B @ A * scale, the update the adapter adds to the weight ([out, in])."""
        return (self.lora_B @ self.lora_A) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.merged:          # the update is already inside self.weight
            return y
        return y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapter into the base weight (forward then skips the adapter). Idempotent."""
        if not self.merged:
            self.weight += self.delta_weight().to(self.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take a merged adapter back out of the base weight. Idempotent."""
        if self.merged:
            self.weight -= self.delta_weight().to(self.weight.dtype)
            self.merged = False

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear holding this layer's current weight (merged or not, as it is now)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        lin.weight = self.weight
        if self.bias is not None:
            lin.bias = self.bias
        return lin

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"alpha={self.alpha:g}, merged={self.merged}")


# ----------------------------------------------------------------------------------------------
# attaching and finding adapters


def target_modules(model: nn.Module, targets) -> list[str]:
    """Names of the nn.Linear modules `targets` picks (see apply_lora), in the model's order."""
    tied_head = None
    get_out = getattr(model, "get_output_embeddings", None)
    if callable(get_out) and getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        tied_head = get_out()
    names = []
    if targets is None:
        targets = "all"
    if isinstance(targets, str):
        if targets == "all":
            wanted = ALL_TARGETS
        elif targets == "minimind":
            wanted = None
        else:
            raise ValueError(f"targets must be 'all', 'minimind' or a list of module names, got {targets!r}")
    else:
        wanted = tuple(targets)
        if not wanted or not all(isinstance(t, str) and t for t in wanted):
            raise ValueError(f"targets must be a non-empty list of module names, got {targets!r}")
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if wanted is None:
            ok = module.weight.shape[0] == module.weight.shape[1]
        else:
            ok = any(name == t or name.endswith("." + t) for t in wanted)
        if ok:
            if module is tied_head:
                raise ValueError(f"{name} shares its weight with the input embedding (tied); "
                                 "an adapter on it cannot be merged cleanly")
            names.append(name)
    return names


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """{module name: LoRALinear} for every adapted layer of `model`."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def apply_lora(model: nn.Module, rank: int = 8, alpha: float | None = None, targets="all",
               init: str = "gaussian") -> nn.Module:
    """Wrap the target nn.Linear layers of `model` in LoRALinear, in place, and freeze the rest.

    targets: "all"       q, k, v, o, gate, up and down projections (default)
             "minimind"  MiniMind's variant: every square nn.Linear (q_proj and o_proj at h=512)
             [names]     modules whose name is, or ends with, one of these (e.g. ["q_proj", "v_proj"]
                         or full names like "model.layers.0.self_attn.q_proj")
    alpha:   None means alpha = rank (scale 1, MiniMind's behaviour)
    Returns `model`; afterwards only the adapters' lora_A / lora_B require grad.
    """
    if lora_layers(model):
        raise ValueError("the model already has LoRA adapters; merge_lora or remove_lora them first")
    names = target_modules(model, targets)
    if not names:
        raise ValueError(f"targets={targets!r} matches no nn.Linear layer of {type(model).__name__}")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        base = model.get_submodule(name)
        _set_submodule(model, name, LoRALinear(base, rank=rank, alpha=alpha, init=init))
    for layer in lora_layers(model).values():
        layer.lora_A.requires_grad_(True)
        layer.lora_B.requires_grad_(True)
    model._lora_config = {"rank": int(rank), "alpha": float(rank if alpha is None else alpha),
                         "targets": targets if isinstance(targets, str) or targets is None else list(targets),
                         "init": init}
    return model


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapter parameters (A and B of every LoRALinear), e.g. for the optimizer."""
    params = []
    for layer in lora_layers(model).values():
        params += [layer.lora_A, layer.lora_B]
    return params


def count_lora_parameters(model: nn.Module) -> int:
    """Number of adapter parameters (131,072 for MiniMind's variant, rank 8, on MiniMind2-Small)."""
    return sum(p.numel() for p in lora_parameters(model))


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights only: {"<module>.lora_A": [rank, in], "<module>.lora_B": [out, rank]}."""
    out = {}
    for name, layer in lora_layers(model).items():
        out[f"{name}.lora_A"] = layer.lora_A.detach()
        out[f"{name}.lora_B"] = layer.lora_B.detach()
    return out


def save_lora(model: nn.Module, path: str | Path) -> Path:
    """Write the adapter (only) to a safetensors file, with rank and alpha in its metadata."""
    from safetensors.torch import save_file

    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA adapters to save (call apply_lora first)")
    first = next(iter(layers.values()))
    meta = {"format": _FORMAT, "rank": str(first.rank), "alpha": repr(first.alpha)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().cpu() for k, v in lora_state_dict(model).items()}, str(path), metadata=meta)
    return path


# ----------------------------------------------------------------------------------------------
# loading (ours and MiniMind's files)


def _strip_prefixes(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):      # DistributedDataParallel, torch.compile
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def _normalise_keys(state: dict, source: str) -> dict[str, torch.Tensor]:
    """Map both key styles to ours: `X.lora.A.weight` -> `X.lora_A`, `X.lora.B.weight` -> `X.lora_B`."""
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        k = _strip_prefixes(key)
        if k.endswith(".lora.A.weight"):
            k = k[: -len(".lora.A.weight")] + ".lora_A"
        elif k.endswith(".lora.B.weight"):
            k = k[: -len(".lora.B.weight")] + ".lora_B"
        elif not (k.endswith(".lora_A") or k.endswith(".lora_B")):
            raise ValueError(f"{source}: key {key!r} is not a LoRA adapter weight "
                             "(expected '<module>.lora_A/.lora_B' or MiniMind's '<module>.lora.A/B.weight')")
        if k in out:
            raise ValueError(f"{source}: adapter weight {k!r} appears twice")
        out[k] = value
    return out


def _read_adapter_file(path: Path) -> tuple[dict, dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such adapter file")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        return state, meta
    try:   # MiniMind's .pth: a pickled state dict; weights_only=True runs no code
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: cannot read as a PyTorch state dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found a {type(state).__name__}")
    return state, {}


def load_lora(model: nn.Module, path_or_state_dict, strict: bool = True, alpha: float | None = None) -> nn.Module:
    """Load adapter weights into `model` (in place) and return it.

    Accepts a path (our `.safetensors`, or MiniMind's `.pth`, read with weights_only=True) or a
    state dict in either key style. When the model has no adapters yet they are created on exactly
    the modules the file names, with the file's rank; alpha comes from `alpha`, else the file's
    metadata, else alpha = rank (MiniMind's files have no scaling). strict=True: every adapted layer
    of the model must get weights and every weight must find its layer.
    """
    if isinstance(path_or_state_dict, (str, Path)):
        source = str(path_or_state_dict)
        raw, meta = _read_adapter_file(Path(path_or_state_dict))
    elif isinstance(path_or_state_dict, dict):
        source, raw, meta = "adapter state dict", path_or_state_dict, {}
    else:
        raise TypeError(f"load_lora expects a path or a state dict, got {type(path_or_state_dict).__name__}")
    state = _normalise_keys(raw, source)
    if not state:
        raise ValueError(f"{source}: holds no adapter weights")
    modules = sorted({k.rsplit(".", 1)[0] for k in state})
    for m in modules:
        for part in ("lora_A", "lora_B"):
            if f"{m}.{part}" not in state:
                raise ValueError(f"{source}: {m} has no {part} weight (A and B come in pairs)")

    layers = lora_layers(model)
    if not layers:
        ranks = {state[f"{m}.lora_A"].shape[0] for m in modules}
        if len(ranks) != 1:
            raise ValueError(f"{source}: adapters of different ranks {sorted(ranks)} are not supported")
        rank = ranks.pop()
        if alpha is None:
            alpha = float(meta["alpha"]) if "alpha" in meta else None
        missing = [m for m in modules if not _has_linear(model, m)]
        if missing:
            raise ValueError(f"{source}: no nn.Linear named {missing[0]!r} in the model "
                             f"({len(missing)} adapter module(s) unmatched)")
        apply_lora(model, rank=rank, alpha=alpha, targets=modules)
        layers = lora_layers(model)
    elif alpha is not None:
        raise ValueError("alpha can only be given when load_lora creates the adapters")

    unknown = [m for m in modules if m not in layers]
    if unknown and strict:
        raise ValueError(f"{source}: adapter for {unknown[0]!r} but the model has no LoRA layer there "
                         f"({len(unknown)} unmatched; the model's are e.g. {next(iter(layers))!r})")
    not_loaded = [n for n in layers if f"{n}.lora_A" not in state]
    if not_loaded and strict:
        raise ValueError(f"{source}: no weights for the model's LoRA layer {not_loaded[0]!r} "
                         f"({len(not_loaded)} layer(s) missing)")
    with torch.no_grad():
        for m in modules:
            if m not in layers:
                continue
            layer = layers[m]
            if layer.merged:
                raise ValueError(f"{m}: the adapter is merged; unmerge_lora before loading new weights")
            for part, param in (("lora_A", layer.lora_A), ("lora_B", layer.lora_B)):
                value = state[f"{m}.{part}"]
                if value.shape != param.shape:
                    raise ValueError(f"{source}: {m}.{part} has shape {tuple(value.shape)}, the model's "
                                     f"layer expects {tuple(param.shape)} (rank {layer.rank}, "
                                     f"in {layer.in_features}, out {layer.out_features})")
                param.copy_(value.to(param.dtype))
    return model


def _has_linear(model: nn.Module, name: str) -> bool:
    try:
        return isinstance(model.get_submodule(name), nn.Linear)
    except AttributeError:
        return False


# ----------------------------------------------------------------------------------------------
# merging and removing


def merge_lora(model: nn.Module, keep_adapters: bool = False) -> nn.Module:
    """Fold every adapter into its base weight.

    keep_adapters=False (default): each LoRALinear becomes a plain nn.Linear holding W + B A * scale,
    every parameter requires grad again, and `save_pretrained` writes an ordinary checkpoint.
    keep_adapters=True: the layers stay LoRALinear in merged state (faster inference;
    `unmerge_lora` takes the update back out).
    """
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA adapters to merge")
    for name, layer in layers.items():
        layer.merge()
        if not keep_adapters:
            _set_submodule(model, name, layer.to_linear())
    if not keep_adapters:
        _finish_plain(model)
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo `merge_lora(model, keep_adapters=True)`: subtract every adapter from its base weight."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA adapters (a merge_lora without keep_adapters cannot be undone)")
    for layer in layers.values():
        layer.unmerge()
    return model


def remove_lora(model: nn.Module) -> nn.Module:
    """Drop the adapters and give back the original base model (unmerging first where merged)."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA adapters to remove")
    for name, layer in layers.items():
        layer.unmerge()
        _set_submodule(model, name, layer.to_linear())
    _finish_plain(model)
    return model


def _finish_plain(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(True)
    if hasattr(model, "_lora_config"):
        del model._lora_config


def adapter_config(model: nn.Module) -> dict:
    """rank, alpha, targets and init of the model's adapters (what apply_lora was given)."""
    cfg = getattr(model, "_lora_config", None)
    if not cfg or not lora_layers(model):
        raise ValueError("the model has no LoRA adapters")
    return dict(cfg)


def trainable_summary(model: nn.Module) -> str:
    """'trainable 131,072 of 25,960,960 parameters (0.50%)' (adapters counted on top of the base)."""
    params = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / max(total, 1):.2f}%)"


__all__ = ["LoRALinear", "ALL_TARGETS", "target_modules", "apply_lora", "lora_layers", "lora_parameters",
           "count_lora_parameters", "lora_state_dict", "save_lora", "load_lora", "merge_lora", "unmerge_lora",
           "remove_lora", "adapter_config", "trainable_summary"]
