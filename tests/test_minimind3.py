"""MiniMind-3 and the presets: parameter counts, q/k-norm, YaRN, the top-1 MoE, and equality with
transformers' Qwen3 models on the same weights."""
import json

import pytest
import torch
from transformers import Qwen3ForCausalLM, Qwen3MoeForCausalLM

from minimind_core import MiniMindConfig, MiniMindForCausalLM, count_parameters
from minimind_core.config import YARN
from minimind_core.export import hf_family, to_hf, to_qwen3
from minimind_core.kv_cache import KVCache
from minimind_core.model import meta_model, parameter_breakdown, rope_tables
from minimind_core.presets import DEFAULT_PRESET, PRESET_NAMES

# the numbers MiniMind publishes for its released models
EXPECTED_PARAMETERS = {
    "minimind2-small": 25_829_888,
    "minimind2": 104_030_976,
    "minimind2-moe": 145_029_760,
    "minimind-3": 63_912_192,
    "minimind-3-moe": 198_416_640,
}

# a small model of MiniMind-3's shape family: head_dim is not hidden / heads, q/k-norm, GQA 2:1
SMALL3 = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=24,
              intermediate_size=192, vocab_size=300, rms_norm_eps=1e-6, qk_norm=True, max_position_embeddings=256)
SMALL3_MOE = dict(SMALL3, use_moe=True, n_routed_experts=4, num_experts_per_tok=1, n_shared_experts=0,
                  aux_loss_alpha=5e-4, seq_aux=False)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(1234)     # the random token ids and inputs of every test are fixed


def perturbed(config, seed=0):
    """A random model whose norm weights are not all 1 (so a missing or misplaced norm shows)."""
    torch.manual_seed(seed)
    model = MiniMindForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_has_minimind_parameter_count(name):
    assert count_parameters(meta_model(MiniMindConfig.preset(name))) == EXPECTED_PARAMETERS[name]


def test_preset_names_changes_and_errors():
    assert set(PRESET_NAMES) == set(EXPECTED_PARAMETERS) and DEFAULT_PRESET == "minimind2-small"
    assert MiniMindConfig.preset("minimind2-small").to_dict() == MiniMindConfig().to_dict()
    c = MiniMindConfig.preset("MiniMind-3", num_hidden_layers=2)
    assert (c.hidden_size, c.num_hidden_layers, c.head_dim, c.num_key_value_heads, c.intermediate_size,
            c.rms_norm_eps, c.qk_norm, c.tie_word_embeddings, c.vocab_size) == (768, 2, 96, 4, 2432, 1e-6, True,
                                                                                True, 6400)
    moe = MiniMindConfig.preset("minimind-3-moe")
    assert (moe.n_routed_experts, moe.num_experts_per_tok, moe.n_shared_experts, moe.aux_loss_alpha,
            moe.seq_aux) == (4, 1, 0, 5e-4, False)
    with pytest.raises(ValueError, match="unknown model preset 'minimind-4'; expected one of minimind2-small, "
                                         "minimind2, minimind2-moe, minimind-3, minimind-3-moe"):
        MiniMindConfig.preset("minimind-4")


def test_minimind3_state_dict_names_and_shapes():
    sd = meta_model(MiniMindConfig.preset("minimind-3")).state_dict()
    p = "model.layers.7."
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes[p + "self_attn.q_proj.weight"] == (768, 768)
    assert shapes[p + "self_attn.k_proj.weight"] == shapes[p + "self_attn.v_proj.weight"] == (384, 768)
    assert shapes[p + "self_attn.q_norm.weight"] == shapes[p + "self_attn.k_norm.weight"] == (96,)
    assert shapes[p + "mlp.gate_proj.weight"] == (2432, 768) and shapes[p + "mlp.down_proj.weight"] == (768, 2432)
    assert len(sd) == 2 + 1 + 8 * 11          # embed + lm_head (tied names), final norm, 11 tensors a layer
    moe = {k: tuple(v.shape) for k, v in meta_model(MiniMindConfig.preset("minimind-3-moe")).state_dict().items()}
    assert moe[p + "mlp.gate.weight"] == (4, 768) and moe[p + "mlp.experts.3.up_proj.weight"] == (2432, 768)
    assert not any("shared_experts" in k for k in moe)
    b = parameter_breakdown(meta_model(MiniMindConfig.preset("minimind-3")))
    assert b["q/k norms"] == 8 * 2 * 96 and sum(b.values()) == EXPECTED_PARAMETERS["minimind-3"]


def test_qk_norm_makes_attention_blind_to_the_scale_of_q_and_k():
    """q/k-norm sits right after the projections: scaling q_proj and k_proj changes nothing with it
    and a lot without it."""
    x = torch.randint(0, 300, (2, 12))
    for qk_norm in (True, False):
        model = perturbed(MiniMindConfig(**{**SMALL3, "qk_norm": qk_norm}))
        with torch.no_grad():
            before = model(x).logits
            for layer in model.model.layers:
                layer.self_attn.q_proj.weight.mul_(7.0)
                layer.self_attn.k_proj.weight.mul_(3.0)
            after = model(x).logits
        if qk_norm:
            torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
        else:
            assert (after - before).abs().max() > 1e-2


