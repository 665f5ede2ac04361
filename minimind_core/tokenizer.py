"""Byte-level BPE tokenizer training and loading, and readable labels for its tokens.

The tokenizer is a Hugging Face `tokenizers` BPE model over bytes (no normaliser, ByteLevel
pre-tokenizer without prefix space, no automatic BOS/EOS) saved as a tokenizer folder that
`AutoTokenizer.from_pretrained` loads. Special tokens, in this order:

    0 <|endoftext|>   padding and unknown
    1 <|im_start|>    begins a chat message (bos)
    2 <|im_end|>      ends a chat message (eos)

then six tokens reserved for tool calls and thinking, ids 3-8, so that the chat template's tags
are one token each however rare they were in the training text (as in MiniMind-3, they are
added tokens but not "special": decoding with skip_special_tokens keeps them, because they are
part of what the model says):

    3 <tool_call>   4 </tool_call>   5 <tool_response>   6 </tool_response>   7 <think>   8 </think>

Every tokenizer carries the chat template of `minimind_core.chat`, where the chat format lives.
`save_tokenizer` writes a tokenizer folder that every transformers from 4.46 on reads the same way.

`token_labels(tokenizer, ids)` gives every token a readable label, Chinese characters that are
cut across several byte-level tokens included (lessons 01, 02, 03 and 05 print and plot them).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable

from .chat import CHAT_TEMPLATE

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
RESERVED_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None,
                    min_frequency: int = 2, model_max_length: int = 32768):
    """Train a byte-level BPE tokenizer on `texts`; save it to `out_dir` if given.

    Returns a `PreTrainedTokenizerFast` with the special tokens and the chat template set.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    added = SPECIAL_TOKENS + RESERVED_TOKENS
    if vocab_size < len(added) + 256:
        raise ValueError(f"vocab_size must be at least {len(added) + 256} ({len(SPECIAL_TOKENS)} special "
                         f"+ {len(RESERVED_TOKENS)} reserved tokens + 256 bytes), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=added,          # ids 0..8, in this order, before the 256 bytes
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # the trainer marks all of them special; the reserved ones are ordinary added tokens
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in RESERVED_TOKENS])
    tok = Tokenizer.from_str(tok.to_str())
    for i, s in enumerate(added):
        assert tok.token_to_id(s) == i, f"added token {s} got id {tok.token_to_id(s)}"
    hf = wrap_tokenizer(tok, model_max_length=model_max_length)
    if out_dir is not None:
        save_tokenizer(hf, out_dir)
    return hf


def save_tokenizer(tokenizer, out_dir: str | Path) -> Path:
    """`save_pretrained`, with a tokenizer_config.json that transformers from 4.46 on reads alike.

    transformers 5 names its own backend class (`TokenizersBackend`), which older versions do not
    have, and keeps the chat template only in chat_template.jinja, which versions before 4.50 do
    not read. The config written here names `PreTrainedTokenizerFast` (a class every version has,
    and the one 5.x maps to the same backend) and holds the chat template too; keys that only
    describe how 5.x loaded it are dropped.
    """
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    for key in ("backend", "is_local", "local_files_only"):
        cfg.pop(key, None)
    cfg.update(tokenizer_class="PreTrainedTokenizerFast", add_bos_token=False, add_eos_token=False)
    if getattr(tokenizer, "chat_template", None):
        cfg["chat_template"] = tokenizer.chat_template
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out_dir


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
    from transformers.utils import logging as transformers_logging

    path = Path(path)
    if not (path / "tokenizer.json").exists() and not (path / "tokenizer_config.json").exists():
        raise FileNotFoundError(
            f"{path}: not a tokenizer folder (expected tokenizer.json or tokenizer_config.json). "
            "Train one with lesson 01 or `python -m minimind_core tokenizer train`."
        )
    # A model folder also holds config.json with the model's own code (auto_map): AutoTokenizer reads
    # that config, and without trust_remote_code=False it would stop to ask whether to run the code
    # (and warn that a "minimind" config is not its own); the tokenizer needs neither.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    finally:
        transformers_logging.set_verbosity(verbosity)
    for i, s in enumerate(SPECIAL_TOKENS):
        got = tok.convert_tokens_to_ids(s)
        if got != i:
            raise ValueError(f"{path}: special token {s} has id {got}, expected {i}")
    if tok.pad_token is None:
        tok.pad_token = SPECIAL_TOKENS[PAD_ID]
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHAT_TEMPLATE
    return tok


