"""Pictures and widgets for lesson 01: bytes, BPE merges and the course tokenizer (分词器).

    tokens_html(tokenizer, text)              the text's tokens as coloured boxes, each with its id
    token_summary(tokenizer, text)            characters, UTF-8 bytes, tokens and characters per token
    tokenizer_playground(tokenizer, text)     a text box -> tokens_html, updated as you type
    bytes_html(text)                          each character with its UTF-8 bytes
    merge_table_html(steps)                   the BPE merge table (from bpe.train_bpe_steps)
    merge_progress_figure(steps, n_bytes)     text length and merged-pair count against the merges
    corpus_texts(profile, max_docs)           the texts the profile's tokenizer is trained on
    split_by_language(texts)                  {"zh": [...], "en": [...]} by the share of Chinese characters
    chars_per_token(tokenizer, texts)         characters per token over some texts
    chars_per_token_sweep(train, eval, sizes) train one tokenizer per vocabulary size, measure each
    chars_per_token_figure(sweep)             characters per token against the vocabulary size
"""
from __future__ import annotations

import html
import itertools
from pathlib import Path
from typing import Iterable, Sequence

from matplotlib.figure import Figure

from ..tokenizer import token_labels
from .common import PngFigure, keep_initial_state, load_widgets

# soft background colours, cycled over the tokens (neighbours always differ)
PALETTE = ["#fde2a7", "#c6e5b3", "#bfdcf5", "#f7c6d0", "#d9ccf2", "#c9ece6", "#f5d3b8", "#e3e3b0"]

_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x3000, 0x303F), (0xFF00, 0xFFEF), (0xF900, 0xFAFF))


def is_cjk(ch: str) -> bool:
    """True for a Chinese character or CJK punctuation (。，！ and full-width forms)."""
    o = ord(ch)
    return any(a <= o <= b for a, b in _CJK_RANGES)


# --------------------------------------------------------------------------------------------
# Tokens of a text
# --------------------------------------------------------------------------------------------

def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def tokens_html(tokenizer, text: str, show_ids: bool = True) -> str:
    """The tokens of `text` as coloured boxes, the token id under each.

    Labels come from `token_labels`: a character cut across tokens is written on the token holding
    its first byte, with '…' on that token and '·' on the token(s) that finish it; ␣ is a space and
    ↵ a newline. Hovering a box shows the token's raw bytes.
    """
    ids = _encode(tokenizer, text)
    if not ids:
        return "<i>(no tokens: the text is empty)</i>"
    labels = token_labels(tokenizer, ids)
    raw = tokenizer.convert_ids_to_tokens(ids)
    boxes = []
    for k, (i, lab, tok) in enumerate(zip(ids, labels, raw)):
        colour = PALETTE[k % len(PALETTE)]
        id_line = (f'<br><span style="font-size:70%;color:#555">{i}</span>' if show_ids else "")
        boxes.append(
            f'<span title="id {i}: {html.escape(str(tok))}" style="display:inline-block;text-align:center;'
            f'background:{colour};border-radius:3px;padding:1px 3px;margin:1px;font-family:monospace;'
            f'line-height:1.15">{html.escape(lab)}{id_line}</span>')
    return '<div style="line-height:2.2">' + "".join(boxes) + "</div>"


def token_summary(tokenizer, text: str) -> dict:
    """{"characters", "bytes", "tokens", "chars_per_token", "bytes_per_token"} of `text`."""
    n_tok = len(_encode(tokenizer, text))
    n_chr, n_byt = len(text), len(text.encode("utf-8"))
    return {"characters": n_chr, "bytes": n_byt, "tokens": n_tok,
            "chars_per_token": n_chr / n_tok if n_tok else float("nan"),
            "bytes_per_token": n_byt / n_tok if n_tok else float("nan")}


def render_tokens(tokenizer, text: str) -> str:
    """tokens_html plus a one-line summary: what the playground shows for `text`."""
    s = token_summary(tokenizer, text)
    line = (f'<div style="font-size:90%;color:#333">{s["characters"]} characters, {s["bytes"]} UTF-8 bytes, '
            f'{s["tokens"]} tokens')
    if s["tokens"]:
        line += f' ({s["chars_per_token"]:.2f} characters and {s["bytes_per_token"]:.2f} bytes per token)'
    return tokens_html(tokenizer, text) + line + "</div>"


