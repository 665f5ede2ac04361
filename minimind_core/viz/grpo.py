"""Pictures for reinforcement learning with verifiable rewards (GRPO, 强化学习, lesson 10).

    ppo_vs_grpo_figure()            PPO's four models and learned value baseline next to GRPO's group baseline
    group_figure(rewards, adv)      one prompt's sampled replies: their rewards and group-normalised advantages
    clip_figure(clip_eps)           the clipped surrogate against the probability ratio, and the k3 KL against d
    training_curves_figure(rows)    a GRPO run's reward, share of right replies, KL and reply length by step
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .common import PngFigure


def _box(ax, x, y, text, color, w=0.2, h=0.13):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.01", fc=color, ec="black",
                                lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def _arrow(ax, a, b, text=""):
    ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", lw=0.9))
    if text:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.03, text, ha="center", fontsize=7, color="dimgray")


def ppo_vs_grpo_figure() -> Figure:
    """Left: PPO (a reward model scores one reply, a value model trained alongside the policy predicts
    the baseline). Right: GRPO (G replies per prompt, the group's mean and std are the baseline)."""
    fig = PngFigure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for ax in (left, right):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.axis("off")
    trained, frozen, rule = "#cfe8cf", "#dddddd", "#fde2b8"
    _box(left, 0.15, 0.8, "prompt", "white")
    _box(left, 0.45, 0.8, "policy\n(trained)", trained)
    _box(left, 0.8, 0.8, "reply y", "white")
    _box(left, 0.8, 0.5, "reward model\n(frozen, 1.8B)", frozen, w=0.28)
    _box(left, 0.45, 0.5, "value model\n(trained too)", trained, w=0.26)
    _box(left, 0.15, 0.5, "reference\n(frozen)", frozen)
    _box(left, 0.6, 0.17, "advantage = r - V (per token, GAE)", "white", w=0.55)
    _arrow(left, (0.25, 0.8), (0.35, 0.8))
    _arrow(left, (0.55, 0.8), (0.7, 0.8), "sample 1")
    _arrow(left, (0.8, 0.73), (0.8, 0.57), "r")
    _arrow(left, (0.8, 0.43), (0.7, 0.24))
    _arrow(left, (0.45, 0.43), (0.5, 0.24), "V")
    _arrow(left, (0.2, 0.57), (0.38, 0.73), "KL")
    left.set_title("PPO: four models, a learned baseline", fontsize=11)
    _box(right, 0.15, 0.8, "prompt", "white")
    _box(right, 0.45, 0.8, "policy\n(trained)", trained)
    for k, y in enumerate((0.92, 0.8, 0.68)):
        _box(right, 0.8, y, f"reply {k + 1}" if k < 2 else "reply G", "white", w=0.16, h=0.09)
    _box(right, 0.8, 0.45, "a program checks\neach reply: r_i", rule, w=0.28)
    _box(right, 0.15, 0.45, "reference\n(frozen, KL)", frozen)
    _box(right, 0.6, 0.17, "advantage_i = (r_i - mean r) / std r  (the group)", "white", w=0.62)
    _arrow(right, (0.25, 0.8), (0.35, 0.8))
    _arrow(right, (0.55, 0.8), (0.71, 0.8), "sample G")
    _arrow(right, (0.8, 0.63), (0.8, 0.52))
    _arrow(right, (0.8, 0.38), (0.7, 0.24))
    _arrow(right, (0.2, 0.52), (0.38, 0.73), "KL")
    right.set_title("GRPO: no value model, the group is the baseline", fontsize=11)
    return fig


def group_figure(replies: Sequence[str], rewards: Sequence[float], advantages: Sequence[float],
                 title: str = "") -> Figure:
    """One prompt's G replies: a bar per reply for its reward and for its advantage, labelled by its text."""
    n = len(replies)
    fig = PngFigure(figsize=(10, 0.42 * n + 1.4), layout="constrained")
    a, b = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1, 1]})
    y = np.arange(n)[::-1]
    a.barh(y, rewards, color=["tab:green" if r > 0.5 else "tab:red" for r in rewards])
    a.set_yticks(y)
    a.set_yticklabels([(r if len(r) <= 42 else r[:40] + "…").replace("\n", " ") for r in replies], fontsize=8)
    a.set_xlabel("reward (the program's verdict)")
    b.barh(y, advantages, color=["tab:green" if v > 0 else "tab:red" for v in advantages])
    b.axvline(0, color="black", lw=0.8)
    b.set_xlabel("advantage = (r - group mean) / group std")
    for ax in (a, b):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title or "one group of sampled replies", fontsize=11)
    return fig


