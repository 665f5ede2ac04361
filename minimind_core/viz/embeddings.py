"""Pictures and widgets for lesson 02: token embeddings (词嵌入) and where the parameters sit.

    parameter_breakdown_figure(breakdown)       a bar per component, with counts and shares
    default_word_groups(profile)                groups of words to label (cities, foods, ...)
    projection_figure(points, labels, groups)   a 2-D scatter of labelled words, coloured by group
    embedding_explorer(model, tokenizer, groups) a word box -> its nearest tokens and the 2-D picture

The numbers behind them live with what they describe: parameter counts and their breakdown by
component in `minimind_core.model`, neighbours, word vectors and PCA in `minimind_core.embeddings`.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ..embeddings import embedding_matrix, nearest_neighbours, pca_basis, word_vector
from ..tokenizer import token_labels
from .common import PngFigure, keep_initial_state, load_widgets, show

# --------------------------------------------------------------------------------------------
# Where the parameters sit
# --------------------------------------------------------------------------------------------

def parameter_breakdown_figure(breakdown: dict[str, int], title: str = "") -> Figure:
    """One horizontal bar per component: its parameters and its share of the total."""
    if not breakdown:
        raise ValueError("the breakdown is empty")
    names = list(breakdown)[::-1]
    values = [breakdown[n] for n in names]
    total = sum(values)
    colours = ["tab:purple" if n.startswith(("embedding", "lm_head")) else
               "tab:blue" if n.startswith("attention") else
               "tab:green" if n.startswith(("MLP", "MoE")) else "tab:gray" for n in names]
    fig = PngFigure(figsize=(8, 0.42 * len(names) + 1.2), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, values, color=colours)
    for y, v in enumerate(values):
        ax.text(v, y, f"  {v:,} ({100 * v / total:.1f}%)", va="center", fontsize=8)
    ax.set_xlim(0, max(values) * 1.45)
    ax.set_xlabel("parameters")
    ax.set_title(title or f"{total:,} parameters", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


# --------------------------------------------------------------------------------------------
# Neighbours and projections
# --------------------------------------------------------------------------------------------

def default_word_groups(profile) -> dict[str, list[tuple[str, str]]]:
    """Groups of (word, label) to show in the embedding picture.

    On the bundled sample corpus: its fictional cities, foods and jobs (English). On MiniMind's
    Chinese data: Chinese cities, foods, numbers and colours, labelled in English (matplotlib's
    default font has no Chinese glyphs)."""
    from ..profiles import SAMPLE_DIR

    if Path(profile.stage("pretrain").data).resolve().parent == SAMPLE_DIR.resolve():
        from ..sample_corpus import CITIES, FOODS, JOBS

        return {"city": [(en, en) for en, _ in CITIES[:10]],
                "food": [(en, en) for en, _ in FOODS[:10]],
                "job": [(en, en) for en, _ in JOBS[:10]]}
    return {
        "city": [("北京", "Beijing"), ("上海", "Shanghai"), ("广州", "Guangzhou"), ("深圳", "Shenzhen"),
                 ("杭州", "Hangzhou"), ("南京", "Nanjing"), ("成都", "Chengdu"), ("武汉", "Wuhan")],
        "food": [("苹果", "apple"), ("香蕉", "banana"), ("米饭", "rice"), ("面条", "noodles"),
                 ("牛奶", "milk"), ("鸡蛋", "egg"), ("西瓜", "watermelon"), ("面包", "bread")],
        "number": [("一", "one"), ("二", "two"), ("三", "three"), ("四", "four"), ("五", "five"),
                   ("六", "six"), ("七", "seven"), ("八", "eight")],
        "colour": [("红色", "red"), ("绿色", "green"), ("蓝色", "blue"), ("黄色", "yellow"),
                   ("黑色", "black"), ("白色", "white")],
    }


GROUP_COLOURS = ["tab:red", "tab:green", "tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink",
                 "tab:olive"]


def projection_figure(points, labels: Sequence[str], groups: Sequence[str], title: str = "",
                      highlight: dict | None = None) -> Figure:
    """A 2-D scatter: one dot per word, coloured by its group, with its label.

    `highlight`: {"points": [m, 2], "labels": [...], "name": "..."} drawn as black crosses (a typed
    word and its neighbours)."""
    pts = torch.as_tensor(points).float().cpu()
    if pts.dim() != 2 or pts.shape[1] != 2 or pts.shape[0] != len(labels) or len(labels) != len(groups):
        raise ValueError(f"points {tuple(pts.shape)}, {len(labels)} labels and {len(groups)} groups must match")
    fig = PngFigure(figsize=(7.5, 6), layout="constrained")
    ax = fig.subplots()
    names = list(dict.fromkeys(groups))
    for gi, g in enumerate(names):
        idx = [i for i, x in enumerate(groups) if x == g]
        ax.scatter(pts[idx, 0], pts[idx, 1], s=36, color=GROUP_COLOURS[gi % len(GROUP_COLOURS)], label=g)
        for i in idx:
            ax.annotate(labels[i], (float(pts[i, 0]), float(pts[i, 1])), textcoords="offset points",
                        xytext=(4, 3), fontsize=8, color=GROUP_COLOURS[gi % len(GROUP_COLOURS)])
    if highlight is not None and len(highlight.get("labels", [])):
        hp = torch.as_tensor(highlight["points"]).float()
        ax.scatter(hp[:, 0], hp[:, 1], s=60, marker="x", color="black", label=highlight.get("name", "query"))
        for (x, y), lab in zip(hp.tolist(), highlight["labels"]):
            ax.annotate(lab, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8, color="black")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(title or "token embeddings, projected to 2-D (PCA)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


class EmbeddingView:
    """The state behind `embedding_explorer`: the labelled words' vectors and their PCA basis.

    `neighbours(word, k)` -> rows (token id, label, cosine); `figure(word, k)` -> the picture with
    the word and its nearest labelled words marked."""

    def __init__(self, model_or_weight, tokenizer, groups: dict):
        self.weight = embedding_matrix(model_or_weight)
        self.tokenizer = tokenizer
        self.words, self.labels, self.groups = [], [], []
        vecs = []
        for g, pairs in groups.items():
            for word, label in pairs:
                vecs.append(word_vector(self.weight, tokenizer, word)[0])
                self.words.append(word)
                self.labels.append(label)
                self.groups.append(g)
        if len(vecs) < 3:
            raise ValueError("need at least 3 labelled words for a 2-D picture")
        self.vectors = torch.stack(vecs)
        self.mean, self.components = pca_basis(self.vectors)
        self.points = self.project(self.vectors)

    def project(self, vectors: torch.Tensor) -> torch.Tensor:
        return (torch.as_tensor(vectors).float() - self.mean) @ self.components.T

    def neighbours(self, word: str, k: int = 8) -> list[tuple[int, str, float]]:
        vec, ids = word_vector(self.weight, self.tokenizer, word)
        query = ids[0] if len(ids) == 1 else vec
        nid, sims = nearest_neighbours(self.weight, query, k, exclude=ids)
        labels = [token_labels(self.tokenizer, [i])[0] for i in nid.tolist()]
        return [(i, lab, float(s)) for i, lab, s in zip(nid.tolist(), labels, sims.tolist())]

    def labelled_neighbours(self, word: str, k: int = 3) -> list[tuple[str, float]]:
        """The `k` labelled words closest to `word` (cosine), itself left out."""
        vec, _ = word_vector(self.weight, self.tokenizer, word)
        sims = F.cosine_similarity(self.vectors, vec[None, :], dim=-1)
        order = [i for i in sims.argsort(descending=True).tolist() if self.words[i] != word][:k]
        return [(self.labels[i], float(sims[i])) for i in order]

    def figure(self, word: str | None = None, k: int = 3) -> Figure:
        highlight = None
        if word:
            vec, ids = word_vector(self.weight, self.tokenizer, word)
            # a labelled word already carries its label; a new word gets one at the cross
            highlight = {"points": self.project(vec[None, :]), "labels": ["" if word in self.words else word],
                         "name": f"'{word}'"}
        return projection_figure(self.points, self.labels, self.groups, highlight=highlight)


def neighbours_html(rows: Sequence[tuple[int, str, float]], word: str, ids: Sequence[int]) -> str:
    head = (f"<b>{html.escape(word)}</b> = token ids {list(ids)}; nearest tokens by cosine similarity:")
    cells = "".join(f"<tr><td>{i}</td><td><code>{html.escape(lab)}</code></td><td>{s:+.3f}</td></tr>"
                    for i, lab, s in rows)
    return f"{head}<table><tr><th>id</th><th>token</th><th>cosine</th></tr>{cells}</table>"


def embedding_explorer(model, tokenizer, groups: dict, word: str | None = None, k: int = 8):
    """A word box: below it the word's nearest tokens (cosine similarity of the input embeddings)
    and the labelled words in 2-D (PCA) with the typed word marked.

    Returns a VBox with `.word` (the Text), `.table` (HTML), `.figure` (the latest figure), `.view`
    (the EmbeddingView) and `.update()` (called whenever the word changes)."""
    widgets = load_widgets()
    view = EmbeddingView(model, tokenizer, groups)
    first = word or next(iter(groups.values()))[0][0]
    text = widgets.Text(value=first, description="word", continuous_update=False)
    table = widgets.HTML()
    out = widgets.Output()
    box = widgets.VBox([text, widgets.HBox([table, out])])
    box.word, box.table, box.out, box.view, box.figure = text, table, out, view, None

    def update(change=None):
        w = text.value.strip()
        if not w:
            table.value = "<b>type a word</b>"
            return None
        _, ids = word_vector(view.weight, tokenizer, w)
        table.value = neighbours_html(view.neighbours(w, k), w, ids)
        box.figure = view.figure(w)
        show(out, box.figure)
        return box.figure

    text.observe(update, names="value")
    box.update = update
    update()
    return keep_initial_state(box, figure=box.figure, html=table.value)


__all__ = ["parameter_breakdown_figure", "default_word_groups", "projection_figure", "EmbeddingView",
           "neighbours_html", "embedding_explorer"]
