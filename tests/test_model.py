
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from minimind_core import MiniMindConfig, MiniMindForCausalLM, count_parameters
from minimind_core.config import swiglu_hidden_size
from minimind_core.export import to_llama
from minimind_core.model import apply_rope, repeat_kv, rope_tables

from conftest import small_config


@pytest.mark.parametrize("kwargs, expected", [
    ({}, 25_829_888),                                            # MiniMind2-Small
    (dict(hidden_size=768, num_hidden_layers=16), 104_030_976),   # MiniMind2
    (dict(hidden_size=640, use_moe=True), 145_029_760),           # MiniMind2-MoE
])
def test_parameter_counts(kwargs, expected):
    with torch.device("meta"):
        model = MiniMindForCausalLM(MiniMindConfig(**kwargs))
    assert count_parameters(model) == expected


def test_untied_count_and_ffn_width():
    with torch.device("meta"):
        untied = MiniMindForCausalLM(MiniMindConfig(tie_word_embeddings=False))
    assert count_parameters(untied) == 29_106_688
    assert [swiglu_hidden_size(h) for h in (512, 640, 768)] == [1408, 1728, 2048]


def test_state_dict_names_and_shapes():
    with torch.device("meta"):
        model = MiniMindForCausalLM(MiniMindConfig())
    sd = model.state_dict()
    expected = {"model.embed_tokens.weight": (6400, 512), "model.norm.weight": (512,),
                "lm_head.weight": (6400, 512)}
    for i in range(8):
        p = f"model.layers.{i}."
        expected.update({
            p + "self_attn.q_proj.weight": (512, 512), p + "self_attn.k_proj.weight": (128, 512),
            p + "self_attn.v_proj.weight": (128, 512), p + "self_attn.o_proj.weight": (512, 512),
            p + "mlp.gate_proj.weight": (1408, 512), p + "mlp.up_proj.weight": (1408, 512),
            p + "mlp.down_proj.weight": (512, 1408),
            p + "input_layernorm.weight": (512,), p + "post_attention_layernorm.weight": (512,),
        })
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert not any("rope" in k for k in sd)  # RoPE tables are non-persistent buffers


def test_moe_names_and_aux_loss():
    torch.manual_seed(0)
    model = MiniMindForCausalLM(small_config(use_moe=True, n_routed_experts=4, n_shared_experts=1))
    names = set(model.state_dict())
    assert "model.layers.0.mlp.gate.weight" in names
    assert "model.layers.0.mlp.experts.3.down_proj.weight" in names
    assert "model.layers.0.mlp.shared_experts.0.up_proj.weight" in names
    x = torch.randint(0, 300, (2, 16))
    model.train()
    out = model(x, labels=x)
    assert out.aux_loss.item() > 0
    out.loss.backward()
    assert model.model.layers[0].mlp.gate.weight.grad is not None
    model.eval()
    assert model(x).aux_loss.item() == 0


def test_initial_loss_is_uniform():
    torch.manual_seed(0)
    model = MiniMindForCausalLM(small_config(vocab_size=6400))
    x = torch.randint(0, 6400, (4, 64))
    loss = model(x, labels=x).loss.item()
    assert abs(loss - torch.log(torch.tensor(6400.0)).item()) < 0.1


def test_labels_are_shifted_and_ignore_index(tiny_model):
    x = torch.randint(0, 300, (2, 12))
    labels = x.clone()
    labels[:, :6] = -100
    logits = tiny_model(x).logits
    expected = torch.nn.functional.cross_entropy(logits[:, 5:-1].reshape(-1, 300), x[:, 6:].reshape(-1))
    torch.testing.assert_close(tiny_model(x, labels=labels).loss, expected)


@pytest.mark.parametrize("cfg", [small_config(), MiniMindConfig()], ids=["small", "minimind2-small"])
def test_same_logits_as_llama(cfg):
    torch.manual_seed(0)
    model = MiniMindForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    llama = LlamaForCausalLM(__import__("minimind_core.export", fromlist=["x"]).llama_config(cfg)).eval()
    missing, unexpected = llama.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and not [k for k in missing if "rotary" not in k]
    x = torch.randint(0, cfg.vocab_size, (2, 48))
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, llama(x).logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model(x).logits, to_llama(model)(x).logits, atol=1e-4, rtol=1e-4)