def tokenizer_playground(tokenizer, text: str = "Hello, MiniMind! 你好，世界。"):
    """A text box; below it the typed text's tokens, coloured, with their ids.

    Returns a VBox with `.text` (the Textarea), `.tokens` (the HTML output) and `.update()`
    (redraws; called on every change of the text)."""
    widgets = load_widgets()
    box_text = widgets.Textarea(value=text, description="text", continuous_update=True,
                                layout=widgets.Layout(width="95%", height="70px"))
    out = widgets.HTML()
    box = widgets.VBox([box_text, out])
    box.text, box.tokens = box_text, out

    def update(change=None):
        out.value = render_tokens(tokenizer, box_text.value)
        return out.value

    box_text.observe(update, names="value")
    box.update = update
    update()
    return keep_initial_state(box, html=out.value)


def bytes_html(text: str) -> str:
    """A table: each character of `text`, its code point and its UTF-8 bytes in hex."""
    rows = []
    for ch in text:
        b = ch.encode("utf-8")
        shown = {" ": "␣", "\n": "↵"}.get(ch, ch)
        rows.append(f"<tr><td style='font-size:120%'>{html.escape(shown)}</td><td>U+{ord(ch):04X}</td>"
                    f"<td><code>{' '.join(f'{x:02x}' for x in b)}</code></td><td>{len(b)}</td></tr>")
    return ("<table><tr><th>character</th><th>code point</th><th>UTF-8 bytes (hex)</th><th>bytes</th></tr>"
            + "".join(rows) + "</table>")


# --------------------------------------------------------------------------------------------
# The BPE merge table
# --------------------------------------------------------------------------------------------

def _show_bytes(b: bytes) -> str:
    """Readable form of a token's bytes: the text where it is valid UTF-8, hex escapes elsewhere."""
    text = b.decode("utf-8", errors="backslashreplace")
    return text.replace(" ", "␣").replace("\n", "↵")


def merge_table_html(steps: Sequence, first: int = 0, last: int | None = None) -> str:
    """The merge table of `bpe.train_bpe_steps`: new id, the pair it merges, the token it spells,
    how often the pair occurred and the text's length (in ids) after the merge."""
    rows = []
    for s in list(steps)[first:last]:
        a, b = s.pair
        rows.append(f"<tr><td>{s.new_id}</td><td><code>({a}, {b})</code></td>"
                    f"<td><code>{html.escape(_show_bytes(s.token))}</code></td><td>{s.count}</td>"
                    f"<td>{s.length}</td></tr>")
    return ("<table><tr><th>new id</th><th>pair merged</th><th>token</th><th>times seen</th>"
            "<th>text length after</th></tr>" + "".join(rows) + "</table>")


