"""Sampling pictures: the distributions are filter_logits', the figures and the explorer follow them."""
import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from minimind_core.evaluate import QARow, summarise
from minimind_core.generate import filter_logits
from minimind_core.viz import sampling as viz
from minimind_core.viz.common import cjk_font


def _logits(v=50, seed=0):
    return torch.randn(v, generator=torch.Generator().manual_seed(seed)) * 3


def test_filter_stages_follow_filter_logits():
    z = _logits()
    stages = viz.filter_stages(z, temperature=0.7, top_k=10, top_p=0.8)
    assert list(stages) == ["logits (T = 1)", "temperature 0.7", "top-k = 10", "top-p = 0.8"]
    for p in stages.values():
        assert math.isclose(float(p.sum()), 1.0, rel_tol=1e-5)
    torch.testing.assert_close(stages["top-p = 0.8"], filter_logits(z[None], 0.7, 10, 0.8)[0].softmax(-1))
    assert int((stages["top-k = 10"] > 0).sum()) == 10
    assert int((stages["top-p = 0.8"] > 0).sum()) <= 10
    # T = 1 and no filters: only the raw distribution
    assert list(viz.filter_stages(z)) == ["logits (T = 1)"]
    with pytest.raises(ValueError, match="shape \\[vocab\\]"):
        viz.filter_stages(z[None])


def test_entropy_bounds():
    assert viz.entropy(torch.tensor([1.0, 0, 0])) == 0
    assert math.isclose(viz.entropy(torch.full((8,), 1 / 8)), math.log(8))
    z = _logits()
    hot, cold = (viz.entropy(filter_logits(z[None], t)[0].softmax(-1)) for t in (2.0, 0.5))
    assert hot > cold


def test_next_token_logits_is_the_last_position(tiny_model):
    ids = torch.tensor([5, 9, 13, 2])
    z = viz.next_token_logits(tiny_model, ids)
    with torch.no_grad():
        torch.testing.assert_close(z, tiny_model(ids[None]).logits[0, -1])
    with pytest.raises(ValueError, match="non-empty prompt"):
        viz.next_token_logits(tiny_model, torch.zeros(0, dtype=torch.long))


def test_distribution_figure_colours_removed_tokens():
    z = _logits()
    stages = viz.filter_stages(z, 1.0, top_k=5)
    fig = viz.distribution_figure(stages, [f"t{i}" for i in range(50)], n=12)
    raw_ax, k_ax = fig.axes
    assert len(raw_ax.patches) == 12 and len(k_ax.patches) == 12
    grey = [p for p in k_ax.patches if matplotlib.colors.to_hex(p.get_facecolor()) == viz.REMOVED]
    assert len(grey) == 7                                       # 12 shown, 5 kept
    assert "5 of 50 tokens kept" in k_ax.get_title()
    top = int(z.argmax())
    assert raw_ax.get_xticklabels()[0].get_text() == f"t{top}"   # most likely first


def test_undrawable_labels_fall_back_to_ids():
    z = _logits(10)
    labels = ["\u4e2d\u6587"] * 10                              # Chinese: drawable only with a CJK font
    fig = viz.distribution_figure(viz.filter_stages(z), labels, n=3)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    if cjk_font() is None:
        assert ticks == [f"#{int(i)}" for i in torch.topk(z, 3).indices]


def test_temperature_figure_has_a_panel_per_temperature():
    fig = viz.temperature_figure(_logits(), (0.5, 1.0, 2.0), n=8)
    assert [a.get_title().split("\n")[0] for a in fig.axes] == ["T = 0.5", "T = 1", "T = 2"]
    tops = [max(p.get_height() for p in a.patches) for a in fig.axes]
    assert tops[0] > tops[1] > tops[2]                          # cooler = sharper


def test_sampling_explorer_reacts_to_sliders():
    box = viz.sampling_explorer(_logits(), [f"t{i}" for i in range(50)], top_k=0, top_p=1.0, temperature=1.0)
    assert list(box.stages) == ["logits (T = 1)"]
    assert box.temperature.style.description_width == "initial"   # "temperature" in full, not "temperat…"
    assert "50 tokens can be sampled" in box.summary.value
    box.top_k.value = 7
    assert "7 tokens can be sampled" in box.summary.value
    assert len(box.figure.axes) == 2
    box.top_p.value = 0.3
    box.temperature.value = 0.5
    assert list(box.stages)[-1] == "top-p = 0.3" and len(box.figure.axes) == 4
    kept = int((box.stages["top-p = 0.3"] > 0).sum())
    assert f"{kept} tokens can be sampled" in box.summary.value


def _result(correct, fmt, langs=("en", "zh")):
    rows = [QARow(question="q", expected="a", reply="r", correct=c, in_format=f, kind="city", lang=langs[i % 2])
            for i, (c, f) in enumerate(zip(correct, fmt))]
    return summarise(rows)


def test_comparison_rows_table_and_chart():
    results = {"pretrain": _result([0, 0, 0, 1], [0, 0, 0, 0]), "sft": _result([1, 1, 0, 1], [1, 1, 1, 1])}
    rows = viz.comparison_rows(results)
    assert rows[0] == {"checkpoint": "pretrain", "accuracy": 0.25, "n_correct": 1, "n": 4, "in_format": 0.0,
                       "accuracy en": 0.0, "accuracy zh": 0.5}
    assert rows[1]["accuracy"] == 0.75 and rows[1]["in_format"] == 1.0
    table = viz.comparison_table_html(rows)
    assert table.count("<tr>") == 3 and "75.0%" in table and "<th>accuracy zh</th>" in table
    # QAResult.to_dict() works too
    assert viz.comparison_rows({"sft": results["sft"].to_dict()})[0] == rows[1]
    fig = viz.accuracy_figure(results, chance=0.1)
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert heights == [0.0, 0.25, 0.75, 1.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["pretrain\n(1/4)", "sft\n(3/4)"]
    assert any("chance 10%" in t.get_text() for t in ax.texts)


def test_perplexity_figure_log_scale():
    fig = viz.perplexity_figure({"pretrain": {"text": 12.0, "replies": 80.0}, "sft": {"text": 14.0, "replies": 6.0}})
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert sorted(p.get_height() for p in ax.patches) == [6.0, 12.0, 14.0, 80.0]
    assert {t.get_text() for t in ax.texts} >= {"12.0", "80.0", "6.0"}
    with pytest.raises(ValueError):
        viz.perplexity_figure({})