def test_qk_norm_model_decodes_with_the_kv_cache():
    model = perturbed(MiniMindConfig(**SMALL3))
    x = torch.randint(0, 300, (1, 10))
    with torch.no_grad():
        full = model(x).logits
        cache = KVCache(model.config, batch_size=1)
        steps = [model(x[:, :6], cache=cache).logits] + [model(x[:, i:i + 1], cache=cache).logits for i in range(6, 10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", [SMALL3, dict(SMALL3, num_key_value_heads=4, head_dim=16),
                                    dict(SMALL3, inference_rope_scaling=True, max_position_embeddings=32768)],
                         ids=["gqa-head_dim-24", "mha-head_dim-16", "yarn"])
def test_dense_matches_transformers_qwen3(config):
    model = perturbed(MiniMindConfig(**config))
    qwen = to_qwen3(model)
    assert isinstance(qwen, Qwen3ForCausalLM)
    x = torch.randint(0, 300, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, qwen(x).logits, atol=1e-5, rtol=1e-5)
        # padded batch (left padding, as generation pads)
        mask = torch.ones_like(x)
        mask[0, :7] = 0
        ours = model(x, attention_mask=mask).logits[:, 7:]
        theirs = qwen(x, attention_mask=mask).logits[:, 7:]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_minimind3_preset_matches_transformers_qwen3():
    """The real shapes (63.9M parameters): the weights go over with no renaming."""
    model = perturbed(MiniMindConfig.preset("minimind-3"))
    qwen = to_qwen3(model)
    assert hf_family(model.config) == "qwen3" and qwen.config.head_dim == 96
    assert set(qwen.state_dict()) == set(model.state_dict())
    x = torch.randint(0, 6400, (1, 24))
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, qwen(x).logits, atol=1e-4, rtol=1e-4)
        greedy = model.generate(x, max_new_tokens=5, do_sample=False)
        assert torch.equal(greedy, qwen.generate(x, max_new_tokens=5, do_sample=False))


def test_moe_matches_transformers_qwen3_moe():
    for top_k in (1, 2):
        model = perturbed(MiniMindConfig(**{**SMALL3_MOE, "num_experts_per_tok": top_k}))
        qwen = to_hf(model)
        assert isinstance(qwen, Qwen3MoeForCausalLM)
        x = torch.randint(0, 300, (2, 30))
        with torch.no_grad():
            torch.testing.assert_close(model(x).logits, qwen(x).logits, atol=1e-5, rtol=1e-5)


def test_top1_moe_adds_the_chosen_expert_unscaled_and_balances_over_the_batch():
    model = perturbed(MiniMindConfig(**SMALL3_MOE)).train()
    moe = model.model.layers[0].mlp
    x = torch.randn(2, 9, 64)
    out, aux = moe(x)
    flat = x.reshape(-1, 64)
    scores = (flat @ moe.gate.weight.T).softmax(-1)
    choice = scores.argmax(-1)
    expected = torch.stack([moe.experts[int(e)](row) for row, e in zip(flat, choice)])
    torch.testing.assert_close(out.reshape(-1, 64), expected, atol=1e-6, rtol=1e-5)   # weight exactly 1
    load = torch.bincount(choice, minlength=4).float() / len(choice)
    torch.testing.assert_close(aux, 5e-4 * 4 * (load * scores.mean(0)).sum())


def test_yarn_keeps_fast_pairs_and_slows_the_slow_ones():
    cos, sin = rope_tables(96, 32768, 1e6)
    ycos, ysin = rope_tables(96, 32768, 1e6, yarn=YARN)
    angle, yangle = torch.atan2(sin[1], cos[1])[:48], torch.atan2(ysin[1], ycos[1])[:48]
    torch.testing.assert_close(yangle[:5], angle[:5])                  # turn > 32 times in 2048 tokens
    torch.testing.assert_close(yangle[30:], angle[30:] / 16)           # turn less than once
    assert torch.all(yangle[5:30] <= angle[5:30] + 1e-7) and torch.all(yangle[5:30] >= angle[5:30] / 16 - 1e-7)
    short = rope_tables(96, 2048, 1e6, yarn=YARN)      # a table no longer than the original: unchanged
    torch.testing.assert_close(short[0], cos[:2048])
    # switched on in the config, it changes the model's logits
    x = torch.randint(0, 300, (1, 20))
    plain = perturbed(MiniMindConfig(**{**SMALL3, "max_position_embeddings": 4096}))
    yarn = MiniMindForCausalLM(MiniMindConfig(**{**SMALL3, "max_position_embeddings": 4096,
                                                 "inference_rope_scaling": True})).eval()
    yarn.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert (yarn(x).logits - plain(x).logits).abs().max() > 1e-4


