
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from minimind_core import MiniMindConfig, MiniMindForCausalLM, count_parameters
from minimind_core.config import swiglu_hidden_size
from minimind_core.export import to_llama
from minimind_core.kv_cache import KVCache
from minimind_core.model import (COMPONENT_ORDER, apply_rope, component_of, embedding_parameters, meta_model,
                                 parameter_breakdown, repeat_kv, rope_tables)

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
    # the model's balance loss is the sum of what each MoE layer returned for this forward
    hidden = model.model.embed_tokens(x)
    per_layer = []
    for layer in model.model.layers:
        hidden, _, layer_aux = layer(hidden, (model.model.rope_cos[:16], model.model.rope_sin[:16]))
        per_layer.append(layer_aux)
    torch.testing.assert_close(out.aux_loss, sum(per_layer))
    assert not hasattr(model.model.layers[0].mlp, "aux_loss")      # nothing kept on the module
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
        cache = out.cache
        assert isinstance(cache, KVCache) and out.past_key_values is cache and cache.length == 6
        k, v = cache[0]
        assert k.shape == (2, 6, 2, 16) and v.shape == (2, 6, 2, 16)  # [batch, past, kv_heads, head_dim]
        logits = [out.logits]
        for t in range(6, 10):   # one token at a time
            step = tiny_model(x[:, t:t + 1], cache=cache, use_cache=True)
            assert step.cache is cache and cache.length == t + 1
            logits.append(step.logits)
        torch.testing.assert_close(torch.cat(logits, 1), full, atol=1e-5, rtol=1e-5)
        # a chunk of several new tokens after a cache uses the causal mask with an offset
        cache.crop(6)
        chunk = tiny_model(x[:, 6:], past_key_values=cache, use_cache=True)
        torch.testing.assert_close(chunk.logits, full[:, 6:], atol=1e-5, rtol=1e-5)


def test_cached_keys_are_rotated_and_not_repeated(tiny_model):
    """The cache holds each layer's keys after RoPE and before the KV heads are repeated."""
    x = torch.randint(0, 300, (1, 5))
    seen = {}
    attn = tiny_model.model.layers[1].self_attn
    handle = tiny_model.model.layers[1].input_layernorm.register_forward_hook(
        lambda m, a, out: seen.__setitem__("h", out))
    with torch.no_grad():
        cache = tiny_model(x, use_cache=True).cache
    handle.remove()
    h = seen["h"]
    k = attn.k_proj(h).view(1, 5, attn.n_kv_heads, attn.head_dim)
    v = attn.v_proj(h).view(1, 5, attn.n_kv_heads, attn.head_dim)
    cos, sin = tiny_model.model.rope_cos[:5], tiny_model.model.rope_sin[:5]
    _, k_rot = apply_rope(k, k, cos, sin)
    torch.testing.assert_close(cache[1][0], k_rot)
    torch.testing.assert_close(cache[1][1], v)


def test_a_preallocated_static_cache_gives_the_same_logits(tiny_model):
    x = torch.randint(0, 300, (2, 12))
    cache = KVCache(tiny_model.config, batch_size=2, max_len=12, dtype=torch.float32, static=True)
    buffer = cache.keys
    with torch.no_grad():
        full = tiny_model(x).logits
        got = [tiny_model(x[:, :7], cache=cache).logits]
        got += [tiny_model(x[:, t:t + 1], cache=cache).logits for t in range(7, 12)]
        assert cache.keys is buffer and cache.length == 12          # written in place, never moved
        torch.testing.assert_close(torch.cat(got, 1), full, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="KVCache is full: 13 positions needed, max_len is 12"):
            tiny_model(x[:, :1], cache=cache)


def test_transformers_cache_is_adapted_at_the_edge(tiny_model):
    from transformers import DynamicCache

    x = torch.randint(0, 300, (2, 9))
    hf_cache = DynamicCache(config=tiny_model.config)
    with torch.no_grad():
        full = tiny_model(x).logits
        first = tiny_model(x[:, :5], cache=hf_cache, use_cache=True)
        assert first.cache is hf_cache and hf_cache.get_seq_length() == 5
        rest = tiny_model(x[:, 5:], cache=hf_cache, use_cache=True)
    assert hf_cache.get_seq_length() == 9
    torch.testing.assert_close(torch.cat([first.logits, rest.logits], 1), full, atol=1e-5, rtol=1e-5)


def test_old_tuple_caches_are_a_clear_error(tiny_model):
    x = torch.randint(0, 300, (1, 4))
    pairs = [(torch.zeros(1, 2, 2, 16), torch.zeros(1, 2, 2, 16))] * 2
    with pytest.raises(TypeError, match="cache must be a minimind_core KVCache or a transformers Cache, got list"):
        tiny_model(x, past_key_values=pairs)


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


