"""Text generation, written out so that every step of `generate` can be read.

    prompt ids --prefill--> logits of the last position + KV cache
    loop: logits -> repetition penalty -> temperature -> top-k -> top-p -> sample (or argmax)
          -> yield the token -> feed only that token back, with the cache

The cache is the model's KVCache (kv_cache.py), allocated once for the whole generation (static):
the prefill call fills it with the prompt, and every step passes the same object back, which the
model extends in place by the new token's keys and values.

Hugging Face's `model.generate` works on MiniMindForCausalLM too; this module is the one the
lessons read and the evaluation uses.
"""
from __future__ import annotations

import inspect
from typing import Iterator, Sequence

import torch

from .chat import prompt_ids
from .kv_cache import KVCache
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


class _Decoder:
    """Logits of the next token [batch, vocab] for a sequence that grows one token at a time.

    A MiniMind model gets a static KVCache sized for the whole generation (allocated once; each
    step writes its keys and values in place); the prompt goes through the model's forward, and
    each new token through decode.DecodeStep (the same step without module calls) when the model
    is a plain dense one. Any other model (a Llama or Qwen3 folder loaded through transformers)
    passes its own cache back; use_cache=False re-reads the whole sequence every step. Every call
    runs under `torch.inference_mode()`, which skips autograd's bookkeeping on each of the few
    hundred small operations of a step.
    """

    def __init__(self, model, batch_size: int, max_len: int, use_cache: bool):
        from .decode import DecodeStep, supports

        self.model = model
        self.minimind = use_cache and getattr(model.config, "model_type", None) == "minimind"
        self.use_cache = use_cache
        self.cache = None
        self.step = None
        self.fed = 0                 # positions the model has read (its own cache holds them)
        if self.minimind:
            param = next(model.parameters())
            with torch.inference_mode():
                self.cache = KVCache(model.config, batch_size, max_len=max_len, device=param.device,
                                     dtype=param.dtype, static=True)
            self.step = DecodeStep(model) if supports(model) else None
        elif use_cache:
            params = inspect.signature(model.forward).parameters
            self.cache_arg = "cache" if "cache" in params else "past_key_values"   # transformers 5.x / 4.x

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor | None, length: int) -> torch.Tensor:
        """ids/mask: buffers whose first `length` positions hold the sequence so far."""
        mask = mask[:, :length] if mask is not None else None
        with torch.inference_mode():
            if self.minimind:
                new = ids[:, self.cache.length:length]          # the prompt, then one token per step
                if self.step is not None and new.shape[1] == 1:
                    return self.step(new, self.cache, mask).float()
                hidden = self.model.model(new, mask, self.cache)[0]   # no output object to build
                return self.model.lm_head(hidden[:, -1, :]).float()
            if self.use_cache:
                out = self.model(ids[:, self.fed:length], attention_mask=mask, use_cache=True,
                                 **{self.cache_arg: self.cache})
                cache = getattr(out, "cache", None)             # transformers 5.x's name, else 4.x's
                self.cache = cache if cache is not None else out.past_key_values
                self.fed = length
            else:
                out = self.model(ids[:, :length], attention_mask=mask)
            return out.logits[:, -1, :].float()


def stream_generate(model, input_ids: torch.Tensor, max_new_tokens: int = 256, do_sample: bool = True,
                    temperature: float = 0.85, top_k: int | None = None, top_p: float | None = 0.85,
                    repetition_penalty: float = 1.0, eos_token_id: int | None = EOS_ID,
                    attention_mask: torch.Tensor | None = None, use_cache: bool = True,
                    generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Yield the next token ids ([batch]) one step at a time.

    Stops after `max_new_tokens` or when every sequence has produced `eos_token_id`; a sequence that
    has finished keeps yielding `eos_token_id`. With use_cache=False every step re-reads the whole
    sequence (slow, but the same tokens: the lessons compare both).

    The token ids and the attention mask live in buffers allocated once for prompt + reply, so a
    step appends nothing; the per-token work is the model call (see _Decoder) and the choice of
    the token.
    """
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batch, prompt_len = input_ids.shape
    total = min(prompt_len + max_new_tokens, model.config.max_position_embeddings)
    ids = torch.zeros(batch, max(total, prompt_len), dtype=torch.long, device=device)
    ids[:, :prompt_len] = input_ids
    mask = None
    if attention_mask is not None and not bool(attention_mask.all()):   # no padding: no mask needed
        mask = torch.ones_like(ids)
        mask[:, :prompt_len] = attention_mask
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    try:
        decoder = _Decoder(model, batch, total, use_cache)
        for length in range(prompt_len, total):
            logits = decoder(ids, mask, length)
            logits = apply_repetition_penalty(logits, ids[:, :length], repetition_penalty)
            token = next_token(logits, do_sample, temperature, top_k, top_p, generator)
            if eos_token_id is not None:
                token = torch.where(finished, torch.full_like(token, eos_token_id), token)
                finished |= token == eos_token_id
            ids[:, length] = token
            yield token
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
