"""Pictures for preference alignment with DPO (偏好对齐, lesson 08).

    bradley_terry_figure(beta)        P(chosen wins) and the DPO loss against the policy's log-ratio gap
    reward_curves_figure(rows)        a DPO run's logged loss, reward accuracy and reward margin by step
    beta_sweep_figure(results)        what beta does: the targeted questions, the held-out facts and the
                                      drift from the reference, one group of bars per beta
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .common import PngFigure, percent_bars


def bradley_terry_figure(betas: Sequence[float] = (0.1, 1.0)) -> Figure:
    """Left: the Bradley-Terry probability sigmoid(r_c - r_r). Right: the DPO loss -log sigmoid(beta x)
    against x = how much more the policy than the reference prefers the chosen reply."""
    fig = PngFigure(figsize=(9, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    d = np.linspace(-6, 6, 241)
    left.plot(d, 1 / (1 + np.exp(-d)), color="tab:blue")
    left.axhline(0.5, color="gray", lw=0.8, ls=":")
    left.set_xlabel("reward difference r(chosen) - r(rejected)")
    left.set_ylabel("P(chosen is preferred)")
    left.set_title("Bradley-Terry", fontsize=10)
    x = np.linspace(-30, 30, 241)
    for beta in betas:
        right.plot(x, np.logaddexp(0, -beta * x), label=f"beta = {beta:g}")
    right.axhline(np.log(2), color="gray", lw=0.8, ls=":")
    right.text(x[0], np.log(2) + 0.1, "ln 2: policy = reference", fontsize=8, color="gray")
    right.set_xlabel("(log-ratio of chosen) - (log-ratio of rejected)")
    right.set_ylabel("DPO loss")
    right.set_ylim(0, 4)
    right.set_title("the DPO loss flattens once a pair is ranked right", fontsize=10)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return fig


def reward_curves_figure(rows: Sequence[Mapping], title: str = "") -> Figure:
    """A DPO run's metrics rows (metrics.jsonl): loss, reward accuracy and reward margin by step."""
    rows = [r for r in rows if "reward_accuracy" in r]
    if not rows:
        raise ValueError("reward_curves_figure: no rows with reward_accuracy (is this a DPO run?)")
    step = [r["step"] for r in rows]
    fig = PngFigure(figsize=(10, 3), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, key, label in zip(axes, ("loss", "reward_accuracy", "reward_margin"),
                              ("DPO loss (ln 2 at the start)", "reward accuracy (training pairs)",
                               "reward margin (training pairs)")):
        ax.plot(step, [r[key] for r in rows], marker=".", color="tab:purple")
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].axhline(np.log(2), color="gray", lw=0.8, ls=":")
    axes[1].set_ylim(-0.05, 1.05)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


_MEASURES = (("style", "style: the targeted remark", "tab:purple"),
             ("facts", "facts right (the tax)", "tab:green"))


def style_tax_figure(rows: Mapping[str, Mapping[str, float]], title: str = "") -> Figure:
    """rows: {model name: {"style": fraction, "facts": fraction}}, measured on the same held-out
    questions: how often each model's replies have the targeted style, and how many facts it keeps."""
    names = list(rows)
    fig = PngFigure(figsize=(7.5, 3.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    for k, (key, label, color) in enumerate(_MEASURES):
        percent_bars(ax, x, [float(rows[n][key]) for n in names], k, label, color)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("share of held-out replies")
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or "the style DPO adds, and the facts it costs", fontsize=11)
    return fig


def beta_sweep_figure(results: Mapping[float, Mapping[str, float]], baseline: Mapping[str, float] | None = None,
                      title: str = "") -> Figure:
    """results: {beta: {"style": fraction, "facts": fraction, "drift": nats}}; baseline: the SFT
    model's "style" and "facts" (dotted lines). Left: the targeted style and the facts on held-out
    questions; right: drift from the reference."""
    betas = list(results)
    fig = PngFigure(figsize=(9.5, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    x = np.arange(len(betas))
    for k, (key, label, color) in enumerate(_MEASURES):
        percent_bars(left, x, [float(results[b][key]) for b in betas], k, label, color)
        if baseline is not None and key in baseline:
            left.axhline(float(baseline[key]), color=color, lw=1, ls=":")
    left.set_xticks(x)
    left.set_xticklabels([f"beta {b:g}" for b in betas])
    left.set_ylim(0, 1.3)
    left.set_ylabel("share of replies (dotted: SFT model)")
    left.legend(fontsize=8, loc="upper center", ncol=2)
    left.grid(axis="y", alpha=0.3)
    right.bar(x, [float(results[b]["drift"]) for b in betas], 0.5, color="tab:orange")
    right.set_xticks(x)
    right.set_xticklabels([f"{b:g}" for b in betas])
    right.set_xlabel("beta")
    right.set_ylabel("nats per token")
    right.set_title("drift from the reference\n(mean |log-prob change|, held-out answers)", fontsize=9)
    right.grid(axis="y", alpha=0.3)
    fig.suptitle(title or "what beta does", fontsize=11)
    return fig


__all__ = ["bradley_terry_figure", "reward_curves_figure", "style_tax_figure", "beta_sweep_figure"]
