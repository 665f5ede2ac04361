"""The lean decoding step: the model's logits bit for bit, and the paths that must not take it."""
import pytest
import torch

from conftest import small_config
from minimind_core import MiniMindForCausalLM
from minimind_core.decode import DecodeStep, supports
from minimind_core.generate import generate
from minimind_core.kv_cache import KVCache


def perturbed(**overrides):
    torch.manual_seed(0)
    model = MiniMindForCausalLM(small_config(**overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("overrides", [{}, dict(num_key_value_heads=4), dict(num_key_value_heads=1, num_hidden_layers=3),
                                       dict(qk_norm=True, head_dim=24), dict(qk_norm=True, inference_rope_scaling=True,
                                                                             max_position_embeddings=4096)])
def test_step_logits_are_the_models_bit_for_bit(overrides):
    model = perturbed(**overrides)
    ids = torch.randint(3, 300, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0                                     # a left-padded row
    step = DecodeStep(model)
    with torch.inference_mode():
        for attention_mask in (None, mask):
            a = KVCache(model.config, 3, max_len=40, dtype=torch.float32, static=True)
            b = KVCache(model.config, 3, max_len=40, dtype=torch.float32, static=True)
            model(ids, attention_mask=attention_mask, cache=a)
            model(ids, attention_mask=attention_mask, cache=b)
            full = attention_mask
            for i in range(10):
                tok = torch.randint(3, 300, (3, 1), generator=torch.Generator().manual_seed(i))
                if full is not None:
                    full = torch.cat([full, torch.ones(3, 1, dtype=full.dtype)], 1)
                want = model(tok, attention_mask=full, cache=a).logits[:, -1]
                got = step(tok, b, full)
                assert torch.equal(got, want), i
                assert a.length == b.length
                assert torch.equal(a.keys[:, :, :a.length], b.keys[:, :, :b.length])


def test_a_bfloat16_model_steps_through_its_own_functions():
    model = perturbed(qk_norm=True).to(torch.bfloat16)
    ids = torch.randint(3, 300, (2, 8), generator=torch.Generator().manual_seed(3))
    step = DecodeStep(model)
    assert not step.fp32
    with torch.inference_mode():
        a = KVCache(model.config, 2, max_len=20, dtype=torch.bfloat16, static=True)
        b = KVCache(model.config, 2, max_len=20, dtype=torch.bfloat16, static=True)
        model(ids, cache=a)
        model(ids, cache=b)
        tok = ids[:, -1:]
        assert torch.equal(step(tok, b), model(tok, cache=a).logits[:, -1])


def test_generate_takes_the_same_tokens_either_way(monkeypatch):
    model = perturbed()
    ids = torch.randint(3, 300, (2, 9), generator=torch.Generator().manual_seed(2))
    fast = generate(model, ids, 24, do_sample=False, eos_token_id=None)
    monkeypatch.setattr("minimind_core.decode.supports", lambda m: False)
    slow = generate(model, ids, 24, do_sample=False, eos_token_id=None)
    assert torch.equal(fast, slow)


def test_models_the_step_does_not_know_use_the_forward():
    from minimind_core.lora import apply_lora

    assert supports(perturbed())
    assert not supports(perturbed(use_moe=True))
    adapted = perturbed()
    apply_lora(adapted, rank=2)
    assert not supports(adapted)
    hooked = perturbed()
    hooked.model.layers[0].self_attn.register_forward_hook(lambda *a: None)
    assert not supports(hooked)
    extra = perturbed()
    extra.model.layers[1].self_attn.q_scale = torch.nn.Parameter(torch.ones(16))   # a parameter it does not know
    assert not supports(extra)
    with pytest.raises(ValueError, match="dense MiniMind layers only"):
        DecodeStep(extra)
