"""Pictures and widgets for supervised fine-tuning (监督微调, lesson 05).

    mask_rows(tokenizer, input_ids, labels)        (label, trained, special) for every token
    loss_mask_html(tokenizer, input_ids, labels)   the conversation token by token, trained tokens highlighted
    loss_mask_figure(tokenizer, input_ids, labels) the same as a matplotlib figure (ASCII text reads best:
                                                   the default font has no Chinese glyphs; use the HTML view)
    mask_explorer(tokenizer, conversations)        a slider over conversations, showing each one's loss mask
    comparison_html(prompts, columns)              prompts and the replies of several models side by side
    accuracy_figure(results)                       held-out accuracy and in-format rate of several models
    spread_subset(jsonl_file, n, out_file)         n lines spread evenly over a file (a quicker eval set)

A token is *trained* when its label is not -100: the model is asked to predict it from the tokens
before it (labels are the same length as input_ids; the model shifts them by one itself).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from ..losses import IGNORE_INDEX
from ..tokenizer import token_labels
from .common import PngFigure, bar_label_y, cjk_font, draw_chance, drawable, keep_initial_state

TRAINED_BG = "#b7f0c0"
TRAINED_BORDER = "#1a7f37"
SPECIAL_BG = "#dde3ea"
CELL_CHARS = 7          # characters of 10 pt monospace that fit in one box of the mask figure


def _as_list(x) -> list[int]:
    if isinstance(x, torch.Tensor):
        return [int(v) for v in x.reshape(-1).tolist()]
    return [int(v) for v in x]


def mask_rows(tokenizer, input_ids, labels) -> list[tuple[str, bool, bool]]:
    """One (readable label, trained, special) triple per token.

    Labels come from `tokenizer.token_labels` (byte-level pieces of Chinese characters are
    shown on the token holding the character's first byte; space, newline as ␣ ↵).
    """
    ids, labs = _as_list(input_ids), _as_list(labels)
    if len(ids) != len(labs):
        raise ValueError(f"input_ids has {len(ids)} tokens but labels has {len(labs)}; they must be the same length")
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    names = token_labels(tokenizer, ids)
    return [(name, lab != IGNORE_INDEX, i in special) for name, i, lab in zip(names, ids, labs)]


def loss_mask_html(tokenizer, input_ids, labels, title: str | None = None, show_counts: bool = True) -> str:
    """The conversation token by token as HTML: trained tokens on green, the others plain,
    special tokens on grey; a line break follows every newline token. A legend and the count of
    trained tokens come first."""
    rows = mask_rows(tokenizer, input_ids, labels)
    n_trained = sum(t for _, t, _ in rows)
    parts = []
    for name, trained, special in rows:
        style = ["padding:1px 2px", "margin:1px", "border-radius:3px", "display:inline-block",
                 "font-family:monospace", "font-size:12px", "white-space:pre"]
        if trained:
            style += [f"background:{TRAINED_BG}", f"border:1px solid {TRAINED_BORDER}"]
        else:
            style += ["border:1px solid #ccc", "color:#555"]
            if special:
                style.append(f"background:{SPECIAL_BG}")
        if special:
            style.append("font-weight:bold")
        parts.append(f"<span style='{';'.join(style)}'>{html.escape(name)}</span>")
        if name.endswith("↵"):
            parts.append("<br>")
    head = ""
    if title:
        head += f"<div style='font-weight:bold;margin-bottom:4px'>{html.escape(title)}</div>"
    if show_counts:
        head += (f"<div style='font-size:12px;margin-bottom:4px'>"
                 f"<span style='background:{TRAINED_BG};border:1px solid {TRAINED_BORDER};padding:0 4px'>trained"
                 f"</span> {n_trained} of {len(rows)} tokens (label = the token itself) &nbsp; "
                 f"<span style='border:1px solid #ccc;padding:0 4px;color:#555'>not trained</span> label -100"
                 f"</div>")
    return f"<div style='line-height:1.9'>{head}{''.join(parts)}</div>"


def mask_fonts() -> list[str]:
    """The token boxes' fonts: a monospace font, then the CJK font for Chinese (when there is one)."""
    return ["DejaVu Sans Mono"] + ([cjk_font()] if cjk_font() else [])


def _boxed(label: str, families: list[str]) -> str:
    """Characters none of `families` can draw (a byte piece of a split character, or Chinese
    where no CJK font exists) become '□', instead of an empty box and a warning."""
    return "".join(c if drawable(c, families) else "□" for c in label)


def loss_mask_figure(tokenizer, input_ids, labels, per_row: int = 12, title: str | None = None) -> Figure:
    """A grid of token boxes in reading order, trained ones green: the loss mask as a picture.

    Rows break after `per_row` cells and after every newline token (↵), so each chat message
    starts on its own row as in the rendered text. The text is 10 pt in a figure about as wide as a
    notebook's output (0.8 inch a cell), so it is read at its own size rather than scaled down; a
    label too long for one cell (<|im_start|>) takes two.
    """
    rows = mask_rows(tokenizer, input_ids, labels)
    per_row = max(2, per_row)
    families = mask_fonts()
    cells, r, c = [], 0, 0
    for name, trained, special in rows:
        text = _boxed(name, families)
        span = 1 if len(text) <= CELL_CHARS else 2
        if c + span > per_row:
            r, c = r + 1, 0
        cells.append((r, c, span, text, trained, special))
        c += span
        if name.endswith("↵"):
            r, c = r + 1, 0
    n_rows = (cells[-1][0] + 1) if cells else 1
    fig = PngFigure(figsize=(0.8 * per_row, 0.5 * n_rows + 0.6), layout="constrained")
    ax = fig.subplots()
    for r, c, span, text, trained, special in cells:
        face = TRAINED_BG if trained else (SPECIAL_BG if special else "white")
        edge = TRAINED_BORDER if trained else "#999999"
        ax.add_patch(FancyBboxPatch(
            (c + 0.04, -r - 0.88), span - 0.08, 0.76, boxstyle="round,pad=0.0,rounding_size=0.08",
            facecolor=face, edgecolor=edge, lw=1.2 if trained else 0.6))
        room = CELL_CHARS * span + (span - 1)              # characters that fit at 10 pt
        size = 10 if len(text) <= room else max(7, 10 * room / len(text))
        ax.text(c + span / 2, -r - 0.5, text, ha="center", va="center", fontsize=size,
                family=families[:1] if special else families,  # special tokens are bold: the CJK font has no bold face
                fontweight="bold" if special else "normal", color="black" if trained else "#333333")
    ax.set_xlim(0, per_row)
    ax.set_ylim(-n_rows, 0)
    ax.set_axis_off()
    n_trained = sum(t for _, t, _ in rows)
    fig.suptitle(title or f"loss mask: {n_trained} of {len(rows)} tokens trained (green)", fontsize=12)
    return fig


def mask_explorer(tokenizer, conversations: Sequence, encode: Callable | None = None, seq_len: int = 512):
    """A slider over `conversations` (lists of messages, or records with "conversations") that shows
    each one's loss mask. `encode(messages, tokenizer, seq_len)` -> (input_ids, labels) defaults to
    `minimind_core.datasets.encode_conversation`. Returns the widget box; `.slider` and `.view`
    (an HTML widget) are attributes, and `.render(i)` returns the HTML for conversation i."""
    import ipywidgets as widgets

    if encode is None:
        from ..datasets import encode_conversation as encode
    convs = [c["conversations"] if isinstance(c, dict) else c for c in conversations]
    if not convs:
        raise ValueError("mask_explorer needs at least one conversation")

    def render(i: int) -> str:
        messages = convs[i]
        ids, labels = _pair(encode(messages, tokenizer, seq_len))
        turns = sum(m["role"] == "assistant" for m in messages)
        return loss_mask_html(tokenizer, ids, labels,
                              title=f"conversation {i}: {len(messages)} messages, {turns} assistant turn(s)")

    slider = widgets.IntSlider(value=0, min=0, max=len(convs) - 1, description="conversation",
                               style={"description_width": "initial"})
    view = widgets.HTML(render(0))
    slider.observe(lambda change: setattr(view, "value", render(change["new"])), names="value")
    box = widgets.VBox([slider, view])
    box.slider, box.view, box.render = slider, view, render
    return keep_initial_state(box, html=view.value)


def _pair(encoded):
    """(input_ids, labels) from a tuple or a dict with those keys."""
    if isinstance(encoded, dict):
        return encoded["input_ids"], encoded["labels"]
    ids, labels = encoded[0], encoded[1]
    return ids, labels


# --------------------------------------------------------------------------------------------
# before and after
# --------------------------------------------------------------------------------------------

def comparison_html(prompts: Sequence[str], columns: dict, max_chars: int = 300) -> str:
    """An HTML table: one row per prompt, one column per model ({header: [reply per prompt]}).

    Replies are cut to `max_chars` characters (with '…'); newlines are kept."""
    for header, replies in columns.items():
        if len(replies) != len(prompts):
            raise ValueError(f"column {header!r} has {len(replies)} replies for {len(prompts)} prompts")

    def cell(text):
        text = text if len(text) <= max_chars else text[:max_chars] + "…"
        return (f"<td style='text-align:left;vertical-align:top;white-space:pre-wrap;max-width:420px'>"
                f"{html.escape(text)}</td>")

    head = "<tr><th style='text-align:left'>prompt</th>" + "".join(
        f"<th style='text-align:left'>{html.escape(h)}</th>" for h in columns) + "</tr>"
    body = "".join("<tr>" + cell(p) + "".join(cell(columns[h][i]) for h in columns) + "</tr>"
                   for i, p in enumerate(prompts))
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def accuracy_figure(results: dict, chance: float | None = None, title: str | None = None) -> Figure:
    """Grouped bars: held-out accuracy and in-format rate for each model.

    results: {label: QAResult (or a dict with "accuracy", "in_format", "n")}.
    chance:  drawn as a dashed line on the accuracy group when given.
    """
    labels = list(results)
    if not labels:
        raise ValueError("accuracy_figure needs at least one result")

    def get(r, key):
        return float(r[key] if isinstance(r, dict) else getattr(r, key))

    metrics = [("held-out accuracy", "accuracy"), ("replies in chat format", "in_format")]
    fig = PngFigure(figsize=(7.5, 3.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(labels)
    colors = ["tab:gray", "tab:blue", "tab:green", "tab:orange", "tab:purple"]
    for k, label in enumerate(labels):
        vals = [get(results[label], key) for _, key in metrics]
        xs = np.arange(len(metrics)) + (k - (len(labels) - 1) / 2) * width
        bars = ax.bar(xs, vals, width * 0.95, label=f"{label} (n={int(get(results[label], 'n'))})",
                      color=colors[k % len(colors)])
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, bar_label_y(v, chance), f"{v:.0%}", ha="center", va="bottom",
                    fontsize=9)
    if chance is not None:
        draw_chance(ax, chance)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([m for m, _ in metrics])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("fraction of questions")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=len(labels), fontsize=9, frameon=False)  # below: no bar hidden
    fig.suptitle(title or "before and after supervised fine-tuning", fontsize=11)
    return fig


__all__ = ["mask_rows", "loss_mask_html", "loss_mask_figure", "mask_explorer", "comparison_html",
           "accuracy_figure", "spread_subset"]


def spread_subset(jsonl_file, n: int, out_file) -> Path:
    """Write `n` lines of `jsonl_file`, evenly spread over the file, to `out_file` (returned).

    Eval files are ordered (all English questions, then all Chinese ones), so the first n lines
    would ask only one language; evenly spread lines keep every language and kind in proportion.
    """
    src, out = Path(jsonl_file), Path(out_file)
    lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if n >= len(lines):
        picked = lines
    else:
        picked = [lines[(i * len(lines)) // n] for i in range(n)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(picked) + "\n", encoding="utf-8")
    return out
