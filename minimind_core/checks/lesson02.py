"""Checks for lesson 02 (token embeddings and parameter counts).

    from minimind_core.checks import lesson02 as checks
    checks.check_embedding_lookup(embedding_lookup)          # embedding_lookup(ids, weight) -> [..., hidden]
    checks.check_embedding_parameters(embedding_parameters)  # embedding_parameters(vocab, hidden, tied) -> int
    checks.check_nearest_neighbours(nearest_neighbours)      # nearest_neighbours(weight, token_id, k) -> (ids, sims)
    checks.check_count_parameters(count_minimind_parameters) # stretch: count_minimind_parameters(config) -> int

The references are `torch.nn.functional.embedding`, `minimind_core.model.embedding_parameters`,
`minimind_core.embeddings.nearest_neighbours` and, for the stretch exercise, `count_parameters` of
the real model built on the meta device.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from ..config import MiniMindConfig
from ..embeddings import nearest_neighbours
from ..model import count_parameters, embedding_parameters, meta_model
from . import CheckFailed, call_learner, check, expect_equal, expect_tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@check("embedding lookup as one-hot @ matrix")
def check_embedding_lookup(embedding_lookup):
    g = _gen(0)
    weight = torch.randn(50, 8, generator=g)
    cases = [("ids [2, 5]", torch.randint(0, 50, (2, 5), generator=g)),
             ("ids [7] that never use the last rows", torch.randint(0, 10, (7,), generator=g)),
             ("the first and the last id", torch.tensor([[0, 49, 0]]))]
    for what, ids in cases:
        try:
            got = call_learner(embedding_lookup, ids.clone(), weight.clone())
        except CheckFailed as e:
            msg = str(e)
            if "shapes cannot be multiplied" in msg:
                raise CheckFailed(f"{what}: {msg}; give one_hot num_classes=weight.shape[0] (an id batch need not "
                                  "contain the largest id)") from None
            if "same dtype" in msg or "scalar type" in msg:
                raise CheckFailed(f"{what}: {msg}; one_hot returns int64: turn it into weight's dtype "
                                  "(.to(weight.dtype)) before the matmul") from None
            raise
        expected = F.embedding(ids, weight)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape[:-1] + (weight.shape[0],):
            raise CheckFailed(f"{what}: you returned the one-hot matrix {tuple(got.shape)}; multiply it by the "
                              f"embedding matrix to get {tuple(expected.shape)}")
        expect_tensor(got, expected, f"embedding_lookup with {what}")
    return "correct: one_hot(ids) @ weight picks row ids[i] of the matrix, as nn.Embedding does"


@check("embedding parameters, tied and untied")
def check_embedding_parameters(embedding_parameters_fn):
    rng = random.Random(1)
    cases = [(6400, 512, True), (6400, 512, False), (6400, 768, True), (2048, 128, False)]
    cases += [(rng.randrange(256, 50000), rng.choice([64, 96, 256, 1024]), rng.random() < 0.5) for _ in range(6)]
    for vocab, hidden, tied in cases:
        got = call_learner(embedding_parameters_fn, vocab, hidden, tied)
        expected = embedding_parameters(vocab, hidden, tied)
        what = f"embedding_parameters({vocab}, {hidden}, tied={tied})"
        if got == vocab * hidden * (2 if tied else 1) and got != expected:
            raise CheckFailed(f"{what}: expected {expected:,}, got {got:,}: tied means ONE shared matrix "
                              "(lm_head.weight is embed_tokens.weight); untied means two")
        if not isinstance(got, int) and isinstance(got, float) and got == expected:
            raise CheckFailed(f"{what}: expected the int {expected}, got the float {got}")
        expect_equal(got, expected, what)
    saved = embedding_parameters(6400, 512, False) - embedding_parameters(6400, 512, True)
    return f"correct: tying saves vocab x hidden = {saved:,} parameters in MiniMind2-Small"


@check("cosine nearest neighbours")
def check_nearest_neighbours(nearest_neighbours_fn):
    g = _gen(2)
    # rows with very different lengths, so a dot product ranks differently from the cosine
    weight = torch.randn(40, 6, generator=g) * torch.linspace(0.1, 5.0, 40)[:, None]
    weight[7] = 3.0 * weight[3] + 0.05 * torch.randn(6, generator=g)      # the same direction as row 3
    for token_id, k in ((3, 5), (0, 1), (39, 39), (7, 3)):
        what = f"nearest_neighbours(weight [40, 6], token_id={token_id}, k={k})"
        got = call_learner(nearest_neighbours_fn, weight.clone(), token_id, k)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailed(f"{what}: expected a pair (ids, similarities), got {type(got).__name__}")
        ids, sims = got
        e_ids, e_sims = nearest_neighbours(weight, token_id, k)
        if isinstance(ids, torch.Tensor) and ids.numel() and int(ids.reshape(-1)[0]) == token_id:
            raise CheckFailed(f"{what}: the token itself came first (cosine 1 with itself); leave it out")
        if isinstance(ids, torch.Tensor) and ids.shape == e_ids.shape and not torch.equal(ids, e_ids):
            dots = weight @ weight[token_id]
            dots[token_id] = -float("inf")
            if torch.equal(ids, dots.topk(k).indices):
                raise CheckFailed(f"{what}: you ranked by the dot product, which favours long vectors; divide by "
                                  "both lengths (cosine similarity)")
        expect_tensor(ids, e_ids, f"ids of {what}")
        expect_tensor(sims, e_sims, f"similarities of {what}", atol=1e-5, rtol=1e-4)
    return "correct: cosine similarity, the token itself left out, most similar first"


def _configs() -> list[tuple[str, MiniMindConfig]]:
    rng = random.Random(3)
    out = [("MiniMind2-Small", MiniMindConfig()),
           ("MiniMind2-Small untied", MiniMindConfig(tie_word_embeddings=False)),
           ("MiniMind2", MiniMindConfig(hidden_size=768, num_hidden_layers=16)),
           ("MiniMind2-MoE", MiniMindConfig(hidden_size=640, use_moe=True))]
    for i in range(6):
        heads = rng.choice([2, 4, 8])
        kv = rng.choice([h for h in (1, 2, 4, 8) if heads % h == 0])
        head_dim = rng.choice([8, 16, 32])
        kw = dict(hidden_size=heads * head_dim, num_hidden_layers=rng.randrange(1, 6), num_attention_heads=heads,
                  num_key_value_heads=kv, vocab_size=rng.randrange(300, 9000),
                  tie_word_embeddings=rng.random() < 0.6, max_position_embeddings=64)
        if rng.random() < 0.4:
            kw["intermediate_size"] = rng.randrange(16, 300)
        if i >= 3:
            kw.update(use_moe=True, n_routed_experts=rng.randrange(2, 6), n_shared_experts=rng.randrange(0, 3),
                      num_experts_per_tok=2)
        out.append((f"random config {i + 1}" + (" (MoE)" if i >= 3 else ""), MiniMindConfig(**kw)))
    return out


@check("MiniMind parameter count formula (stretch)")
def check_count_parameters(count_minimind_parameters):
    for name, cfg in _configs():
        expected = count_parameters(meta_model(cfg))
        got = call_learner(count_minimind_parameters, cfg)
        if got == expected:
            continue
        if not isinstance(got, int):
            raise CheckFailed(f"{name}: expected an int, got {type(got).__name__} {got!r}")
        h, v, n = cfg.hidden_size, cfg.vocab_size, cfg.num_hidden_layers
        kv_dim = cfg.num_key_value_heads * cfg.head_dim
        hints = {
            h: "the final norm (model.norm, hidden_size weights) is missing",
            -h: "one norm too many: each layer has two, plus one final norm",
            v * h: "the embedding is counted twice, but it is tied to lm_head" if cfg.tie_word_embeddings
            else "with tie_word_embeddings=False, lm_head is a second vocab x hidden matrix",
            -v * h: "the embedding is missing" if cfg.tie_word_embeddings
            else "with tie_word_embeddings=False, lm_head is a second vocab x hidden matrix",
            2 * n * (h * h - h * kv_dim): "k_proj and v_proj map hidden -> num_key_value_heads * head_dim "
                                          "(grouped-query attention), not hidden -> hidden",
        }
        if cfg.use_moe:
            hints[-n * cfg.n_routed_experts * h] = "the MoE router (one hidden-size row per routed expert) is missing"
        d = got - expected
        hint = hints.get(d)
        raise CheckFailed(f"{name}: expected {expected:,}, got {got:,} ({d:+,})" + (f": {hint}" if hint else ""))
    return "correct: your formula matches count_parameters on MiniMind2-Small, MiniMind2, the MoE and random configs"


__all__ = ["check_embedding_lookup", "check_embedding_parameters", "check_nearest_neighbours",
           "check_count_parameters"]
