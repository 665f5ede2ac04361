"""Pictures for lesson 07 (sampling and evaluation, 采样与评测).

    next_token_logits(model, input_ids)             the logits of the token after the prompt [vocab]
    filter_stages(logits, temperature, top_k, top_p)  the next-token distribution after each step of
                                                    `generate.filter_logits`: {stage: probabilities}
    entropy(probs)                                  entropy in nats (how spread out a distribution is)
    distribution_figure(stages, labels, n)          one bar chart per stage, the same top-n tokens in each
    temperature_figure(logits, temperatures, labels, n)   the distribution at several temperatures
    sampling_explorer(logits, labels)               sliders for temperature, top-k, top-p -> the bars
    comparison_rows(results)                        one row per checkpoint: accuracy, in-format rate, ...
    comparison_table_html(rows)                     those rows as an HTML table
    accuracy_figure(results)                        accuracy and in-format rate per checkpoint (bars)
    perplexity_figure(table)                        perplexity per checkpoint and text (bars, log scale)

Every distribution here is computed with the library's own `filter_logits`, so the bars show
exactly what `generate` samples from.
"""
from __future__ import annotations

import html
import math
from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..generate import filter_logits
from ..tokenizer import token_labels
from .common import (FULL_LABEL, PngFigure, bar_label_y, draw_chance, drawable, font_families, keep_initial_state,
                     load_widgets, show)

KEPT = "#2f6db5"
REMOVED = "#c9c9c9"


# --------------------------------------------------------------------------------------------
# distributions
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def next_token_logits(model, input_ids) -> torch.Tensor:
    """float32 logits [vocab] of the token that follows `input_ids` ([seq] or [1, seq])."""
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[0] != 1 or ids.shape[1] == 0:
        raise ValueError(f"expected one non-empty prompt of shape [seq] or [1, seq], got {tuple(ids.shape)}")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        return model(ids.to(device)).logits[0, -1].float().cpu()
    finally:
        model.train(was_training)