def test_minimind3_config_json_loads_as_it_is(tmp_path):
    """MiniMind-3's own config.json (as its MiniMindConfig writes it) names the MoE fields its own
    way and has no q/k-norm switch."""
    written = {"bos_token_id": 1, "dropout": 0.0, "eos_token_id": 2, "flash_attn": True, "head_dim": 96,
               "hidden_act": "silu", "hidden_size": 768, "inference_rope_scaling": False, "intermediate_size": 2432,
               "max_position_embeddings": 32768, "model_type": "minimind", "moe_intermediate_size": 2432,
               "norm_topk_prob": True, "num_attention_heads": 8, "num_experts": 4, "num_experts_per_tok": 1,
               "num_hidden_layers": 8, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_parameters": None,
               "rope_theta": 1000000.0, "router_aux_loss_coef": 0.0005, "tie_word_embeddings": True,
               "use_moe": True, "vocab_size": 6400}
    (tmp_path / "config.json").write_text(json.dumps(written))
    loaded = MiniMindConfig.from_pretrained(tmp_path)
    preset = MiniMindConfig.preset("minimind-3-moe")
    fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
              "qk_norm", "intermediate_size", "rms_norm_eps", "rope_theta", "use_moe", "n_routed_experts",
              "num_experts_per_tok", "n_shared_experts", "aux_loss_alpha", "seq_aux", "norm_topk_prob")
    assert {f: getattr(loaded, f) for f in fields} == {f: getattr(preset, f) for f in fields}
    # our own config.json of a MiniMind-3 model reloads the same, YaRN switch included
    MiniMindConfig.preset("minimind-3", inference_rope_scaling=True).save_pretrained(tmp_path / "ours")
    again = MiniMindConfig.from_pretrained(tmp_path / "ours")
    assert again.qk_norm and again.head_dim == 96 and again.yarn == YARN
    with pytest.raises(ValueError, match="moe_intermediate_size"):
        MiniMindConfig.from_dict({**written, "moe_intermediate_size": 1024})


def test_bad_head_dim_is_refused():
    with pytest.raises(ValueError, match="head_dim must be even"):
        MiniMindConfig(head_dim=7)
    with pytest.raises(ValueError, match="or give head_dim"):
        MiniMindConfig(hidden_size=100, num_attention_heads=8)
    assert MiniMindConfig(hidden_size=100, num_attention_heads=8, num_key_value_heads=4, head_dim=16).head_dim == 16


# ----------------------------------------------------------------------------------------------
# choosing the model of a training run


def test_train_model_flag_replaces_the_profiles_model(capsys):
    from minimind_core.cli import build_parser, main
    from minimind_core.cli.train import train_kwargs
    from minimind_core.train import resolve_config

    args = build_parser().parse_args(["train", "pretrain", "--profile", "full", "--model", "minimind-3"])
    kw = train_kwargs(args)
    assert kw["model"] == "minimind-3"
    cfg = resolve_config("pretrain", "full", **kw)
    assert MiniMindConfig(**cfg.model).to_dict() == MiniMindConfig.preset("minimind-3").to_dict()
    assert resolve_config("pretrain", "full").model == {}        # without --model: the profile's (MiniMind2-Small)
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train", "pretrain", "--model", "minimind-4"])
    assert e.value.code == 2 and "'minimind-3-moe'" in capsys.readouterr().err
    # a stage that continues a trained model keeps that model's shape
    assert main(["train", "sft", "--profile", "smoke", "--model", "minimind-3"]) == 2
    assert "--model shapes a new model, but this sft run starts from" in capsys.readouterr().err


def test_a_minimind3_moe_shaped_model_trains(tmp_path):
    """A smoke run of a small model of MiniMind-3-MoE's family, chosen with model=: the checkpoint
    is that model, and the top-1 router's balance loss is logged."""
    from test_train import make_corpus

    from minimind_core.checkpoint import load_model
    from minimind_core.train import TrainError, train

    corpus = make_corpus(tmp_path / "corpus")
    small = {"preset": "minimind-3-moe", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 400}
    res = train("pretrain", profile="smoke", model=small, data=corpus["pretrain"], tokenizer=corpus["tokenizer"],
                out=tmp_path / "run", cache_dir=tmp_path / "cache", seq_len=64, max_steps=6, log_every=3,
                threads=1, progress=False)
    config = load_model(res.run_dir).config
    assert (config.qk_norm, config.head_dim, config.num_experts_per_tok, config.n_shared_experts) == (True, 16, 1, 0)
    losses = [r["loss"] for r in res.metrics]
    assert losses[-1] < losses[0]
    # a balanced top-1-of-4 router scores 5e-4 * 4 * sum_e(load_e * mean score_e) = 5e-4 per layer
    assert all(2 * 2e-4 < r["aux_loss"] < 2 * 2e-3 for r in res.metrics), res.metrics
    from minimind_core.tokenizer import load_tokenizer

    n_tokens = len(load_tokenizer(corpus["tokenizer"]))
    too_small = rf"tokenizer has {n_tokens} tokens but the new model \(the profile's, or --model's\) has vocab_size 300"
    with pytest.raises(TrainError, match=too_small):
        train("pretrain", profile="smoke", model={**small, "vocab_size": 300}, data=corpus["pretrain"],
              tokenizer=corpus["tokenizer"], out=tmp_path / "run2", cache_dir=tmp_path / "cache", seq_len=64,
              max_steps=1, threads=1, progress=False)
