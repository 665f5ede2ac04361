"""Pictures and widgets for lesson 02: token embeddings (词嵌入) and where the parameters sit.

    parameter_breakdown_figure(breakdown)       a bar per component, with counts and shares
    default_word_groups(profile)                groups of words to label (cities, foods, ...)
    projection_figure(points, labels, groups)   a 2-D scatter of labelled words, coloured by group
    place_labels(ax, xy, texts, colours)        labels beside their dots, none over another
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

    Words of one group sit close together (that is the point of the picture), so their labels are
    placed by `place_labels`: each beside its dot where it overlaps no other label or dot, further
    out with a thin leader line when the near spots are taken, and left out (the title says how
    many) where there is no free spot at all.

    `highlight`: {"points": [m, 2], "labels": [...], "name": "..."} drawn as black crosses (a typed
    word and its neighbours); their labels are placed first."""
    pts = torch.as_tensor(points).float().cpu()
    if pts.dim() != 2 or pts.shape[1] != 2 or pts.shape[0] != len(labels) or len(labels) != len(groups):
        raise ValueError(f"points {tuple(pts.shape)}, {len(labels)} labels and {len(groups)} groups must match")
    fig = PngFigure(figsize=(7.5, 6.2), layout="constrained")
    ax = fig.subplots()
    names = list(dict.fromkeys(groups))
    colour = {g: GROUP_COLOURS[gi % len(GROUP_COLOURS)] for gi, g in enumerate(names)}
    xy, texts, colours = [], [], []
    hl_labels = list(highlight.get("labels", [])) if highlight is not None else []
    if hl_labels:
        hp = torch.as_tensor(highlight["points"]).float()
        ax.scatter(hp[:, 0], hp[:, 1], s=60, marker="x", color="black", label=highlight.get("name", "query"),
                   zorder=3)
        xy += [tuple(p) for p in hp.tolist()]
        texts += hl_labels
        colours += ["black"] * len(hl_labels)
    for g in names:
        idx = [i for i, x in enumerate(groups) if x == g]
        ax.scatter(pts[idx, 0], pts[idx, 1], s=36, color=colour[g], label=g)
    xy += [tuple(p) for p in pts.tolist()]
    texts += list(labels)
    colours += [colour[g] for g in groups]
    ax.margins(0.12)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=len(names) + bool(hl_labels), fontsize=9, frameon=False)
    left_out = place_labels(ax, xy, texts, colours, fontsize=9)
    title = title or "token embeddings, projected to 2-D (PCA)"
    if left_out:
        title += f"\n({left_out} of {len(texts)} labels left out: no free spot near their dots)"
    ax.set_title(title, fontsize=10)
    return fig


# where a label may go around its dot: (dx, dy) directions, nearest ring first
_DIRECTIONS = ((1, 0.5), (1, -0.5), (-1, 0.5), (-1, -0.5), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))


def place_labels(ax, xy: Sequence[tuple[float, float]], texts: Sequence[str], colours: Sequence[str],
                 fontsize: float = 9, rings: Sequence[float] = (5, 14, 24, 36)) -> int:
    """Label each point of `xy` (data coordinates) with its text where the text overlaps no other
    label, no dot and stays inside the axes; returns how many labels found no such spot and were
    left out.

    A greedy search of our own, in the spirit of adjustText: for every label in turn, try spots in
    rings of growing distance (in points) around its dot, the nearest first; labels beyond the first
    ring get a thin leader line to their dot. The layout is fixed first (`draw_without_rendering`)
    so that data, pixel and point positions are final; all of them scale alike with the dpi a
    figure is saved at, so a free spot stays free in the PNG."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.draw_without_rendering()
    frame = ax.get_window_extent()
    px_per_pt = fig.dpi / 72
    centres = ax.transData.transform(list(xy)) if len(xy) else []
    dot = 4 * px_per_pt                              # half the side of the box a dot occupies
    taken = [Bbox.from_extents(x - dot, y - dot, x + dot, y + dot) for x, y in centres]
    left_out = 0
    for (x, y), text, colour in zip(centres, texts, colours):
        if not text:
            continue
        probe = ax.text(0, 0, text, fontsize=fontsize)
        ext = probe.get_window_extent()
        probe.remove()
        w, h = ext.width + 2, ext.height + 2
        spot = None
        for ring in rings:
            for dx, dy in _DIRECTIONS:
                cx, cy = x + dx * ring * px_per_pt, y + dy * ring * px_per_pt   # the anchor of the text
                x0 = cx if dx > 0 else cx - w if dx < 0 else cx - w / 2
                y0 = cy if dy > 0 else cy - h if dy < 0 else cy - h / 2
                box = Bbox.from_bounds(x0, y0, w, h)
                inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
                if inside and not any(box.overlaps(t) for t in taken):
                    spot = (dx, dy, ring, box)
                    break
            if spot:
                break
        if spot is None:
            left_out += 1
            continue
        dx, dy, ring, box = spot
        taken.append(box)
        ax.annotate(text, ax.transData.inverted().transform((x, y)), textcoords="offset points",
                    xytext=(dx * ring, dy * ring), fontsize=fontsize, color=colour,
                    ha="left" if dx > 0 else "right" if dx < 0 else "center",
                    va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                    arrowprops=None if ring == rings[0] else
                    {"arrowstyle": "-", "color": colour, "lw": 0.6, "alpha": 0.6, "shrinkA": 0, "shrinkB": 3})
    return left_out


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


__all__ = ["parameter_breakdown_figure", "default_word_groups", "projection_figure", "place_labels", "EmbeddingView",
           "neighbours_html", "embedding_explorer"]
