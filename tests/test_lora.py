import pytest
import torch
import torch.nn as nn

from minimind_core import MiniMindConfig, MiniMindForCausalLM
from minimind_core.lora import (
    LoRALinear,
    adapter_config,
    apply_lora,
    count_lora_parameters,
    load_lora,
    lora_layers,
    lora_parameters,
    lora_state_dict,
    merge_lora,
    remove_lora,
    save_lora,
    unmerge_lora,
)

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             vocab_size=97, max_position_embeddings=64)


def small_model(seed=0, **kw):
    torch.manual_seed(seed)
    return MiniMindForCausalLM(MiniMindConfig(**{**SMALL, **kw})).eval()


def _randomise_b(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.05)


def _ids(seed=0, B=2, T=9, V=97):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def test_lora_linear_formula_and_merge():
    torch.manual_seed(0)
    base = nn.Linear(6, 5, bias=True)
    layer = LoRALinear(base, rank=3, alpha=6.0, init="kaiming")
    assert layer.scale == 2.0
    x = torch.randn(4, 6)
    torch.testing.assert_close(layer(x), base(x))          # B = 0
    with torch.no_grad():
        layer.lora_B.normal_()
    expected = base(x) + (x @ layer.lora_A.T @ layer.lora_B.T) * 2.0
    torch.testing.assert_close(layer(x), expected)
    w0 = layer.weight.detach().clone()
    layer.merge()
    layer.merge()                                         # idempotent: not added twice
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer.weight.detach(), w0 + layer.lora_B.detach() @ layer.lora_A.detach() * 2.0)
    layer.unmerge()
    torch.testing.assert_close(layer.weight.detach(), w0)
    torch.testing.assert_close(layer(x), expected)
    with pytest.raises(ValueError):
        LoRALinear(base, rank=0)
    with pytest.raises(ValueError):
        LoRALinear(base, init="xavier")


def test_gaussian_init_std():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(512, 512, bias=False), rank=8)
    assert layer.lora_A.std().item() == pytest.approx(0.02, rel=0.05)
    assert layer.lora_B.abs().sum() == 0


def test_b_zero_output_equals_base_and_only_adapters_train():
    model = small_model()
    ids = _ids()
    with torch.no_grad():
        before = model(ids).logits
    apply_lora(model, rank=4, targets="all")
    with torch.no_grad():
        after = model(ids).logits
    torch.testing.assert_close(after, before)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert len(trainable) == 2 * 7 * 2          # 7 projections x 2 layers, A and B each
    # the adapters do get gradients, the base weights don't
    model.train()
    out = model(ids, labels=ids)
    _randomise_b(model)
    out = model(ids, labels=ids)
    out.loss.backward()
    assert all(p.grad is not None for p in lora_parameters(model))
    assert model.model.layers[0].self_attn.q_proj.weight.grad is None
    # base weight names unchanged: a full checkpoint still loads into the adapted model
    keys = set(model.state_dict())
    assert "model.layers.0.self_attn.q_proj.weight" in keys
    assert "model.layers.0.self_attn.q_proj.lora_A" in keys
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model)


def test_merged_equals_unmerged_and_merge_gives_plain_model(tmp_path):
    model = small_model()
    apply_lora(model, rank=4, alpha=8, targets="all")
    _randomise_b(model)
    ids = _ids(1)
    with torch.no_grad():
        unmerged = model(ids).logits
        merge_lora(model, keep_adapters=True)
        torch.testing.assert_close(model(ids).logits, unmerged, rtol=1e-4, atol=1e-5)
        unmerge_lora(model)
        torch.testing.assert_close(model(ids).logits, unmerged, rtol=1e-4, atol=1e-5)
        merge_lora(model)
        assert not lora_layers(model)
        assert all(type(m) is nn.Linear for n, m in model.named_modules() if n.endswith("proj"))
        assert all(p.requires_grad for p in model.parameters())
        torch.testing.assert_close(model(ids).logits, unmerged, rtol=1e-4, atol=1e-5)
    model.save_pretrained(tmp_path / "merged")
    again = MiniMindForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, unmerged, rtol=1e-4, atol=1e-5)


def test_remove_lora_restores_base():
    model = small_model()
    ids = _ids(2)
    with torch.no_grad():
        base = model(ids).logits
    apply_lora(model, rank=2, targets=["q_proj", "v_proj"])
    assert set(n.rsplit(".", 1)[1] for n in lora_layers(model)) == {"q_proj", "v_proj"}
    _randomise_b(model)
    merge_lora(model, keep_adapters=True)
    remove_lora(model)
    assert not lora_layers(model)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, base, rtol=1e-4, atol=1e-5)


