"""Lesson 02 checks: pass on the answers, 'not done yet' on the stubs, a readable message on wrong ones."""
import torch.nn.functional as F

from minimind_core.checks import lesson02 as checks
from check_helpers import stub, expect_pass as _passes, expect_fail as _fails


# ---- reference answers, written independently of the library ---------------------------------

def embedding_lookup(ids, weight):
    return F.one_hot(ids, weight.shape[0]).to(weight.dtype) @ weight


def embedding_parameters(vocab_size, hidden_size, tied=True):
    return vocab_size * hidden_size if tied else 2 * vocab_size * hidden_size


def nearest_neighbours(weight, token_id, k):
    unit = weight / weight.norm(dim=-1, keepdim=True)
    sims = unit @ unit[token_id]
    sims[token_id] = -2.0
    top = sims.topk(k)
    return top.indices, top.values


def count_minimind_parameters(cfg):
    h, layers, v = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    head_dim = h // cfg.num_attention_heads
    kv = cfg.num_key_value_heads * head_dim
    attn = h * h + 2 * h * kv + h * h
    ffn = 3 * h * cfg.intermediate_size
    if cfg.use_moe:
        ffn = ffn * (cfg.n_routed_experts + cfg.n_shared_experts) + cfg.n_routed_experts * h
    per_layer = attn + ffn + 2 * h
    emb = v * h * (1 if cfg.tie_word_embeddings else 2)
    return emb + layers * per_layer + h


def test_answers_pass():
    _passes(checks.check_embedding_lookup(embedding_lookup))
    _passes(checks.check_embedding_lookup(lambda ids, w: w[ids]))        # indexing is the same lookup
    r = checks.check_embedding_parameters(embedding_parameters)
    _passes(r)
    assert "3,276,800" in r.message
    _passes(checks.check_nearest_neighbours(nearest_neighbours))
    _passes(checks.check_count_parameters(count_minimind_parameters))


def test_stubs_are_not_done_yet():
    for fn in (checks.check_embedding_lookup, checks.check_embedding_parameters, checks.check_nearest_neighbours,
               checks.check_count_parameters):
        r = fn(stub)
        assert not r.passed and r.message.startswith("not done yet"), str(r)


def test_embedding_lookup_wrong_answers():
    _fails(checks.check_embedding_lookup(lambda ids, w: F.one_hot(ids).to(w.dtype) @ w), "num_classes")
    _fails(checks.check_embedding_lookup(lambda ids, w: F.one_hot(ids, w.shape[0]) @ w), ".to(weight.dtype)")
    _fails(checks.check_embedding_lookup(lambda ids, w: F.one_hot(ids, w.shape[0]).float()), "one-hot matrix")
    _fails(checks.check_embedding_lookup(lambda ids, w: w[ids.clamp(min=1) - 1]), "values differ")


def test_embedding_parameters_wrong_answers():
    _fails(checks.check_embedding_parameters(lambda v, h, tied: 2 * v * h), "ONE shared matrix")
    _fails(checks.check_embedding_parameters(lambda v, h, tied: v * h), "expected 6,553,600, got 3,276,800", "untied means two")
    _fails(checks.check_embedding_parameters(lambda v, h, tied: float(embedding_parameters(v, h, tied))), "float")


def test_nearest_neighbours_wrong_answers():
    def dot(weight, token_id, k):
        s = weight @ weight[token_id]
        s[token_id] = -float("inf")
        top = s.topk(k)
        return top.indices, top.values

    _fails(checks.check_nearest_neighbours(dot), "dot product")

    def with_self(weight, token_id, k):
        unit = weight / weight.norm(dim=-1, keepdim=True)
        top = (unit @ unit[token_id]).topk(k)
        return top.indices, top.values

    _fails(checks.check_nearest_neighbours(with_self), "leave it out")

    def ascending(weight, token_id, k):
        ids, sims = nearest_neighbours(weight, token_id, k)
        return ids.flip(0), sims.flip(0)

    _fails(checks.check_nearest_neighbours(ascending), "ids of nearest_neighbours")
    _fails(checks.check_nearest_neighbours(lambda w, t, k: nearest_neighbours(w, t, k)[0]), "expected a pair")


def test_count_parameters_wrong_answers():
    _fails(checks.check_count_parameters(lambda c: count_minimind_parameters(c) - c.hidden_size),
           "MiniMind2-Small", "final norm")

    def no_gqa(c):
        h = c.hidden_size
        kv = c.num_key_value_heads * (h // c.num_attention_heads)
        return count_minimind_parameters(c) + 2 * c.num_hidden_layers * (h * h - h * kv)

    _fails(checks.check_count_parameters(no_gqa), "grouped-query attention")

    def always_tied(c):
        return count_minimind_parameters(c) - (0 if c.tie_word_embeddings else c.vocab_size * c.hidden_size)

    _fails(checks.check_count_parameters(always_tied), "MiniMind2-Small untied", "second vocab x hidden matrix")

    def no_router(c):
        return count_minimind_parameters(c) - (c.num_hidden_layers * c.n_routed_experts * c.hidden_size
                                               if c.use_moe else 0)

    _fails(checks.check_count_parameters(no_router), "MiniMind2-MoE", "router")