def filter_stages(logits, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> dict[str, torch.Tensor]:
    """The next-token probabilities after each step of sampling, in the order `generate` applies them.

    Keys: "logits (T = 1)", then "temperature T" when T != 1, "top-k = k" when top_k is set and
    "top-p = p" when top_p is set (each step on top of the previous ones). Removed tokens have
    probability 0; every value is a [vocab] float tensor that sums to 1.
    """
    z = torch.as_tensor(logits).detach().float().cpu()
    if z.dim() != 1:
        raise ValueError(f"expected the logits of one position, shape [vocab], got {tuple(z.shape)}")
    stages = {"logits (T = 1)": z.softmax(-1)}
    if temperature != 1.0:
        stages[f"temperature {temperature:g}"] = filter_logits(z[None], temperature)[0].softmax(-1)
    if top_k:
        stages[f"top-k = {top_k}"] = filter_logits(z[None], temperature, top_k)[0].softmax(-1)
    if top_p is not None and 0 < top_p < 1:
        stages[f"top-p = {top_p:g}"] = filter_logits(z[None], temperature, top_k, top_p)[0].softmax(-1)
    return stages


def entropy(probs) -> float:
    """Entropy of a distribution in nats: 0 when one token has everything, ln(V) when all are equal."""
    p = torch.as_tensor(probs).double()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def _labels(labels, n_vocab: int) -> list[str]:
    if labels is None:
        return [f"#{i}" for i in range(n_vocab)]
    return list(labels)


def vocab_labels(tokenizer, ids) -> list[str]:
    """A readable label for each id in `ids`, decoded one token at a time (see tokenizer.token_labels)."""
    return [token_labels(tokenizer, [int(i)])[0] for i in ids]


def _tick(label: str, token_id: int, families: list[str]) -> str:
    """The label when the installed fonts can draw it, else the token id."""
    return label if label and drawable(label, families) else f"#{token_id}"


def distribution_figure(stages: Mapping[str, torch.Tensor], labels=None, n: int = 20, title: str = "",
                        token_ids: Sequence[int] | None = None) -> Figure:
    """One bar chart per stage (a row of panels), the same `n` tokens in each: the most likely
    tokens of the first stage, most likely first. Kept tokens are blue, removed ones grey (their
    bar shows where they stood before filtering). `labels` maps every token id to its text (or give
    `token_ids` and labels for just those ids). Each panel's title says how many tokens of the
    whole vocabulary survive and the entropy of the distribution."""
    if not stages:
        raise ValueError("no stages to draw")
    names = list(stages)
    first = torch.as_tensor(stages[names[0]]).float()
    if token_ids is None:
        token_ids = torch.topk(first, min(n, first.numel())).indices.tolist()
        tick_labels = [_labels(labels, first.numel())[i] for i in token_ids]
    else:
        token_ids = [int(i) for i in token_ids][:n]
        tick_labels = list(labels)[:len(token_ids)] if labels is not None else [f"#{i}" for i in token_ids]
    families = font_families()
    ticks = [_tick(lab, i, families) for lab, i in zip(tick_labels, token_ids)]
    # at most three panels a row (two for four) in a figure about as wide as a notebook's output,
    # so that the 9-10 pt text is shown at its own size instead of scaled down to fit
    ncols = len(names) if len(names) <= 3 else 2 if len(names) == 4 else 3
    nrows = math.ceil(len(names) / ncols)
    fig = PngFigure(figsize=(7.0 if ncols == 1 else 9.6, 3.9 * nrows), layout="constrained")
    grid = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    axes = list(grid.flat)[:len(names)]
    for ax in list(grid.flat)[len(names):]:
        ax.remove()
    x = np.arange(len(token_ids))
    for ax, name in zip(axes, names):
        p = torch.as_tensor(stages[name]).float()
        shown = p[token_ids].numpy()
        kept = shown > 0
        before = first[token_ids].numpy()
        ax.bar(x[~kept], before[~kept], color=REMOVED, width=0.8, label="removed")
        ax.bar(x[kept], shown[kept], color=KEPT, width=0.8, label="kept")
        n_kept = int((p > 0).sum())
        ax.set_title(f"{name}\n{n_kept:,} of {p.numel():,} tokens kept, entropy {entropy(p):.2f}", fontsize=10)
        ax.set_xticks(x, ticks, rotation=90, fontsize=9, fontfamily=families)
        ax.tick_params(axis="y", labelsize=9)
        ax.set_xlim(-0.6, len(token_ids) - 0.4)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[::ncols]:
        ax.set_ylabel("probability of the next token", fontsize=9)
    if any((torch.as_tensor(stages[k])[token_ids] == 0).any() for k in names):
        axes[-1].legend(loc="upper right", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def temperature_figure(logits, temperatures: Sequence[float] = (0.5, 1.0, 2.0), labels=None, n: int = 20,
                       title: str = "") -> Figure:
    """The distribution softmax(logits / T) for each T, the same top-n tokens in every panel."""
    z = torch.as_tensor(logits).detach().float().cpu()
    stages = {f"T = {t:g}": filter_logits(z[None], t)[0].softmax(-1) for t in temperatures}
    ids = torch.topk(z, min(n, z.numel())).indices.tolist()
    labs = _labels(labels, z.numel())
    return distribution_figure(stages, [labs[i] for i in ids], n=n, title=title, token_ids=ids)


# --------------------------------------------------------------------------------------------
# explorer
# --------------------------------------------------------------------------------------------

def sampling_summary(logits, temperature: float, top_k: int | None, top_p: float | None) -> str:
    """One line: how many tokens survive, the top token's probability, the entropy."""
    p = filter_stages(logits, temperature, top_k, top_p)
    final = list(p.values())[-1]
    return (f"{int((final > 0).sum()):,} tokens can be sampled; the most likely has probability "
            f"{float(final.max()):.3f}; entropy {entropy(final):.2f} nats "
            f"(before any filter: {entropy(list(p.values())[0]):.2f})")


def sampling_explorer(logits, labels=None, n: int = 20, temperature: float = 0.85, top_k: int = 0,
                      top_p: float = 0.85):
    """Sliders for temperature, top-k (0 = off) and top-p (1 = off) over fixed logits -> the bars
    of `distribution_figure` for every stage.

    Returns a VBox with `.temperature`, `.top_k`, `.top_p` (the sliders), `.summary` (an HTML line),
    `.figure` (the latest figure), `.stages` (the latest distributions) and `.update()`."""
    widgets = load_widgets()
    z = torch.as_tensor(logits).detach().float().cpu()
    t_slider = widgets.FloatSlider(value=temperature, min=0.05, max=3.0, step=0.05, description="temperature",
                                   continuous_update=False, style=FULL_LABEL)
    k_slider = widgets.IntSlider(value=top_k, min=0, max=min(200, z.numel()), description="top-k",
                                 continuous_update=False, style=FULL_LABEL)
    p_slider = widgets.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05, description="top-p",
                                   continuous_update=False, style=FULL_LABEL)
    summary = widgets.HTML()
    out = widgets.Output()
    box = widgets.VBox([widgets.HBox([t_slider, k_slider, p_slider]), summary, out])
    box.temperature, box.top_k, box.top_p, box.summary, box.out = t_slider, k_slider, p_slider, summary, out
    box.figure, box.stages = None, None
    labs = _labels(labels, z.numel())

    def update(change=None):
        k = k_slider.value or None
        p = p_slider.value if p_slider.value < 1.0 else None
        box.stages = filter_stages(z, t_slider.value, k, p)
        summary.value = html.escape(sampling_summary(z, t_slider.value, k, p))
        box.figure = distribution_figure(box.stages, labs, n=n)
        show(out, box.figure)
        return box.figure

    for w in (t_slider, k_slider, p_slider):
        w.observe(update, names="value")
    box.update = update
    update()
    return keep_initial_state(box, figure=box.figure, html=summary.value)


# --------------------------------------------------------------------------------------------
# comparing checkpoints
# --------------------------------------------------------------------------------------------

def _get(result, key):
    return result[key] if isinstance(result, Mapping) else getattr(result, key)


def comparison_rows(results: Mapping[str, object]) -> list[dict]:
    """One row per checkpoint from {name: QAResult (or its to_dict())}: name, accuracy, n_correct,
    n, in_format, and the accuracy per language (keys "accuracy en", "accuracy zh", ...)."""
    rows = []
    for name, r in results.items():
        row = {"checkpoint": name, "accuracy": float(_get(r, "accuracy")), "n_correct": int(_get(r, "n_correct")),
               "n": int(_get(r, "n")), "in_format": float(_get(r, "in_format"))}
        for lang, g in sorted((_get(r, "by_lang") or {}).items()):
            row[f"accuracy {lang or '?'}"] = float(g["accuracy"])
        rows.append(row)
    return rows


def comparison_table_html(rows: Sequence[dict]) -> str:
    """The rows of `comparison_rows` as an HTML table (fractions as percentages)."""
    if not rows:
        raise ValueError("no rows")
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)

    def cell(v):
        if isinstance(v, float) and 0 <= v <= 1:
            return f"{100 * v:.1f}%"
        return html.escape(str(v))

    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def accuracy_figure(results: Mapping[str, object], chance: float | None = None, title: str = "") -> Figure:
    """Grouped bars per checkpoint: held-out accuracy and in-format rate (the share of replies that
    the model closed with <|im_end|>); a dashed line at `chance` when given."""
    rows = comparison_rows(results)
    if not rows:
        raise ValueError("no results to draw")
    fig = PngFigure(figsize=(max(5.0, 1.9 * len(rows) + 2), 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(rows))
    w = 0.38
    for offset, key, color, label in ((-w / 2, "accuracy", KEPT, "held-out accuracy"),
                                      (w / 2, "in_format", "#e08a2b", "in format (closed with <|im_end|>)")):
        vals = [r[key] for r in rows]
        bars = ax.bar(x + offset, vals, w, color=color, label=label)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, bar_label_y(v, chance), f"{100 * v:.0f}%", ha="center",
                    va="bottom", fontsize=9)
    if chance is not None:
        draw_chance(ax, chance)
    ax.set_xticks(x, [f"{r['checkpoint']}\n({r['n_correct']}/{r['n']})" for r in rows])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("fraction of questions")
    fig.legend(loc="outside lower center", ncol=2, fontsize=9, frameon=False)  # below the axes: no bar hidden
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "Held-out questions, greedy replies", fontsize=10)
    return fig


