"""Lesson 04 checks: pass on the answers, 'not done yet' on the stubs, a readable message on wrong ones."""
import math

import torch

from minimind_core.checks import lesson04 as checks
from check_helpers import stub, expect_fail as _fails


# ---- reference answers, written independently of the library ---------------------------------

def unigram_loss(tokens, vocab_size):
    counts = torch.bincount(tokens.flatten(), minlength=vocab_size).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    return float(-(nz * nz.log()).sum())


def pack_documents(docs, block_size):
    stream = torch.tensor([t for d in docs for t in d], dtype=torch.long)
    n = len(stream) // block_size
    return stream[: n * block_size].view(n, block_size), len(stream) - n * block_size


def lr_schedule(step, total, base_lr):
    return base_lr * (0.1 + 0.45 * (1 + math.cos(math.pi * step / total)))


def accumulate(model, micro_batches):
    k = len(micro_batches)
    total = 0.0
    for b in micro_batches:
        loss = model(input_ids=b["input_ids"], labels=b["labels"]).loss / k
        loss.backward()
        total += loss.item()
    return total


def lr_warmup_cosine(step, total, base_lr, warmup):
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t, span = step - warmup, max(1, total - warmup)
    return base_lr * (0.1 + 0.45 * (1 + math.cos(math.pi * t / span)))


# ---- unigram baseline -----------------------------------------------------------------------

def test_unigram_loss():
    assert checks.check_unigram_loss(unigram_loss).passed
    _fails(checks.check_unigram_loss(stub), "not done yet")
    bits = lambda t, v: unigram_loss(t, v) / math.log(2)  # noqa: E731
    _fails(checks.check_unigram_loss(bits), "bits (log2)", "nats")

    def with_nan(t, v):
        p = torch.bincount(t.flatten(), minlength=v).double() / t.numel()
        return float(-(p * p.log()).sum())
    _fails(checks.check_unigram_loss(with_nan), "got nan", "0 * log 0")
    uniform = lambda t, v: math.log(len(torch.unique(t)))  # noqa: E731 - ignores the frequencies
    _fails(checks.check_unigram_loss(uniform), "expected", "nats, got")


def test_unigram_entropy_reference():
    assert checks.unigram_entropy(torch.tensor([1, 2, 3, 4]), 10) == math.log(4)
    assert checks.unigram_entropy([5, 5, 5], 10) == 0.0


# ---- packing --------------------------------------------------------------------------------

def test_pack_documents():
    assert checks.check_pack_documents(pack_documents).passed, str(checks.check_pack_documents(pack_documents))
    _fails(checks.check_pack_documents(stub), "not done yet")

    def padded_tail(docs, bs):
        stream = [t for d in docs for t in d]
        stream += [0] * (-len(stream) % bs)
        return torch.tensor(stream).view(-1, bs), 0
    _fails(checks.check_pack_documents(padded_tail), "padded or wrapped", "tail")

    def truncates_docs(docs, bs):  # one document per block, MiniMind style: drops tokens
        rows = [d[:bs] for d in docs if len(d) >= bs]
        return (torch.tensor(rows, dtype=torch.long) if rows else torch.zeros(0, bs, dtype=torch.long)), 0
    _fails(checks.check_pack_documents(truncates_docs), "every token must be used once")

    def int32(docs, bs):
        b, t = pack_documents(docs, bs)
        return b.int(), t
    _fails(checks.check_pack_documents(int32), "dtype torch.int64", "torch.int32")

    def shifted(docs, bs):  # drops the first token
        return pack_documents([docs[0][1:]] + docs[1:], bs)
    _fails(checks.check_pack_documents(shifted))


def test_reference_pack():
    blocks, tail = checks.reference_pack([[1, 2, 3], [4, 5]], 2)
    assert blocks.tolist() == [[1, 2], [3, 4]] and tail == 1


# ---- LR schedule ----------------------------------------------------------------------------