# ----------------------------------------------------------------------------------------------
# readable token labels


@lru_cache(maxsize=1)
def _byte_of_char() -> dict[str, int]:
    """The inverse of the byte-level BPE alphabet (each of the 256 bytes drawn as a printable character)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


def _utf8_length(lead: int) -> int:
    """Bytes of the UTF-8 character that starts with byte `lead`; 0 for a byte no character starts with."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0  # a continuation byte or an invalid lead byte


def _token_bytes(tokenizer, ids: list[int], tokens: list) -> list[bytes | None]:
    """The bytes each token stands for; None for a special token."""
    decoder = _byte_of_char()
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    pieces: list[bytes | None] = []
    for i, tok in zip(ids, tokens):
        if i in special or tok is None:
            pieces.append(None)
        elif all(c in decoder for c in tok):
            pieces.append(bytes(decoder[c] for c in tok))
        else:  # not a byte-level token: its decoded text is all there is
            pieces.append(tokenizer.decode([i]).encode("utf-8"))
    return pieces


def _label_run(stream: bytes, owner: list[int], labels: list[str]) -> None:
    """Write the characters of one run of byte-level tokens into `labels`: each character on the
    token that holds its first byte (owner[j] is the token of byte j)."""
    pos = 0
    continuation_of: set[int] = set()
    while pos < len(stream):
        n = _utf8_length(stream[pos])
        try:
            if not n or pos + n > len(stream):
                raise UnicodeDecodeError("utf-8", stream[pos:pos + 1], 0, 1, "incomplete")
            ch = stream[pos:pos + n].decode("utf-8")
        except UnicodeDecodeError:
            labels[owner[pos]] += f"\\x{stream[pos]:02x}"
            pos += 1
            continue
        t = owner[pos]
        labels[t] += _VISIBLE.get(ch, ch)
        if owner[pos + n - 1] != t:
            labels[t] += "…"
            continuation_of.update(owner[j] for j in range(pos + 1, pos + n) if owner[j] != t)
        pos += n
    for t in continuation_of:
        labels[t] = "·" + labels[t]


def token_labels(tokenizer, ids) -> list[str]:
    """One readable label per token id (a list or a 1-D tensor).

    Byte-level BPE cuts Chinese characters (3 bytes in UTF-8) across tokens, so decoding one token
    alone gives '\\ufffd'. Here each character is written on the token that holds its first byte;
    '…' marks a character that finishes in the next token(s), a leading '·' marks bytes that finish
    the previous token's character (a token of only such bytes reads '·'), and bytes that are not
    valid UTF-8 show as hex (\\xe4). Special tokens keep their names; space, newline and tab show
    as ␣ ↵ ⇥.
    """
    ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    labels = ["" for _ in ids]
    stream, owner = bytearray(), []
    # a run of byte-level tokens is labelled as one byte stream; a special token ends the run
    for t, piece in enumerate(_token_bytes(tokenizer, ids, tokens) + [None]):
        if piece is not None:
            stream.extend(piece)
            owner.extend([t] * len(piece))
            continue
        _label_run(bytes(stream), owner, labels)
        stream, owner = bytearray(), []
        if t < len(ids):
            labels[t] = tokens[t] if tokens[t] is not None else f"<{ids[t]}>"
    return [lab if lab else "·" for lab in labels]