def perplexity_figure(table: Mapping[str, Mapping[str, float]], title: str = "") -> Figure:
    """Bars of perplexity, log scale: {checkpoint: {text name: perplexity}}, grouped by text."""
    names = list(table)
    if not names:
        raise ValueError("no perplexities to draw")
    texts = []
    for d in table.values():
        texts += [t for t in d if t not in texts]
    fig = PngFigure(figsize=(max(5.0, 2.4 * len(texts) + 2), 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(texts))
    w = 0.8 / len(names)
    colors = ["#8c8c8c", KEPT, "#e08a2b", "#3a9e5c", "#9b59b6"]
    for i, name in enumerate(names):
        vals = [table[name].get(t, math.nan) for t in texts]
        bars = ax.bar(x - 0.4 + w * (i + 0.5), vals, w, label=name, color=colors[i % len(colors)])
        for b, v in zip(bars, vals):
            if not math.isnan(v):
                ax.text(b.get_x() + b.get_width() / 2, v * 1.05, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(bottom=1.0)          # perplexity is at least 1 (a model that is always sure and right)
    ax.set_xticks(x, texts)
    ax.set_ylabel("perplexity (lower is better, log scale)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.set_title(title or "Perplexity = exp(mean NLL per predicted token)", fontsize=10)
    return fig


__all__ = ["next_token_logits", "filter_stages", "entropy", "vocab_labels", "distribution_figure",
           "temperature_figure", "sampling_summary", "sampling_explorer", "comparison_rows",
           "comparison_table_html", "accuracy_figure", "perplexity_figure"]
