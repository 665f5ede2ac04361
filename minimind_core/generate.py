"""Text generation, written out so that every step of `generate` can be read.

    prompt ids --prefill--> logits of the last position + KV cache
    loop: logits -> repetition penalty -> temperature -> top-k -> top-p -> sample (or argmax)
          -> yield the token -> feed only that token back, with the cache

The cache is the model's KVCache (kv_cache.py): the prefill call starts it, and every step passes
the same object back, which the model extends in place by the new token's keys and values.

Hugging Face's `model.generate` works on MiniMindForCausalLM too; this module is the one the
lessons read and the evaluation uses.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

from .chat import prompt_ids
from .tokenizer import EOS_ID


def apply_repetition_penalty(logits: torch.Tensor, previous: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make tokens already in `previous` less likely (CTRL's rule): a positive logit is divided by
    `penalty`, a negative one multiplied. logits [batch, vocab], previous [batch, seq]."""
    if penalty == 1.0 or previous.numel() == 0:
        return logits
    scores = logits.gather(1, previous)
    scores = torch.where(scores > 0, scores / penalty, scores * penalty)
    return logits.scatter(1, previous, scores)


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) filtering; removed tokens get -inf.

    top-p keeps the smallest set of most likely tokens whose probabilities add up to at least
    `top_p` (the most likely token always stays).
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use do_sample=False for greedy decoding)")
    logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens before it already reach top_p
        remove_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def next_token(logits: torch.Tensor, do_sample: bool = True, temperature: float = 0.85,
               top_k: int | None = None, top_p: float | None = 0.85,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick the next token from last-position logits [batch, vocab] -> [batch]."""
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits.float(), temperature, top_k, top_p).softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def stream_generate(model, input_ids: torch.Tensor, max_new_tokens: int = 256, do_sample: bool = True,
                    temperature: float = 0.85, top_k: int | None = None, top_p: float | None = 0.85,
                    repetition_penalty: float = 1.0, eos_token_id: int | None = EOS_ID,
                    attention_mask: torch.Tensor | None = None, use_cache: bool = True,
                    generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Yield the next token ids ([batch]) one step at a time.

    Stops after `max_new_tokens` or when every sequence has produced `eos_token_id`; a sequence that
    has finished keeps yielding `eos_token_id`. With use_cache=False every step re-reads the whole
    sequence (slow, but the same tokens: the lessons compare both).
    """
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = input_ids.to(device)
    mask = attention_mask.to(device) if attention_mask is not None else None
    max_pos = model.config.max_position_embeddings
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
    cache = None
    step_input = ids
    try:
        for _ in range(max_new_tokens):
            if ids.shape[1] >= max_pos:
                break
            if use_cache:
                out = model(step_input, attention_mask=mask, past_key_values=cache, use_cache=True)
                cache = out.past_key_values
            else:
                out = model(ids, attention_mask=mask)
            logits = out.logits[:, -1, :].float()
            logits = apply_repetition_penalty(logits, ids, repetition_penalty)
            token = next_token(logits, do_sample, temperature, top_k, top_p, generator)
            if eos_token_id is not None:
                token = torch.where(finished, torch.full_like(token, eos_token_id), token)
                finished |= token == eos_token_id
            yield token
            ids = torch.cat([ids, token[:, None]], dim=1)
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            step_input = token[:, None]
            if eos_token_id is not None and bool(finished.all()):
                break
    finally:
        model.train(was_training)


def generate(model, input_ids: torch.Tensor, max_new_tokens: int = 256, **kwargs) -> torch.Tensor:
    """The new token ids [batch, n] (prompt not included); see `stream_generate` for the options.

    A sequence that finished early is padded with eos_token_id.
    """
    tokens = list(stream_generate(model, input_ids, max_new_tokens, **kwargs))
    if not tokens:
        return input_ids.new_zeros((input_ids.shape[0] if input_ids.dim() > 1 else 1, 0))
    return torch.stack(tokens, dim=1)


def chat_prompt_ids(tokenizer, messages: str | Sequence[dict]) -> torch.Tensor:
    """Token ids [1, seq] of `messages` (or one user message) with the generation prompt
    (`chat.prompt_ids` as a batch of one)."""
    return torch.tensor([prompt_ids(tokenizer, messages)], dtype=torch.long)


def pretrain_prompt_ids(tokenizer, text: str) -> torch.Tensor:
    """MiniMind's prompt for a pretrained (not chat) model: bos + text, no chat template."""
    return torch.tensor([[tokenizer.bos_token_id] + tokenizer.encode(text, add_special_tokens=False)],
                        dtype=torch.long)


def stream_text(model, tokenizer, input_ids: torch.Tensor, **kwargs) -> Iterator[str]:
    """Yield the reply as text pieces, decoding only whole characters (a Chinese character spans
    several byte-level tokens, so a piece is released once it decodes cleanly)."""
    new_ids: list[int] = []
    emitted = ""
    eos = kwargs.get("eos_token_id", EOS_ID)
    for token in stream_generate(model, input_ids, **kwargs):
        t = int(token[0])
        if eos is not None and t == eos:
            break
        new_ids.append(t)
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):   # an unfinished multi-byte character
            continue
        if len(text) > len(emitted):
            yield text[len(emitted):]
            emitted = text
    # a reply cut off by max_new_tokens may end inside a character: drop that unfinished tail
    text = tokenizer.decode(new_ids, skip_special_tokens=True).rstrip("\ufffd")
    if len(text) > len(emitted):
        yield text[len(emitted):]


def chat(model, tokenizer, messages: str | Sequence[dict], max_new_tokens: int = 256, **kwargs) -> str:
    """Answer a chat (a string is one user message) and return the reply text."""
    ids = chat_prompt_ids(tokenizer, messages)
    return "".join(stream_text(model, tokenizer, ids, max_new_tokens=max_new_tokens, **kwargs))


def complete(model, tokenizer, text: str, max_new_tokens: int = 128, **kwargs) -> str:
    """Continue `text` as a pretrained model does (bos + text, no chat template)."""
    ids = pretrain_prompt_ids(tokenizer, text)
    return "".join(stream_text(model, tokenizer, ids, max_new_tokens=max_new_tokens, **kwargs))