def test_minimind_variant_parameter_count_on_minimind2_small():
    model = MiniMindForCausalLM(MiniMindConfig())          # the real 25.83M configuration
    apply_lora(model, rank=8, targets="minimind")
    names = sorted(lora_layers(model))
    assert len(names) == 16 and all(n.endswith(("q_proj", "o_proj")) for n in names)
    assert count_lora_parameters(model) == 131_072
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 131_072
    assert adapter_config(model) == {"rank": 8, "alpha": 8.0, "targets": "minimind", "init": "gaussian"}
    assert all(l.scale == 1.0 for l in lora_layers(model).values())


def test_targets_errors():
    model = small_model()
    with pytest.raises(ValueError, match="matches no"):
        apply_lora(model, targets=["nothing_here"])
    with pytest.raises(ValueError, match="tied"):
        apply_lora(model, targets=["lm_head"])
    with pytest.raises(ValueError, match="targets must be"):
        apply_lora(model, targets="some")
    assert not lora_layers(model)


def test_save_and_load_round_trip(tmp_path):
    model = small_model()
    apply_lora(model, rank=4, alpha=16, targets="all")
    _randomise_b(model, seed=3)
    ids = _ids(3)
    with torch.no_grad():
        want = model(ids).logits
    path = save_lora(model, tmp_path / "adapter.safetensors")
    sd = lora_state_dict(model)
    assert set(sd) == {f"{n}.{p}" for n in lora_layers(model) for p in ("lora_A", "lora_B")}

    fresh = small_model()                      # same base weights, no adapters: load creates them
    load_lora(fresh, path)
    assert adapter_config(fresh)["alpha"] == 16.0
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, want)

    other = small_model()
    apply_lora(other, rank=4, alpha=16, targets="all")  # adapters exist already: weights are copied
    load_lora(other, sd)
    with torch.no_grad():
        torch.testing.assert_close(other(ids).logits, want)

    wrong_rank = small_model()
    apply_lora(wrong_rank, rank=2, targets="all")
    with pytest.raises(ValueError, match="shape"):
        load_lora(wrong_rank, path)
    fewer = small_model()
    apply_lora(fewer, rank=4, targets="all")
    partial = {k: v for k, v in sd.items() if ".layers.0." in k}
    with pytest.raises(ValueError, match="no weights for the model's LoRA layer"):
        load_lora(fewer, partial)


def test_load_minimind_pth_adapter(tmp_path):
    """A MiniMind adapter file: keys '<module>.lora.A.weight' [r, in] and '.lora.B.weight' [out, r]."""
    model = small_model()
    h, r = 64, 8
    g = torch.Generator().manual_seed(5)
    theirs = {}
    for i in range(2):
        for proj in ("q_proj", "o_proj"):
            theirs[f"model.layers.{i}.self_attn.{proj}.lora.A.weight"] = torch.randn(r, h, generator=g) * 0.02
            theirs[f"model.layers.{i}.self_attn.{proj}.lora.B.weight"] = torch.randn(h, r, generator=g) * 0.02
    path = tmp_path / "lora_identity_64.pth"
    torch.save({("module." + k if "layers.1" in k else k): v.half() for k, v in theirs.items()}, path)

    ids = _ids(4)
    with torch.no_grad():
        x = model(ids).logits
    # expected: MiniMind's forward, base(x) + B(A(x)), computed by hand on the base model
    ref = small_model()
    hooks = []
    for name, m in ref.named_modules():
        if f"{name}.lora.A.weight" in theirs:
            A = theirs[f"{name}.lora.A.weight"].half().float()
            B = theirs[f"{name}.lora.B.weight"].half().float()
            hooks.append(m.register_forward_hook(lambda mod, inp, out, A=A, B=B: out + inp[0] @ A.T @ B.T))
    with torch.no_grad():
        expected = ref(ids).logits
    for hk in hooks:
        hk.remove()

    load_lora(model, path)                    # the model has no adapters yet: created from the file
    assert sorted(lora_layers(model)) == sorted({k.rsplit(".lora.", 1)[0] for k in theirs})
    assert all(l.rank == 8 and l.scale == 1.0 for l in lora_layers(model).values())
    with torch.no_grad():
        got = model(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, x)

    # MiniMind's variant built first, then loaded: same result
    m2 = small_model()
    apply_lora(m2, rank=8, targets="minimind")
    load_lora(m2, path)
    with torch.no_grad():
        torch.testing.assert_close(m2(ids).logits, expected, rtol=1e-4, atol=1e-5)

    bad = dict(theirs)
    bad["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(h, h)
    with pytest.raises(ValueError, match="not a LoRA adapter weight"):
        load_lora(small_model(), bad)
    del bad["model.layers.0.self_attn.q_proj.weight"]
    del bad["model.layers.0.self_attn.q_proj.lora.B.weight"]
    with pytest.raises(ValueError, match="A and B come in pairs"):
        load_lora(small_model(), bad)
