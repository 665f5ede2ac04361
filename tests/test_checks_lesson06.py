"""Lesson 06 checks: pass on the answers, 'not done yet' on the stubs, a readable message on wrong ones."""
import torch
import torch.nn as nn

from minimind_core.checks import lesson06 as checks
from check_helpers import stub


# ---- reference answers, written independently of the library ---------------------------------

def lora_forward(x, W, A, B, scale):
    return x @ W.T + scale * (x @ A.T) @ B.T


def merge_weight(W, A, B, scale):
    return W + scale * (B @ A)


def lora_param_count(model, rank, targets):
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets:
            total += rank * (module.in_features + module.out_features)
    return total


class _Adapted(nn.Module):
    def __init__(self, base, rank):
        super().__init__()
        self.base = base
        self.A = nn.Parameter(torch.randn(rank, base.in_features) * 0.02)
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + (x @ self.A.T) @ self.B.T


def apply_square_lora(model, rank):
    model.requires_grad_(False)
    names = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and m.in_features == m.out_features]
    for n in names:
        parent, _, child = n.rpartition(".")
        holder = model.get_submodule(parent)
        setattr(holder, child, _Adapted(getattr(holder, child), rank))
    return model


# ---- the tests --------------------------------------------------------------------------------

def _all_checks():
    return [(checks.check_lora_forward, lora_forward), (checks.check_merge_weight, merge_weight),
            (checks.check_lora_param_count, lora_param_count), (checks.check_apply_square_lora, apply_square_lora)]


def test_checks_pass_on_answers():
    for chk, fn in _all_checks():
        result = chk(fn)
        assert result.passed, str(result)


def test_checks_report_not_done_on_stubs():
    for chk, _ in _all_checks():
        result = chk(stub)
        assert not result.passed
        assert "not done yet" in str(result)


def test_forward_without_scale_fails():
    r = checks.check_lora_forward(lambda x, W, A, B, scale: x @ W.T + (x @ A.T) @ B.T)
    assert not r.passed
    assert "scale" in r.message and "differ" in r.message


def test_forward_with_transposed_product_fails():
    r = checks.check_lora_forward(lambda x, W, A, B, scale: x @ W.T + scale * (x @ B) @ A)
    assert not r.passed
    assert "your function raised RuntimeError" in r.message


def test_merge_with_a_times_b_fails():
    def wrong(W, A, B, scale):
        return W + scale * (A.T @ B.T).T     # the same as B @ A: must pass
    assert checks.check_merge_weight(wrong).passed
    r = checks.check_merge_weight(lambda W, A, B, scale: W + B @ A)
    assert not r.passed
    assert "remember the scale" in r.message


def test_merge_in_place_is_reported():
    def in_place(W, A, B, scale):
        W += scale * B @ A
        return W.clone()
    r = checks.check_merge_weight(in_place)
    assert not r.passed
    assert "in place" in r.message


def test_count_with_in_times_out_fails():
    def wrong(model, rank, targets):
        return sum(m.in_features * m.out_features for n, m in model.named_modules()
                   if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets)
    r = checks.check_lora_param_count(wrong)
    assert not r.passed
    assert "rank 4 on q_proj" in r.message and "expected" in r.message


def test_count_ignoring_targets_fails():
    def wrong(model, rank, targets):
        return sum(rank * (m.in_features + m.out_features) for m in model.modules() if isinstance(m, nn.Linear))
    r = checks.check_lora_param_count(wrong)
    assert not r.passed
    assert "expected" in r.message


def test_count_that_adapts_the_model_is_reported():
    from minimind_core import lora

    def wrong(model, rank, targets):
        lora.apply_lora(model, rank=rank, targets=targets)
        return lora.count_lora_parameters(model)
    r = checks.check_lora_param_count(wrong)
    assert not r.passed
    assert "changed the model" in r.message


def test_square_lora_that_forgets_to_freeze_fails():
    def wrong(model, rank):
        apply_square_lora(model, rank)
        model.lm_head.weight.requires_grad_(True)
        return model
    r = checks.check_apply_square_lora(wrong)
    assert not r.passed
    assert "freeze the base model" in r.message


def test_square_lora_on_every_linear_fails():
    def wrong(model, rank):
        model.requires_grad_(False)
        for n, m in list(model.named_modules()):
            if isinstance(m, nn.Linear) and n.startswith("model."):
                parent, _, child = n.rpartition(".")
                setattr(model.get_submodule(parent), child, _Adapted(m, rank))
        return model
    r = checks.check_apply_square_lora(wrong)
    assert not r.passed
    assert "k_proj" in r.message


def test_square_lora_with_nonzero_b_fails():
    def wrong(model, rank):
        apply_square_lora(model, rank)
        for m in model.modules():
            if isinstance(m, _Adapted):
                torch.nn.init.normal_(m.B, std=0.1)
        return model
    r = checks.check_apply_square_lora(wrong)
    assert not r.passed
    assert "B starts at zero" in r.message