def test_attention_weights_from_the_model(tiny_model):
    """output_attentions=True: one [batch, heads, q, k] tensor per layer, equal to softmax(q k^T / sqrt(d))
    recomputed here from the layer's own projections, rows summing to 1; the output does not change."""
    x = torch.randint(0, 300, (2, 9))
    seen = {}
    handle = tiny_model.model.layers[1].input_layernorm.register_forward_hook(
        lambda m, a, out: seen.__setitem__("h", out))
    with torch.no_grad():
        plain = tiny_model(x)
        out = tiny_model(x, output_attentions=True)
    handle.remove()
    assert plain.attentions is None
    assert len(out.attentions) == 2 and all(w.shape == (2, 4, 9, 9) for w in out.attentions)
    torch.testing.assert_close(out.logits, plain.logits, atol=1e-5, rtol=1e-5)
    attn, h = tiny_model.model.layers[1].self_attn, seen["h"]
    q = attn.q_proj(h).view(2, 9, 4, 16)
    k = attn.k_proj(h).view(2, 9, 2, 16)
    q, k = apply_rope(q, k, tiny_model.model.rope_cos[:9], tiny_model.model.rope_sin[:9])
    q, k = q.transpose(1, 2), repeat_kv(k, 2).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) / 4.0
    scores = scores.masked_fill(torch.ones(9, 9, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(out.attentions[1], scores.softmax(-1), atol=1e-6, rtol=1e-5)
    for w in out.attentions:
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 9))
        assert bool((w.triu(diagonal=1) == 0).all()), "a query attends to a later key"


def test_attention_weights_with_a_cache_and_padding(tiny_model):
    x = torch.randint(3, 300, (1, 8))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        full = tiny_model(x, attention_mask=mask, output_attentions=True).attentions
        cache = tiny_model(x[:, :6], attention_mask=mask[:, :6], use_cache=True).cache
        step = tiny_model(x[:, 6:], attention_mask=mask, cache=cache, output_attentions=True).attentions
    assert step[0].shape == (1, 4, 2, 8)                 # the new queries against every cached key
    for w_full, w_step in zip(full, step):
        torch.testing.assert_close(w_step, w_full[:, :, 6:], atol=1e-5, rtol=1e-5)
    assert float(full[0][0, :, 2:, :2].abs().max()) == 0.0    # padding keys get no attention


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


def test_config_ignores_minimind_flash_attn():
    """MiniMind's config.json files carry flash_attn; it is accepted, and not kept or saved."""
    cfg = MiniMindConfig(flash_attn=False, hidden_size=64, num_attention_heads=4)
    assert not hasattr(cfg, "flash_attn") and "flash_attn" not in cfg.to_dict()


def test_importing_the_model_registers_it_with_transformers():
    from transformers import AutoConfig

    assert isinstance(AutoConfig.for_model("minimind"), MiniMindConfig)


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


# ----------------------------------------------------------------------------------------------
# where the parameters sit


def test_minimind2_small_breakdown_matches_the_spec():
    model = meta_model(MiniMindConfig())
    assert model.lm_head.weight.device.type == "meta"
    b = parameter_breakdown(model)
    assert sum(b.values()) == count_parameters(model) == 25_829_888
    assert b["embedding (tied with lm_head)"] == 6400 * 512
    assert b["attention q"] == b["attention o"] == 8 * 512 * 512
    assert b["attention k"] == b["attention v"] == 8 * 512 * 128
    assert b["MLP gate"] == b["MLP up"] == b["MLP down"] == 8 * 512 * 1408
    assert b["norms"] == 17 * 512
    assert list(b) == [c for c in COMPONENT_ORDER if c in b]


def test_untied_and_moe_breakdowns():
    untied = meta_model(MiniMindConfig(tie_word_embeddings=False))
    b = parameter_breakdown(untied)
    assert b["embedding"] == b["lm_head"] == 6400 * 512
    assert sum(b.values()) == 29_106_688
    moe = parameter_breakdown(meta_model(MiniMindConfig(hidden_size=640, use_moe=True)))
    assert sum(moe.values()) == 145_029_760
    assert moe["MoE router"] == 8 * 4 * 640
    assert moe["MLP gate"] == 8 * 5 * 640 * 1728          # 4 routed + 1 shared expert


def test_component_of_rejects_unknown_names():
    assert component_of("model.layers.3.self_attn.k_proj.weight") == "attention k"
    assert component_of("model.layers.0.mlp.shared_experts.0.up_proj.weight") == "MLP up"
    with pytest.raises(ValueError, match="rotary.weight"):
        component_of("model.rotary.weight")


def test_embedding_parameters():
    assert embedding_parameters(6400, 512, tied=True) == 3_276_800
    assert embedding_parameters(6400, 512, tied=False) == 6_553_600
    for tied in (True, False):
        cfg = small_config(tie_word_embeddings=tied)
        m = meta_model(cfg)
        emb = sum(v for k, v in parameter_breakdown(m).items() if k.startswith(("embedding", "lm_head")))
        assert emb == embedding_parameters(cfg.vocab_size, cfg.hidden_size, tied)