def clip_figure(clip_eps: float = 0.2) -> Figure:
    """Left: the clipped surrogate min(ratio A, clip(ratio) A) for A = +1 and A = -1 (flat where the
    gradient is cut). Right: the k3 KL estimate exp(d) - d - 1 against d = ref_logp - logp."""
    fig = PngFigure(figsize=(10, 3.3), layout="constrained")
    left, right = fig.subplots(1, 2)
    ratio = np.linspace(0.2, 2.0, 361)
    for adv, color in ((1.0, "tab:green"), (-1.0, "tab:red")):
        obj = np.minimum(ratio * adv, np.clip(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
        left.plot(ratio, obj, color=color, label=f"A = {adv:+g}")
    for x in (1 - clip_eps, 1 + clip_eps):
        left.axvline(x, color="gray", lw=0.8, ls=":")
    left.axvline(1.0, color="black", lw=0.6)
    left.set_xlabel("ratio = pi(token) / pi_old(token)")
    left.set_ylabel("surrogate (maximised)")
    left.set_title(f"clip at 1 ± {clip_eps:g}: flat = no gradient", fontsize=10)
    left.legend(fontsize=8)
    d = np.linspace(-3, 3, 241)
    right.plot(d, np.exp(d) - d - 1, color="tab:purple", label="k3 = exp(d) - d - 1")
    right.plot(d, -d, color="gray", ls="--", lw=0.9, label="k1 = -d (can be negative)")
    right.axhline(0, color="black", lw=0.6)
    right.set_ylim(-3, 6)
    right.set_xlabel("d = ref_logp - logp (one sampled token)")
    right.set_title("the KL estimate per token", fontsize=10)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return fig


def training_curves_figure(rows: Sequence[Mapping], title: str = "") -> Figure:
    """A GRPO run's metrics rows (metrics.jsonl): reward, share of sampled replies that were right and in
    format, KL to the reference, and reply length, by step (dots: each logged step's batch; lines: the
    mean of the last five)."""
    rows = [r for r in rows if "reward" in r and "kl" in r]
    if not rows:
        raise ValueError("training_curves_figure: no rows with reward and kl (is this a GRPO run?)")
    step = [r["step"] for r in rows]
    fig = PngFigure(figsize=(12, 3), layout="constrained")
    axes = fig.subplots(1, 4)
    panels = [(("reward",), "mean reward of the sampled replies"),
              (("sample_accuracy", "in_format"), "share of sampled replies"),
              (("kl",), "KL to the reference (k3, per token)"),
              (("reply_tokens",), "reply length (tokens)")]
    colors = {"reward": "tab:blue", "sample_accuracy": "tab:green", "in_format": "tab:gray", "kl": "tab:purple",
              "reply_tokens": "tab:orange"}
    for ax, (keys, label) in zip(axes, panels):
        for key in keys:   # each row is one step's batch: noisy; the line is the mean of the last 5 rows
            vals = np.array([float(r[key]) for r in rows])
            smooth = np.array([vals[max(0, i - 4):i + 1].mean() for i in range(len(vals))])
            ax.plot(step, vals, ".", color=colors[key], alpha=0.35)
            ax.plot(step, smooth, color=colors[key], label={"sample_accuracy": "right", "in_format": "closed"}.get(key))
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].legend(fontsize=8)
    fig.suptitle(title or "GRPO on the training half's questions (sampled replies, not greedy)", fontsize=11)
    return fig


__all__ = ["ppo_vs_grpo_figure", "group_figure", "clip_figure", "training_curves_figure"]
