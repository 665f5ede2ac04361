"""Checks for lesson 04 (预训练, pretraining): baseline loss, packing, LR schedule, gradient accumulation.

    from minimind_core.checks import lesson04 as checks
    checks.check_unigram_loss(unigram_loss)            # unigram_loss(tokens, vocab_size) -> float (nats)
    checks.check_pack_documents(pack_documents)        # pack_documents(docs, block_size) -> (blocks, tail)
    checks.check_lr_schedule(lr_schedule)              # lr_schedule(step, total, base_lr) -> float
    checks.check_accumulate_gradients(accumulate)      # accumulate(model, micro_batches) -> float
    checks.check_training_step(training_step)          # training_step(model, optimizer, batch, lr) -> (loss, norm)
    checks.check_warmup_cosine(lr_warmup_cosine)       # stretch: (step, total, base_lr, warmup) -> float

The schedules are compared with `minimind_core.train.lr_at`, packing with the blocks of
`minimind_core.datasets.PackedDataset`, gradient accumulation with the gradient of one big batch
through the library model.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..train.schedule import lr_at
from . import CheckFailed, call_learner, check, expect_equal, expect_tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _float(got, what: str) -> float:
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            raise CheckFailed(f"{what}: expected one number, got a tensor of shape {tuple(got.shape)}")
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float, np.floating, np.integer)):
        raise CheckFailed(f"{what}: expected a number, got {type(got).__name__}")
    return float(got)


# --------------------------------------------------------------------------------------------
# Warm-up: the unigram baseline
# --------------------------------------------------------------------------------------------

def unigram_entropy(tokens, vocab_size: int) -> float:
    """Cross-entropy (nats) of the best context-free guess: the corpus' own token frequencies.

    It equals the entropy of the unigram distribution: -sum_v p(v) log p(v), with 0 log 0 = 0.
    """
    tokens = torch.as_tensor(tokens).reshape(-1).long()
    if tokens.numel() == 0:
        raise ValueError("no tokens")
    p = torch.bincount(tokens, minlength=vocab_size).double() / tokens.numel()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


@check("unigram baseline")
def check_unigram_loss(unigram_loss):
    g = _gen(0)
    zipf = torch.distributions.Categorical(probs=1.0 / torch.arange(1, 301, dtype=torch.float64))
    torch.manual_seed(0)
    cases = [
        ("a Zipf-like stream of 5,000 tokens over a vocabulary of 300", zipf.sample((5000,)), 300),
        ("4 equally frequent tokens (answer ln 4)", torch.tensor([3, 7, 3, 7, 9, 11, 9, 11]), 16),
        ("one token repeated (answer 0: it is always right)", torch.full((50,), 5), 10),
        ("a [4, 64] batch of ids, most of the vocabulary never seen", torch.randint(0, 20, (4, 64), generator=g), 2048),
    ]
    for what, tokens, vocab in cases:
        expected = unigram_entropy(tokens, vocab)
        got = _float(call_learner(unigram_loss, tokens.clone(), vocab), f"unigram_loss on {what}")
        if math.isnan(got):
            raise CheckFailed(f"{what}: got nan; tokens that never occur add nothing (0 * log 0 counts as 0)")
        if expected > 0 and abs(got - expected / math.log(2)) < 1e-6:
            raise CheckFailed(f"{what}: got {got:.4f}, that is bits (log2); the loss is in nats (natural log): "
                              f"expected {expected:.4f}")
        if abs(got - expected) > 1e-6 * max(1.0, expected):
            raise CheckFailed(f"{what}: expected {expected:.6f} nats, got {got:.6f}")
    return "correct: -sum p log p over the token frequencies (nats)"


# --------------------------------------------------------------------------------------------
# Packing documents into blocks
# --------------------------------------------------------------------------------------------

def reference_pack(docs, block_size: int):
    """Every document back to back, cut into rows of `block_size`; the tail that does not fill a
    row is left out. Returns (blocks [n_blocks, block_size] long, tail length)."""
    flat = [t for d in docs for t in d]
    n = len(flat) // block_size
    blocks = torch.tensor(flat[: n * block_size], dtype=torch.long).reshape(n, block_size)
    return blocks, len(flat) - n * block_size


def _library_blocks(docs, block_size: int) -> torch.Tensor:
    """The blocks of minimind_core.datasets.PackedDataset over the same token stream."""
    from ..datasets import PackedDataset

    class _Stream:  # the two things PackedDataset reads from a TokenCache
        def __init__(self, flat):
            self.tokens = np.asarray(flat, dtype=np.uint16)
            self.n_tokens = len(flat)
            self.meta = {"source": "the documents of this check"}

        def __len__(self):
            return self.n_tokens

    ds = PackedDataset(_Stream([t for d in docs for t in d]), block_size)
    if len(ds) == 0:
        return torch.zeros(0, block_size, dtype=torch.long)
    return torch.stack([torch.as_tensor(ds[i]["input_ids"]).long() for i in range(len(ds))])


def _docs(g, n, lo, hi, vocab=400):
    out = []
    for _ in range(n):
        length = int(torch.randint(lo, hi + 1, (1,), generator=g))
        out.append([1] + torch.randint(3, vocab, (length,), generator=g).tolist() + [2])
    return out


@check("pack_documents")
def check_pack_documents(pack_documents):
    g = _gen(1)
    cases = [
        ("12 documents of 3..40 tokens into blocks of 16", _docs(g, 12, 3, 40), 16),
        ("one long document (longer than a block) into blocks of 8", _docs(g, 1, 50, 50), 8),
        ("documents that fill exactly 3 blocks of 4 (no tail)", [[1, 5, 2], [1, 6, 7, 8, 2], [1, 9, 10, 2]], 4),
        ("fewer tokens than one block (no block, all tail)", [[1, 5, 6, 2]], 10),
    ]
    for what, docs, bs in cases:
        got = call_learner(pack_documents, [list(d) for d in docs], bs)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailed(f"{what}: expected a pair (blocks, tail), got {type(got).__name__}")
        blocks, tail = got
        exp_blocks, exp_tail = reference_pack(docs, bs)
        if isinstance(blocks, torch.Tensor) and blocks.ndim == 2 and blocks.shape[1] == bs:
            n_tok = sum(len(d) for d in docs)
            if blocks.shape[0] == exp_blocks.shape[0] + 1 and exp_tail:
                raise CheckFailed(f"{what}: {blocks.shape[0]} blocks: the last one is padded or wrapped; "
                                  f"keep only whole blocks ({exp_blocks.shape[0]}) and report the "
                                  f"{exp_tail} leftover tokens as the tail")
            if blocks.shape[0] * bs + (tail if isinstance(tail, int) else 0) != n_tok:
                raise CheckFailed(f"{what}: blocks hold {blocks.shape[0] * bs} tokens and the tail {tail}, "
                                  f"but the documents have {n_tok}: every token must be used once")
        expect_tensor(blocks, exp_blocks, f"blocks ({what})", check_dtype=True)
        expect_equal(int(tail) if isinstance(tail, (int, np.integer)) else tail, exp_tail, f"tail ({what})")
        if len(exp_blocks):
            expect_tensor(exp_blocks, _library_blocks(docs, bs), f"library PackedDataset blocks ({what})")
    return "correct: documents back to back, whole blocks only, every token once, the tail reported"


# --------------------------------------------------------------------------------------------
# The learning-rate schedule
# --------------------------------------------------------------------------------------------

def _schedule_cases():
    return [(100, 5e-4, list(range(100))), (44160, 5e-4, [0, 1, 22080, 40500, 44159]), (1, 1e-3, [0]),
            (7, 2e-3, list(range(7)))]


@check("MiniMind's LR schedule")
def check_lr_schedule(lr_schedule):
    for total, base, steps in _schedule_cases():
        for s in steps:
            exp = lr_at(s, total, base)
            got = _float(call_learner(lr_schedule, s, total, base), f"lr_schedule({s}, {total}, {base:g})")
            if abs(got - exp) <= 1e-12 + 1e-9 * exp:
                continue
            hint = ""
            if total > 1 and abs(got - base * 0.5 * (1 + math.cos(math.pi * s / total))) < 1e-12:
                hint = ": that is the plain cosine down to 0; MiniMind keeps a floor of lr/10 (0.1 + 0.45 * (1 + cos))"
            elif abs(got - base * (0.1 + 0.45 * (1 + math.cos(math.pi * (s + 1) / total)))) < 1e-12:
                hint = ": off by one step; step 0 must give the full base lr"
            elif abs(got - base * (0.1 + 0.5 * (1 + math.cos(math.pi * s / total)))) < 1e-12:
                hint = (": that is MiniMind's older lr/10 + 0.5 * lr * (1 + cos), which peaks at 1.1 lr; "
                        "the cosine part is 0.45 * (1 + cos), so that lr(0) = lr exactly")
            raise CheckFailed(f"lr_schedule({s}, total={total}, base_lr={base:g}): expected {exp:.9g}, "
                              f"got {got:.9g}{hint}")
    return "correct: lr(0) = lr, lr(T/2) = 0.55 lr, lr(T) -> lr/10"


# --------------------------------------------------------------------------------------------
# Gradient accumulation
# --------------------------------------------------------------------------------------------

def _grads(model):
    return {n: (p.grad.detach().clone() if p.grad is not None else None) for n, p in model.named_parameters()}


_BASE_MODEL = []


def _accum_model():
    """A fresh copy of one small random model (built once: building a model is the slow part)."""
    import copy

    if not _BASE_MODEL:
        from ..config import MiniMindConfig
        from ..model import MiniMindForCausalLM

        state = torch.random.get_rng_state()
        torch.manual_seed(0)
        cfg = MiniMindConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             vocab_size=97, max_position_embeddings=64)
        _BASE_MODEL.append(MiniMindForCausalLM(cfg))
        torch.random.set_rng_state(state)
    model = copy.deepcopy(_BASE_MODEL[0])
    model.zero_grad(set_to_none=True)
    return model


@check("gradient accumulation")
def check_accumulate_gradients(accumulate):
    g = _gen(2)
    for k, mb, t in ((4, 2, 12), (2, 3, 9), (1, 4, 8)):
        big_ids = torch.randint(3, 97, (k * mb, t), generator=g)
        micro = [{"input_ids": big_ids[i * mb:(i + 1) * mb].clone(), "labels": big_ids[i * mb:(i + 1) * mb].clone()}
                 for i in range(k)]
        ref = _accum_model()
        big_loss = ref(input_ids=big_ids, labels=big_ids).loss
        big_loss.backward()
        expected = _grads(ref)

        model = _accum_model()
        what = f"{k} micro-batches of {mb} x {t}"
        got_loss = call_learner(accumulate, model, micro)
        got = _grads(model)
        missing = [n for n, v in got.items() if v is None]
        if len(missing) == len(got):
            raise CheckFailed(f"{what}: the model has no gradients afterwards; call loss.backward() on every micro-batch")
        if missing:
            raise CheckFailed(f"{what}: no gradient for {missing[0]}")
        name = "model.layers.0.self_attn.q_proj.weight"
        if k > 1:
            ratio = float(got[name].norm() / expected[name].norm())
            if abs(ratio - k) < 0.05 * k and torch.allclose(got[name], k * expected[name], rtol=1e-3, atol=1e-6):
                raise CheckFailed(f"{what}: the gradients are {k}x those of the big batch: "
                                  f"divide each micro-batch's loss by k = {k} before backward()")
            last = micro[-1]
            solo = _accum_model()
            solo(input_ids=last["input_ids"], labels=last["labels"]).loss.backward()
            if torch.allclose(got[name], solo.get_parameter(name).grad, rtol=1e-4, atol=1e-7) or \
                    torch.allclose(got[name], solo.get_parameter(name).grad / k, rtol=1e-4, atol=1e-7):
                raise CheckFailed(f"{what}: only the last micro-batch's gradient is left: do not zero the "
                                  "gradients between micro-batches (backward() adds to .grad)")
        for n in expected:
            expect_tensor(got[n], expected[n], f"{what}: gradient of {n}", atol=1e-6, rtol=1e-4)
        loss = _float(got_loss, f"{what}: the returned loss")
        if abs(loss - big_loss.item()) > 1e-5 * max(1.0, big_loss.item()):
            hint = " (the sum of the unscaled losses? return the mean)" if abs(loss - k * big_loss.item()) < 1e-3 else ""
            raise CheckFailed(f"{what}: returned loss {loss:.6f}, expected the big batch's loss "
                              f"{big_loss.item():.6f}{hint}")
    return "correct: k micro-batches with loss / k give exactly the gradient of one k-times larger batch"


# --------------------------------------------------------------------------------------------
# The training step by hand
# --------------------------------------------------------------------------------------------

def reference_training_step(model, optimizer, batch, lr: float, clip: float = 1.0):
    """One optimizer step as train() takes it (one micro-batch); returns (loss, grad norm before clipping).

    Forward, next-token cross-entropy over the targets (labels shifted by one, -100 ignored),
    backward, clip the gradient norm at `clip`, one AdamW step at `lr`, zero the gradients.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits = model(input_ids=batch["input_ids"]).logits
    labels = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                             labels.reshape(-1), ignore_index=-100)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item(), float(grad_norm)