def merge_progress_figure(steps: Sequence, n_bytes: int) -> Figure:
    """Left: the text's length in ids after each merge (it starts at `n_bytes`).
    Right: how often the merged pair occurred (the first merges pay off most)."""
    if not steps:
        raise ValueError("no merge steps to plot: the text had no pair that repeats")
    xs = list(range(len(steps) + 1))
    lengths = [n_bytes] + [s.length for s in steps]
    fig = PngFigure(figsize=(10, 3.6), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    ax.plot(xs, lengths, color="tab:blue")
    ax.set_xlabel("merges learnt")
    ax.set_ylabel("length of the text in tokens")
    ax.set_title(f"{n_bytes} bytes -> {lengths[-1]} tokens ({n_bytes / lengths[-1]:.2f} bytes per token)",
                 fontsize=10)
    ax.set_ylim(0, n_bytes * 1.05)
    ax.grid(alpha=0.3)
    ax2.bar(xs[1:], [s.count for s in steps], color="tab:orange", width=1.0)
    ax2.set_xlabel("merge number")
    ax2.set_ylabel("times the merged pair occurred")
    ax2.set_title("each merge saves (times seen) tokens", fontsize=10)
    ax2.grid(alpha=0.3)
    return fig


# --------------------------------------------------------------------------------------------
# Corpus and characters per token
# --------------------------------------------------------------------------------------------

def _read_texts(path: Path, max_docs: int | None) -> list[str]:
    from ..jsonl import iter_records

    texts = []
    for _, rec in itertools.islice(iter_records(path, "pretrain"), max_docs):
        texts.append(rec["text"])
    return texts


def corpus_texts(profile, max_docs: int | None = 200_000) -> list[str]:
    """The texts the profile's tokenizer is trained on.

    On the bundled sample corpus: exactly what `minimind_core/sample/tokenizer` was trained on
    (`sample_corpus.tokenizer_texts` of its pretraining and SFT files). Otherwise (the `full`
    profile): the first `max_docs` documents of the pretraining file, as `course.require_tokenizer`
    does. A missing file raises `course.MissingDataError`, which says how to download it.
    """
    from ..course import require_data
    from ..profiles import SAMPLE_DIR

    pretrain = require_data(profile.stage("pretrain").data)
    if Path(pretrain).resolve().parent == SAMPLE_DIR.resolve():
        from ..jsonl import iter_records
        from ..sample_corpus import tokenizer_texts

        sft = Path(pretrain).parent / "sft.jsonl"
        conversations = [rec for _, rec in iter_records(sft, "sft")] if sft.exists() else []
        return tokenizer_texts([{"text": t} for t in _read_texts(pretrain, max_docs)], conversations)
    return _read_texts(pretrain, max_docs)


def split_by_language(texts: Iterable[str], zh_share: float = 0.3, en_max_share: float = 0.01) -> dict:
    """{"zh": [...], "en": [...]}: texts where at least `zh_share` of the non-space characters are
    Chinese, and texts with (almost) none that are mostly ASCII letters. Mixed texts are left out."""
    out = {"zh": [], "en": []}
    for t in texts:
        chars = [c for c in t if not c.isspace()]
        if not chars:
            continue
        cjk = sum(is_cjk(c) for c in chars) / len(chars)
        if cjk >= zh_share:
            out["zh"].append(t)
        elif cjk <= en_max_share and sum(c.isascii() for c in chars) / len(chars) > 0.9:
            out["en"].append(t)
    return out


def chars_per_token(tokenizer, texts: Sequence[str]) -> float:
    """Characters per token over `texts` (total characters / total tokens, no special tokens)."""
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("no text to measure")
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    n_tok = sum(len(e) for e in enc)
    return sum(len(t) for t in texts) / n_tok


def default_vocab_sizes(vocab_size: int) -> list[int]:
    """Vocabulary sizes to compare: powers of two from 512 to twice `vocab_size`, and `vocab_size`."""
    sizes, v = {vocab_size}, 512
    while v <= 2 * vocab_size:
        sizes.add(v)
        v *= 2
    return sorted(sizes)


def chars_per_token_sweep(train_texts: Sequence[str], eval_texts: dict, vocab_sizes: Sequence[int]) -> dict:
    """Train one byte-level BPE tokenizer per vocabulary size on `train_texts` and measure characters
    per token on each language of `eval_texts` ({"zh": [...], "en": [...]}; empty languages are skipped).

    Returns {vocab_size: {"zh": float, "en": float, "merges": int}}."""
    from ..tokenizer import train_tokenizer

    result = {}
    for v in sorted(vocab_sizes):
        tok = train_tokenizer(train_texts, v)
        row = {lang: chars_per_token(tok, ts) for lang, ts in eval_texts.items() if ts}
        row["vocab"] = len(tok)
        result[v] = row
    return result


def chars_per_token_figure(sweep: dict, mark: int | None = None, reference: dict | None = None) -> Figure:
    """Characters per token of each language against the vocabulary size (log scale).

    `mark`: a vocabulary size to outline (the profile's). `reference`: {"zh": (lo, hi), ...} ranges
    to shade, e.g. MiniMind's published 1.5-1.7 Chinese and 4-5 English characters per 6400-token
    vocabulary."""
    if not sweep:
        raise ValueError("the sweep is empty")
    sizes = sorted(sweep)
    names = {"zh": "Chinese text", "en": "English text"}
    colours = {"zh": "tab:red", "en": "tab:blue"}
    fig = PngFigure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for lang in ("zh", "en"):
        pts = [(v, sweep[v][lang]) for v in sizes if lang in sweep[v]]
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colours[lang], label=names[lang])
        for v, y in pts:
            on_mark = v == mark   # beside the point there, so the dashed line does not cross the label
            ax.annotate(f"{y:.2f}", (v, y), textcoords="offset points", xytext=(6, 4) if on_mark else (0, 6),
                        ha="left" if on_mark else "center", fontsize=8, color=colours[lang],
                        bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.85))
        if reference and lang in reference:
            lo, hi = reference[lang]
            ax.axhspan(lo, hi, color=colours[lang], alpha=0.12,
                       label=f"MiniMind 6400 vocab, {names[lang]}: {lo:g}-{hi:g}")
    if mark is not None:
        ax.axvline(mark, color="0.4", ls="--", lw=1, label=f"this profile's vocab ({mark})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(v) for v in sizes])
    ax.set_xlabel("vocabulary size (log scale)")
    ax.set_ylabel("characters per token")
    top = max(sweep[v][lang] for v in sizes for lang in ("zh", "en") if lang in sweep[v])
    ax.set_ylim(0, top * 1.15)          # room for the value labels
    ax.set_title("Bigger vocabulary, longer tokens (held-out text)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


__all__ = ["tokens_html", "token_summary", "render_tokens", "tokenizer_playground", "bytes_html",
           "merge_table_html", "merge_progress_figure", "corpus_texts", "split_by_language", "chars_per_token",
           "default_vocab_sizes", "chars_per_token_sweep", "chars_per_token_figure", "is_cjk", "PALETTE"]
