"""Lesson 02 pictures and widgets: the parameter breakdown figure, the word picture, the explorer."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from conftest import small_config  # noqa: E402
from minimind_core import MiniMindForCausalLM  # noqa: E402
from minimind_core.viz import embeddings as viz  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    from minimind_core.tokenizer import train_tokenizer

    texts = ["apples and pears and plums", "Halden and Selstead are cities", "the baker and the farmer",
             "你好，世界！"] * 20
    return train_tokenizer(texts, 300)


def test_breakdown_figure():
    b = {"embedding": 100, "attention q": 50, "norms": 2}
    fig = viz.parameter_breakdown_figure(b, "demo")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [p.get_width() for p in ax.patches] == [2, 50, 100]
    assert any("65.8%" in t.get_text() for t in ax.texts)
    with pytest.raises(ValueError):
        viz.parameter_breakdown_figure({})


def test_default_word_groups():
    from minimind_core import get_profile

    sample = viz.default_word_groups(get_profile("smoke"))
    assert set(sample) == {"city", "food", "job"}
    assert ("Halden", "Halden") in sample["city"]
    full = viz.default_word_groups(get_profile("full"))
    assert all(label.isascii() for pairs in full.values() for _, label in pairs)


def test_explorer_updates_neighbours_and_figure(tokenizer):
    torch.manual_seed(0)
    model = MiniMindForCausalLM(small_config(vocab_size=len(tokenizer))).eval()
    groups = {"food": [("apples", "apples"), ("plums", "plums")], "city": [("Halden", "Halden"),
                                                                      ("Selstead", "Selstead")]}
    box = viz.embedding_explorer(model, tokenizer, groups, k=5)
    fig1 = box.figure
    assert isinstance(fig1, Figure)
    assert box.table.value.count("<tr>") == 6                     # header + 5 neighbours
    assert "apples" in box.table.value
    box.word.value = "baker"
    assert box.figure is not fig1
    assert "baker" in box.table.value
    # the typed word (not a labelled one) is marked and labelled on the picture
    texts = [t.get_text() for t in box.figure.axes[0].texts]
    assert "baker" in texts and "Halden" in texts
    ids = tokenizer.encode(" baker", add_special_tokens=False)
    rows = box.view.neighbours("baker", 5)
    assert not set(ids) & {r[0] for r in rows}                    # the word's own tokens left out
    box.word.value = "   "
    assert "type a word" in box.table.value


def test_projection_figure_checks_sizes():
    with pytest.raises(ValueError, match="must match"):
        viz.projection_figure(torch.zeros(3, 2), ["a", "b"], ["g", "g"])


def _label_boxes(fig):
    from matplotlib.text import Text

    fig.draw_without_rendering()
    return [Text.get_window_extent(t) for t in fig.axes[0].texts]   # the text itself, without its leader line


def test_projection_labels_never_overlap_and_crowded_ones_are_counted():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(12, 2, generator=g) * 3                    # room for every label
    fig = viz.projection_figure(spread, [f"word{i}" for i in range(12)], ["a"] * 6 + ["b"] * 6)
    boxes = _label_boxes(fig)
    assert len(boxes) == 12 and "left out" not in fig.axes[0].get_title()
    crowded = torch.cat([torch.randn(30, 2, generator=g) * 0.01, torch.tensor([[5.0, 5.0]])])   # 30 dots on one spot
    labels = [f"city{i}" for i in range(31)]
    fig = viz.projection_figure(crowded, labels, ["c"] * 31)
    boxes = _label_boxes(fig)
    shown = [t.get_text() for t in fig.axes[0].texts]
    assert "city30" in shown and 4 <= len(shown) < 31              # the lone dot keeps its label; the pile cannot
    assert f"({31 - len(shown)} of 31 labels left out" in fig.axes[0].get_title()
    frame = fig.axes[0].get_window_extent()
    for i, a in enumerate(boxes):
        assert frame.x0 <= a.x0 and a.x1 <= frame.x1 + 1 and frame.y0 <= a.y0 and a.y1 <= frame.y1 + 1
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