def _step_batches(g, n: int = 3):
    ids = [torch.randint(3, 97, (3, 10), generator=g) for _ in range(n)]
    out = []
    for x in ids:
        labels = x.clone()
        labels[0, :4] = -100            # a masked prefix, as in SFT: these positions are not targets
        out.append({"input_ids": x, "labels": labels})
    return out


def _weights_after(step_fn, batches, lrs, learner: bool):
    model = _accum_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1.0)   # the step must set the rate itself
    results = []
    for b, lr in zip(batches, lrs):
        b = {k: v.clone() for k, v in b.items()}
        results.append(call_learner(step_fn, model, opt, b, lr) if learner else step_fn(model, opt, b, lr))
    return model, results


@check("the training step")
def check_training_step(training_step):
    batches, lrs = _step_batches(_gen(4)), [3e-3, 2e-3, 1e-3]
    one, _ = _weights_after(training_step, batches[:1], lrs[:1], learner=True)
    left = [n for n, p in one.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]
    if left:
        raise CheckFailed(f"after the step {left[0]} still holds a gradient: zero the gradients "
                          "(optimizer.zero_grad) or the next step adds to them")
    ref, ref_out = _weights_after(reference_training_step, batches, lrs, learner=False)
    got, got_out = _weights_after(training_step, batches, lrs, learner=True)
    update_hint = ("clip at 1.0 before optimizer.step(), set every param group's lr to this step's rate, "
                   "and zero the gradients after the step")
    for i, (r, o) in enumerate(zip(ref_out, got_out)):
        if not isinstance(o, (tuple, list)) or len(o) != 2:
            raise CheckFailed(f"step {i + 1}: return (loss, grad_norm), got {o!r}")
        loss = _float(o[0], f"step {i + 1}: the loss")
        norm = _float(o[1], f"step {i + 1}: the gradient norm")
        if i == 0 and abs(loss - r[0]) > 1e-5 * max(1.0, r[0]):
            raise CheckFailed(f"step 1: loss {loss:.6f}, expected {r[0]:.6f} (the mean cross-entropy of "
                              "logits[:, :-1] against labels[:, 1:], ignoring -100)")
        if i == 0 and abs(norm - r[1]) > 1e-4 * max(1.0, r[1]):
            hint = " (after clipping? return the norm clip_grad_norm_ returns: the one before)" if norm <= 1.0001 else ""
            raise CheckFailed(f"step 1: gradient norm {norm:.6f}, expected {r[1]:.6f}{hint}")
        if abs(loss - r[0]) > 1e-5 * max(1.0, r[0]) or abs(norm - r[1]) > 1e-4 * max(1.0, r[1]):
            raise CheckFailed(f"step {i + 1}: loss {loss:.6f}, expected {r[0]:.6f}: the update before it differs "
                              f"from train()'s: {update_hint}")
    for (n, p), q in zip(ref.named_parameters(), got.parameters()):
        if not torch.allclose(q, p, rtol=1e-4, atol=1e-6):
            raise CheckFailed(f"after 3 steps {n} differs from train()'s: {update_hint}")
    return "correct: forward, shifted cross-entropy, backward, clip, AdamW step, zero grad - train()'s step"


