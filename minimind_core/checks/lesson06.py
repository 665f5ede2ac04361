"""Checks for lesson 06 (LoRA, 低秩适配).

    from minimind_core.checks import lesson06 as checks
    checks.check_lora_forward(lora_forward)            # lora_forward(x, W, A, B, scale) -> tensor
    checks.check_merge_weight(merge_weight)            # merge_weight(W, A, B, scale) -> tensor
    checks.check_lora_param_count(lora_param_count)    # lora_param_count(model, rank, targets) -> int
    checks.check_apply_square_lora(apply_square_lora)  # stretch: apply_square_lora(model, rank) -> model

Shapes follow nn.Linear: W [out, in], A [rank, in], B [out, rank]; the adapted layer computes
x W^T + scale * (x A^T) B^T. The checks compare with `minimind_core.lora.LoRALinear` and
`apply_lora` / `count_lora_parameters` on seeded random inputs and small models (and, for the
count, on MiniMind2-Small itself, built on the `meta` device).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .. import lora as lib
from . import CheckFailed, call_learner, check, expect_equal, expect_tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _layer(d_in, d_out, rank, scale, seed, bias=False, dtype=torch.float32):
    """A library LoRALinear with random A and B (B non-zero, so the adapter matters)."""
    g = _gen(seed)
    base = nn.Linear(d_in, d_out, bias=bias)
    with torch.no_grad():
        base.weight.copy_(torch.randn(d_out, d_in, generator=g) * 0.1)
        if bias:
            base.bias.copy_(torch.randn(d_out, generator=g))
    layer = lib.LoRALinear(base, rank=rank, alpha=scale * rank)
    with torch.no_grad():
        layer.lora_A.copy_(torch.randn(rank, d_in, generator=g) * 0.3)
        layer.lora_B.copy_(torch.randn(d_out, rank, generator=g) * 0.3)
    return layer.to(dtype)


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------

@check("LoRA forward")
def check_lora_forward(lora_forward):
    cases = [
        ("x [2, 5, 24], W [16, 24], rank 4, scale 1", 24, 16, 4, 1.0, (2, 5), 0),
        ("rank 8 with scale alpha/r = 2 (multiply the detour by scale)", 24, 16, 8, 2.0, (3, 7), 1),
        ("a non-square layer, W [40, 12], rank 2, scale 0.5", 12, 40, 2, 0.5, (4,), 2),
    ]
    for desc, d_in, d_out, rank, scale, lead, seed in cases:
        layer = _layer(d_in, d_out, rank, scale, seed)
        x = torch.randn(*lead, d_in, generator=_gen(100 + seed))
        with torch.no_grad():
            expected = layer(x)
            got = call_learner(lora_forward, x, layer.weight.detach().clone(), layer.lora_A.detach().clone(),
                               layer.lora_B.detach().clone(), scale)
        expect_tensor(got, expected, f"{desc}", atol=1e-5, rtol=1e-4)
    # B = 0: the adapted layer is the base layer
    layer = _layer(24, 16, 4, 1.0, 3)
    with torch.no_grad():
        layer.lora_B.zero_()
        x = torch.randn(2, 3, 24, generator=_gen(7))
        got = call_learner(lora_forward, x, layer.weight.detach().clone(), layer.lora_A.detach().clone(),
                           layer.lora_B.detach().clone(), 1.0)
    expect_tensor(got, x @ layer.weight.detach().T, "B = 0 (a fresh adapter must change nothing)", atol=1e-6)
    return "matches LoRALinear on 3 shapes and scales; B = 0 gives the base layer"


# --------------------------------------------------------------------------------------------
# merge
# --------------------------------------------------------------------------------------------

@check("merge the adapter into W")
def check_merge_weight(merge_weight):
    for desc, d_in, d_out, rank, scale, seed in [
        ("W [16, 24], rank 4, scale 1", 24, 16, 4, 1.0, 0),
        ("W [40, 12], rank 2, scale 2 (remember the scale)", 12, 40, 2, 2.0, 1),
    ]:
        layer = _layer(d_in, d_out, rank, scale, seed)
        W, A, B = (t.detach().clone() for t in (layer.weight, layer.lora_A, layer.lora_B))
        W_before = W.clone()
        with torch.no_grad():
            got = call_learner(merge_weight, W, A, B, scale)
        if isinstance(got, torch.Tensor) and not torch.equal(W, W_before) and got.data_ptr() != W.data_ptr():
            raise CheckFailed(f"{desc}: your function changed W in place and returned another tensor; "
                              "return W + scale * B @ A without touching W")
        merged = copy.deepcopy(layer)
        merged.merge()
        expect_tensor(got, merged.weight.detach(), f"{desc}: merged weight [out, in]", atol=1e-6, rtol=1e-5)
    # the point of merging: one plain matmul gives the adapted layer's output
    layer = _layer(20, 20, 4, 1.5, 5)
    x = torch.randn(3, 20, generator=_gen(9))
    with torch.no_grad():
        got = call_learner(merge_weight, layer.weight.detach().clone(), layer.lora_A.detach().clone(),
                           layer.lora_B.detach().clone(), 1.5)
        expect_tensor(x @ got.T, layer(x), "x @ merged_W.T against the unmerged layer's output", atol=1e-5,
                      rtol=1e-4)
    return "W + scale * B @ A, and x @ W_merged.T equals the adapted layer"


# --------------------------------------------------------------------------------------------
# parameter count
# --------------------------------------------------------------------------------------------

def _small_model(**overrides):
    from ..config import MiniMindConfig
    from ..model import MiniMindForCausalLM

    cfg = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               vocab_size=300, max_position_embeddings=128)
    cfg.update(overrides)
    torch.manual_seed(0)
    return MiniMindForCausalLM(MiniMindConfig(**cfg))


def _expected_count(model, rank, targets) -> int:
    m = copy.deepcopy(model)
    lib.apply_lora(m, rank=rank, targets=list(targets))
    return lib.count_lora_parameters(m)


@check("LoRA parameter count")
def check_lora_param_count(lora_param_count):
    small = _small_model()
    cases = [
        (small, 4, ["q_proj"], "rank 4 on q_proj of a 2-layer, width-64 model"),
        (small, 8, ["q_proj", "o_proj"], "rank 8 on q_proj and o_proj"),
        (small, 2, ["k_proj", "v_proj"], "rank 2 on k_proj and v_proj (not square: 64 in, 32 out)"),
        (small, 3, ["gate_proj", "up_proj", "down_proj"], "rank 3 on the feed-forward layers"),
    ]
    for model, rank, targets, desc in cases:
        before = {n: p.clone() for n, p in model.state_dict().items()}
        got = call_learner(lora_param_count, model, rank, list(targets))
        after = model.state_dict()
        if set(after) != set(before) or any(not torch.equal(before[n], p) for n, p in after.items()):
            raise CheckFailed(f"{desc}: your function changed the model; only count, do not adapt it")
        if isinstance(got, torch.Tensor):
            got = int(got)
        expect_equal(got, _expected_count(model, rank, targets), desc)
    from ..config import MiniMindConfig
    from ..model import MiniMindForCausalLM

    with torch.device("meta"):
        full = MiniMindForCausalLM(MiniMindConfig())
    got = call_learner(lora_param_count, full, 8, ["q_proj", "o_proj"])
    expect_equal(int(got) if isinstance(got, torch.Tensor) else got, 131_072,
                 "MiniMind2-Small, rank 8 on q_proj and o_proj (MiniMind's LoRA)")
    return "4 target sets on a small model, and 131,072 for MiniMind's q/o adapter on MiniMind2-Small"


# --------------------------------------------------------------------------------------------
# stretch: MiniMind's variant, every square linear layer
# --------------------------------------------------------------------------------------------

@check("MiniMind's LoRA on the square layers (stretch)")
def check_apply_square_lora(apply_square_lora):
    rank = 4
    model = _small_model(hidden_size=64, num_attention_heads=4, num_key_value_heads=2)
    reference = copy.deepcopy(model).eval()
    ids = torch.randint(0, 300, (2, 9), generator=_gen(4))
    got = call_learner(apply_square_lora, model, rank)
    if got is None:
        got = model
    if not isinstance(got, nn.Module):
        raise CheckFailed(f"expected the adapted model (an nn.Module), got {type(got).__name__}")
    expected_layers = lib.target_modules(reference, "minimind")
    shapes = {n: tuple(reference.get_submodule(n).weight.shape) for n in expected_layers}
    trainable = {n: p for n, p in got.named_parameters() if p.requires_grad}

    def owner(name):
        return next((layer for layer in expected_layers if name.startswith(layer + ".")), None)

    stray = [n for n in trainable if owner(n) is None]
    if stray:
        raise CheckFailed(f"only the adapters of the square layers ({', '.join(expected_layers)}) may train; "
                          f"{stray[0]} still requires grad ({len(stray)} such tensor(s): freeze the base model)")
    for layer in expected_layers:
        sizes = sorted(p.numel() for n, p in trainable.items() if owner(n) == layer)
        out_f, in_f = shapes[layer]
        if sizes != sorted([rank * in_f, out_f * rank]):
            raise CheckFailed(f"{layer}: expected two trainable tensors of {rank} x {in_f} and {out_f} x {rank} "
                              f"values, got {len(sizes)} tensor(s) of sizes {sizes}")
    total = sum(p.numel() for p in trainable.values())
    expect_equal(total, sum(rank * (o + i) for o, i in shapes.values()), "trainable adapter parameters")
    got.eval()
    with torch.no_grad():
        expect_tensor(got(ids).logits, reference(ids).logits,
                      "logits right after adapting (B starts at zero, so nothing may change)", atol=1e-5)
    # the adapter must be on the forward path: non-zero adapter weights change the output
    g = _gen(11)
    with torch.no_grad():
        for p in trainable.values():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        if torch.allclose(got(ids).logits, reference(ids).logits, atol=1e-6):
            raise CheckFailed("with non-zero adapter weights the logits did not change: "
                              "the adapter is not used in forward")
    return (f"{len(expected_layers)} square layers adapted, {total:,} trainable parameters, "
            "logits unchanged at the start")


__all__ = ["check_lora_forward", "check_merge_weight", "check_lora_param_count", "check_apply_square_lora"]