def test_save_pretrained_round_trip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MiniMindForCausalLM)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    x = torch.randint(0, 300, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, tiny_model(x).logits, atol=0, rtol=0)


def test_minimind_fp16_pth_loads(tiny_model, tmp_path):
    """MiniMind's checkpoints are fp16 state dicts saved with torch.save, holding both tied names."""
    sd = {k: v.half() for k, v in tiny_model.state_dict().items()}
    assert "lm_head.weight" in sd and "model.embed_tokens.weight" in sd
    torch.save(sd, tmp_path / "full_sft_64.pth")
    fresh = MiniMindForCausalLM(tiny_model.config).eval()
    fresh.load_state_dict(torch.load(tmp_path / "full_sft_64.pth", weights_only=True))
    x = torch.randint(0, 300, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x).logits, tiny_model(x).logits, atol=0.02, rtol=0.02)


def test_kv_cache_matches_full_forward(tiny_model):
    x = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        full = tiny_model(x).logits
        out = tiny_model(x[:, :6], use_cache=True)
        k, v = out.past_key_values[0]
        assert k.shape == (2, 6, 2, 16) and v.shape == (2, 6, 2, 16)  # [batch, past, kv_heads, head_dim]
        logits = [out.logits]
        cache = out.past_key_values
        for t in range(6, 10):   # one token at a time
            step = tiny_model(x[:, t:t + 1], past_key_values=cache, use_cache=True)
            cache = step.past_key_values
            logits.append(step.logits)
        torch.testing.assert_close(torch.cat(logits, 1), full, atol=1e-5, rtol=1e-5)
        # a chunk of several new tokens after a cache uses the causal mask with an offset
        chunk = tiny_model(x[:, 6:], past_key_values=out.past_key_values, use_cache=True)
        torch.testing.assert_close(chunk.logits, full[:, 6:], atol=1e-5, rtol=1e-5)


def test_padding_mask_left_padded_batch(tiny_model):
    a = torch.randint(3, 300, (1, 7))
    b = torch.randint(3, 300, (1, 10))
    batch = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), a], 1), b])
    mask = torch.ones_like(batch)
    mask[0, :3] = 0
    with torch.no_grad():
        out = tiny_model(batch, attention_mask=mask).logits
        torch.testing.assert_close(out[0, 3:], tiny_model(a).logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1], tiny_model(b).logits[0], atol=1e-5, rtol=1e-5)
        assert torch.isfinite(out).all()


def test_rope_relative_position_property():
    cos, sin = rope_tables(16, 64, 1e6)
    torch.manual_seed(0)
    q = torch.randn(1, 1, 1, 16)
    k = torch.randn(1, 1, 1, 16)

    def score(m, n):
        qr, _ = apply_rope(q, q, cos[m:m + 1], sin[m:m + 1])
        kr, _ = apply_rope(k, k, cos[n:n + 1], sin[n:n + 1])
        return (qr * kr).sum()

    torch.testing.assert_close(score(5, 2), score(40, 37), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(score(5, 2), score(5, 4))


def test_repeat_kv_groups_heads():
    x = torch.arange(2 * 3 * 2 * 4).float().view(2, 3, 2, 4)
    r = repeat_kv(x, 4)
    assert r.shape == (2, 3, 8, 4)
    for h in range(8):
        torch.testing.assert_close(r[:, :, h], x[:, :, h // 4])


def test_config_rejects_bad_head_counts():
    with pytest.raises(ValueError, match="num_key_value_heads"):
        MiniMindConfig(num_attention_heads=8, num_key_value_heads=3)
    with pytest.raises(ValueError, match="divisible"):
        MiniMindConfig(hidden_size=500, num_attention_heads=8)


def test_hf_generate_matches_manual_greedy(tiny_model):
    x = torch.randint(3, 300, (1, 8))
    hf = tiny_model.generate(x, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    ids = x
    with torch.no_grad():
        for _ in range(12):
            ids = torch.cat([ids, tiny_model(ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(hf, ids)


def test_too_long_sequence_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="max_position_embeddings"):
        tiny_model(torch.zeros(1, 300, dtype=torch.long))