# --------------------------------------------------------------------------------------------
# Stretch: warmup + cosine
# --------------------------------------------------------------------------------------------

@check("warmup + cosine schedule")
def check_warmup_cosine(lr_warmup_cosine):
    for total, base, warmup, steps in ((100, 1e-3, 10, list(range(100))), (600, 2e-3, 20, [0, 19, 20, 21, 310, 599]),
                                       (50, 5e-4, 0, [0, 25, 49]), (5, 1e-3, 5, list(range(5)))):
        for s in steps:
            exp = lr_at(s, total, base, warmup)
            got = _float(call_learner(lr_warmup_cosine, s, total, base, warmup),
                         f"lr_warmup_cosine({s}, {total}, {base:g}, {warmup})")
            if abs(got - exp) <= 1e-12 + 1e-9 * exp:
                continue
            hint = ""
            if warmup and s < warmup and abs(got - base * s / warmup) < 1e-12:
                hint = ": step 0 must already train (lr = base_lr / warmup): ramp with (step + 1) / warmup"
            elif warmup and s >= warmup and abs(got - lr_at(s, total, base)) < 1e-12:
                hint = ": after the warmup the cosine starts afresh at its top: run it over t = step - warmup of T - warmup"
            raise CheckFailed(f"lr_warmup_cosine({s}, total={total}, base_lr={base:g}, warmup={warmup}): "
                              f"expected {exp:.9g}, got {got:.9g}{hint}")
    return "correct: a linear ramp to the peak, then MiniMind's cosine over the remaining steps"


__all__ = ["check_unigram_loss", "check_pack_documents", "check_lr_schedule", "check_accumulate_gradients",
           "check_training_step", "check_warmup_cosine", "unigram_entropy", "reference_pack",
           "reference_training_step"]
