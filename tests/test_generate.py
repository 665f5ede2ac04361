import math

import torch

from minimind_core.generate import (apply_repetition_penalty, chat_prompt_ids, filter_logits, generate,
                                    stream_generate)


def test_greedy_cached_equals_uncached(tiny_model):
    x = torch.randint(3, 300, (2, 9))
    with_cache = generate(tiny_model, x, 16, do_sample=False, eos_token_id=None)
    without = generate(tiny_model, x, 16, do_sample=False, eos_token_id=None, use_cache=False)
    assert with_cache.shape == (2, 16)
    assert torch.equal(with_cache, without)
    hf = tiny_model.generate(x, max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(hf[:, 9:], with_cache)


def test_stops_at_eos_and_pads_finished(tiny_model):
    x = torch.randint(3, 300, (1, 5))
    first = generate(tiny_model, x, 1, do_sample=False, eos_token_id=None)[0, 0].item()
    out = generate(tiny_model, x, 10, do_sample=False, eos_token_id=first)
    assert out.shape == (1, 1) and out[0, 0].item() == first


def test_sampling_is_seeded(tiny_model):
    x = torch.randint(3, 300, (1, 5))
    a = generate(tiny_model, x, 8, generator=torch.Generator().manual_seed(1), eos_token_id=None)
    b = generate(tiny_model, x, 8, generator=torch.Generator().manual_seed(1), eos_token_id=None)
    assert torch.equal(a, b)
    assert len(list(stream_generate(tiny_model, x, 5, eos_token_id=None))) == 5


def test_top_k_keeps_k():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.5, 4.0]])
    out = filter_logits(logits, top_k=2)
    assert torch.isfinite(out).tolist() == [[False, False, False, False, True]] or \
        torch.isfinite(out).sum().item() == 2
    assert torch.isfinite(out[0, [1, 4]]).all()


def test_top_p_keeps_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    kept = torch.isfinite(filter_logits(logits, top_p=0.7))[0].tolist()
    assert kept == [True, True, False, False]        # 0.5 < 0.7 <= 0.8
    kept = torch.isfinite(filter_logits(logits, top_p=0.8))[0].tolist()
    assert kept == [True, True, False, False]        # exactly reaches 0.8
    kept = torch.isfinite(filter_logits(logits, top_p=0.1))[0].tolist()
    assert kept == [True, False, False, False]       # the top token always stays


def test_temperature_scales_logits():
    logits = torch.tensor([[2.0, 1.0]])
    torch.testing.assert_close(filter_logits(logits, temperature=0.5), torch.tensor([[4.0, 2.0]]))


def test_repetition_penalty():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1]]), 2.0)
    torch.testing.assert_close(out, torch.tensor([[1.0, -4.0, 1.0]]))


def test_chat_prompt_ends_with_generation_prompt():
    from minimind_core.tokenizer import train_tokenizer

    tok = train_tokenizer(["hello world, 你好世界"] * 20, 300)
    ids = chat_prompt_ids(tok, "hi")[0].tolist()
    text = tok.decode(ids)
    assert text.endswith("<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant<|im_end|>\n")
    assert math.isclose(ids.count(1), 3)


def _scripted(monkeypatch, ids):
    """Make stream_generate yield `ids` one token at a time, whatever the model."""
    import minimind_core.generate as gen

    monkeypatch.setattr(gen, "stream_generate", lambda model, input_ids, **kw: (torch.tensor([i]) for i in ids))


def test_stream_text_releases_whole_characters_only(monkeypatch):
    from minimind_core.generate import stream_text
    from minimind_core.profiles import SAMPLE_DIR
    from minimind_core.tokenizer import load_tokenizer

    tok = load_tokenizer(SAMPLE_DIR / "tokenizer")
    a, dragon = tok.encode("A", add_special_tokens=False), tok.encode("龘", add_special_tokens=False)
    assert len(dragon) >= 2, "the test needs a character that spans several byte-level tokens"
    _scripted(monkeypatch, a + dragon + a + [2])          # ... then <|im_end|>
    pieces = list(stream_text(None, tok, None))
    assert "".join(pieces) == "A龘A"
    assert not any("\ufffd" in p for p in pieces), pieces
    _scripted(monkeypatch, a + dragon[:-1])                # cut off inside the character
    assert list(stream_text(None, tok, None)) == ["A"]
