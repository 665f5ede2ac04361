"""SFT pictures and widgets: the loss mask drawn token by token, the explorer, the comparison views."""
import io
import json
import warnings

import matplotlib

matplotlib.use("Agg")

import pytest

from minimind_core.datasets import encode_conversation
from minimind_core.evaluate import QAResult
from minimind_core.tokenizer import train_tokenizer
from minimind_core.viz import sft as viz


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["Who are you? I am MiniMind. What is 4 + 4? 4 + 4 = 8.", "你是谁？我是MiniMind。",
             "You are a helpful assistant"] * 30
    return train_tokenizer(texts, 320)


CONV = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am MiniMind."},
        {"role": "user", "content": "What is 4 + 4?"}, {"role": "assistant", "content": "4 + 4 = 8."}]


def _trained_text(tokenizer, ids, labels):
    return tokenizer.decode([i for i, l in zip(ids, labels) if l != -100])


def test_mask_rows_mark_both_assistant_turns(tokenizer):
    ids, labels = encode_conversation(CONV, tokenizer)
    rows = viz.mask_rows(tokenizer, ids, labels)
    assert len(rows) == len(ids)
    assert _trained_text(tokenizer, ids, labels) == "I am MiniMind.<|im_end|>\n4 + 4 = 8.<|im_end|>\n"
    trained_specials = [name for name, trained, special in rows if trained and special]
    assert trained_specials == ["<|im_end|>", "<|im_end|>"]
    assert rows[0] == ("<|im_start|>", False, True)
    with pytest.raises(ValueError, match="same length"):
        viz.mask_rows(tokenizer, ids, labels[:-1])


def test_mask_html_highlights_exactly_the_trained_tokens(tokenizer):
    ids, labels = encode_conversation(CONV, tokenizer)
    html = viz.loss_mask_html(tokenizer, ids, labels, title="two turns")
    n_trained = sum(l != -100 for l in labels)
    # one highlighted span per trained token, plus the legend's swatch
    assert html.count(f"background:{viz.TRAINED_BG}") == n_trained + 1
    assert f"{n_trained} of {len(ids)} tokens" in html
    assert "two turns" in html and "&lt;|im_end|&gt;" in html
    assert html.count("<br>") == sum(name.endswith("↵") for name, _, _ in viz.mask_rows(tokenizer, ids, labels))


def test_mask_html_of_chinese_text(tokenizer):
    conv = [{"role": "user", "content": "你是谁？"}, {"role": "assistant", "content": "我是MiniMind。"}]
    ids, labels = encode_conversation(conv, tokenizer)
    html = viz.loss_mask_html(tokenizer, ids, labels)
    assert "我" in html and "你" in html


def test_mask_figure_draws_one_box_per_token(tokenizer):
    ids, labels = encode_conversation(CONV, tokenizer)
    fig = viz.loss_mask_figure(tokenizer, ids, labels, per_row=10)
    ax = fig.axes[0]
    assert len(ax.patches) == len(ids) == len(ax.texts)
    green = [p for p in ax.patches if matplotlib.colors.to_hex(p.get_facecolor()) == viz.TRAINED_BG]
    assert len(green) == sum(l != -100 for l in labels)
    assert "trained" in fig._suptitle.get_text()
    assert fig._repr_png_()[:4] == b"\x89PNG"


def test_mask_figure_draws_chinese_with_the_cjk_font(tokenizer):
    from minimind_core.viz.common import cjk_font
    from minimind_core.viz.sft import mask_fonts

    assert cjk_font(), "the course's CJK font package is a dependency"
    conv = [{"role": "user", "content": "你是谁？"}, {"role": "assistant", "content": "我是MiniMind。"}]
    ids, labels = encode_conversation(conv, tokenizer)
    fig = viz.loss_mask_figure(tokenizer, ids, labels)
    texts = [t for t in fig.axes[0].texts if "我" in t.get_text()]
    assert texts and texts[0].get_fontfamily() == mask_fonts() == ["DejaVu Sans Mono", cjk_font()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # "Glyph ... missing from font" would raise
        fig.savefig(io.BytesIO(), format="png")


def test_mask_figure_boxes_what_no_font_can_draw():
    from minimind_core.viz.sft import _boxed

    assert _boxed("我是\ue000", ["DejaVu Sans Mono"]) == "□□□"
    assert _boxed("ab我", ["DejaVu Sans Mono"]) == "ab□"


def test_mask_explorer_slider_changes_the_view(tokenizer):
    convs = [{"conversations": CONV}, {"conversations": CONV[:2]}]
    box = viz.mask_explorer(tokenizer, convs, seq_len=64)
    first = box.view.value
    assert "2 assistant turn(s)" in first
    box.slider.value = 1
    assert box.view.value != first and "1 assistant turn(s)" in box.view.value
    assert box.render(1) == box.view.value
    short = viz.mask_explorer(tokenizer, [CONV], seq_len=12)
    assert "of 12 tokens" in short.view.value
    with pytest.raises(ValueError, match="at least one"):
        viz.mask_explorer(tokenizer, [])


def test_comparison_html_escapes_and_cuts():
    html = viz.comparison_html(["<q>", "b"], {"A": ["x" * 500, "y"], "B": ["<|im_end|>", "z"]}, max_chars=100)
    assert "&lt;q&gt;" in html and "&lt;|im_end|&gt;" in html
    assert "x" * 100 + "…" in html and "x" * 101 not in html
    assert html.count("<tr>") == 3
    with pytest.raises(ValueError, match="has 1 replies for 2 prompts"):
        viz.comparison_html(["a", "b"], {"A": ["x"]})


def test_accuracy_figure_bars_and_chance():
    results = {"pretrained": QAResult(accuracy=0.1, n_correct=1, n=10, in_format=0.0),
               "after SFT": {"accuracy": 0.6, "in_format": 1.0, "n": 10}}
    fig = viz.accuracy_figure(results, chance=0.08)
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 2) for p in ax.patches)
    assert heights == [0.0, 0.1, 0.6, 1.0]
    assert any("chance 8%" in t.get_text() for t in ax.texts)         # labelled outside the axes, on the right
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["pretrained (n=10)", "after SFT (n=10)"]
    # the 10% label of the pretrained bar would sit on the 8% chance line: it goes above the line
    ten = next(t for t in ax.texts if t.get_text() == "10%")
    assert ten.get_position()[1] > 0.08
    with pytest.raises(ValueError):
        viz.accuracy_figure({})


def test_spread_subset_keeps_both_ends(tmp_path):
    src = tmp_path / "eval.jsonl"
    src.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(10)) + "\n", encoding="utf-8")
    out = viz.spread_subset(src, 4, tmp_path / "sub.jsonl")
    got = [json.loads(line)["i"] for line in out.read_text().splitlines()]
    assert got == [0, 2, 5, 7]
    assert len(viz.spread_subset(src, 50, tmp_path / "all.jsonl").read_text().splitlines()) == 10
    with pytest.raises(ValueError):
        viz.spread_subset(src, 0, tmp_path / "none.jsonl")
