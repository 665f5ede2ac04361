"""Byte-level BPE tokenizer training and loading.

The tokenizer is a Hugging Face `tokenizers` BPE model over bytes (no normaliser, ByteLevel
pre-tokenizer without prefix space, no automatic BOS/EOS) saved as a tokenizer folder that
`AutoTokenizer.from_pretrained` loads. Special tokens, in this order:

    0 <|endoftext|>   padding and unknown
    1 <|im_start|>    begins a chat message (bos)
    2 <|im_end|>      ends a chat message (eos)

Every tokenizer carries the chat template of `minimind_core.chat`, where the chat format lives.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .chat import CHAT_TEMPLATE

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None,
                    min_frequency: int = 2, model_max_length: int = 32768):
    """Train a byte-level BPE tokenizer on `texts`; save it to `out_dir` if given.

    Returns a `PreTrainedTokenizerFast` with the special tokens and the chat template set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 256} "
                         f"(3 special tokens + 256 bytes), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, f"special token {s} got id {tok.token_to_id(s)}"
    hf = wrap_tokenizer(tok, model_max_length=model_max_length)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        hf.save_pretrained(str(out_dir))
    return hf


def wrap_tokenizer(tok, model_max_length: int = 32768):
    """Wrap a raw `tokenizers.Tokenizer` as a transformers tokenizer with MiniMind's specials."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL_TOKENS[BOS_ID],
        eos_token=SPECIAL_TOKENS[EOS_ID],
        pad_token=SPECIAL_TOKENS[PAD_ID],
        unk_token=SPECIAL_TOKENS[PAD_ID],
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(path: str | Path):
    """Load a tokenizer folder (ours, or MiniMind's own `model/` folder) with AutoTokenizer.

    Checks that the three special tokens have ids 0, 1, 2 and sets our chat template when the
    folder has none.
    """
    from transformers import AutoTokenizer

    path = Path(path)
    if not (path / "tokenizer.json").exists() and not (path / "tokenizer_config.json").exists():
        raise FileNotFoundError(
            f"{path}: not a tokenizer folder (expected tokenizer.json or tokenizer_config.json). "
            "Train one with lesson 01 or `python -m minimind_core tokenizer train`."
        )
    tok = AutoTokenizer.from_pretrained(str(path))
    for i, s in enumerate(SPECIAL_TOKENS):
        got = tok.convert_tokens_to_ids(s)
        if got != i:
            raise ValueError(f"{path}: special token {s} has id {got}, expected {i}")
    if tok.pad_token is None:
        tok.pad_token = SPECIAL_TOKENS[PAD_ID]
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHAT_TEMPLATE
    return tok