def test_lr_schedule():
    r = checks.check_lr_schedule(lr_schedule)
    assert r.passed and "lr(T) -> lr/10" in r.message
    _fails(checks.check_lr_schedule(stub), "not done yet")
    plain = lambda s, T, lr: lr * 0.5 * (1 + math.cos(math.pi * s / T))  # noqa: E731
    _fails(checks.check_lr_schedule(plain), "floor of lr/10")
    off_by_one = lambda s, T, lr: lr_schedule(s + 1, T, lr)  # noqa: E731
    _fails(checks.check_lr_schedule(off_by_one), "off by one")
    half = lambda s, T, lr: lr * (0.1 + 0.5 * (1 + math.cos(math.pi * s / T)))  # noqa: E731
    _fails(checks.check_lr_schedule(half), "older", "0.45 * (1 + cos)")
    _fails(checks.check_lr_schedule(lambda s, T, lr: "fast"), "expected a number, got str")


# ---- gradient accumulation ------------------------------------------------------------------

def test_accumulate_gradients():
    r = checks.check_accumulate_gradients(accumulate)
    assert r.passed, str(r)
    _fails(checks.check_accumulate_gradients(stub), "not done yet")

    def unscaled(model, micro):
        for b in micro:
            model(input_ids=b["input_ids"], labels=b["labels"]).loss.backward()
        return 0.0
    _fails(checks.check_accumulate_gradients(unscaled), "4x those of the big batch", "divide")

    def zeroes(model, micro):
        out = 0.0
        for b in micro:
            model.zero_grad()
            loss = model(input_ids=b["input_ids"], labels=b["labels"]).loss / len(micro)
            loss.backward()
            out += loss.item()
        return out
    _fails(checks.check_accumulate_gradients(zeroes), "only the last micro-batch")

    def no_backward(model, micro):
        return sum(model(input_ids=b["input_ids"], labels=b["labels"]).loss.item() for b in micro) / len(micro)
    _fails(checks.check_accumulate_gradients(no_backward), "no gradients", "backward()")

    def sum_loss(model, micro):
        accumulate(model, micro)
        return sum(model(input_ids=b["input_ids"], labels=b["labels"]).loss.item() for b in micro)
    _fails(checks.check_accumulate_gradients(sum_loss), "returned loss", "return the mean")


# ---- stretch: warmup + cosine ---------------------------------------------------------------

def test_warmup_cosine():
    assert checks.check_warmup_cosine(lr_warmup_cosine).passed
    _fails(checks.check_warmup_cosine(stub), "not done yet")

    def zero_start(s, T, lr, w):
        return lr * s / w if s < w else lr_warmup_cosine(s, T, lr, w)
    _fails(checks.check_warmup_cosine(zero_start), "(step + 1) / warmup")

    def no_shift(s, T, lr, w):
        return lr * (s + 1) / w if s < w else lr_schedule(s, T, lr)
    _fails(checks.check_warmup_cosine(no_shift), "step - warmup")


# ---- the training step by hand --------------------------------------------------------------

def training_step(model, optimizer, batch, lr):
    for g in optimizer.param_groups:
        g["lr"] = lr
    logits = model(input_ids=batch["input_ids"]).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(),
                                             ignore_index=-100)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item(), norm.item()


def test_training_step():
    assert checks.check_training_step(training_step).passed
    _fails(checks.check_training_step(stub), "not done yet")


def test_training_step_wrong_answers():
    def no_zero_grad(model, optimizer, batch, lr):
        for g in optimizer.param_groups:
            g["lr"] = lr
        loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item(), norm.item()

    def unshifted(model, optimizer, batch, lr):
        for g in optimizer.param_groups:
            g["lr"] = lr
        logits = model(input_ids=batch["input_ids"]).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return loss.item(), norm.item()

    def no_clip(model, optimizer, batch, lr):
        for g in optimizer.param_groups:
            g["lr"] = lr
        loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        loss.backward()
        norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
        optimizer.step()
        optimizer.zero_grad()
        return loss.item(), norm.item()

    def ignores_lr(model, optimizer, batch, lr):
        loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return loss.item(), norm.item()

    _fails(checks.check_training_step(no_zero_grad), "still holds a gradient")
    _fails(checks.check_training_step(unshifted), "step 1: loss", "logits[:, :-1] against labels[:, 1:]")
    _fails(checks.check_training_step(no_clip), "differs from train()'s", "clip at 1.0")
    _fails(checks.check_training_step(ignores_lr), "lr to this step's rate")
