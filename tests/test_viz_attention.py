"""Lesson 03 pictures and widgets: attention probabilities, RoPE and attention explorers."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from minimind_core.model import repeat_kv  # noqa: E402
from minimind_core.viz import attention as viz  # noqa: E402
from minimind_core.viz.common import cjk_font  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    from minimind_core.tokenizer import train_tokenizer

    texts = ["你好，世界！Hello world.\n今天天气很好。", "The quick brown fox 你好 jumps.", "世界很大，我想去看看。"] * 20
    return train_tokenizer(texts, 300)


def test_attention_weights_reproduce_the_layer_output(tiny_model):
    torch.manual_seed(1)
    ids = torch.randint(3, 300, (2, 9))
    weights = viz.attention_weights(tiny_model, ids)
    assert weights.shape == (2, 2, 4, 9, 9)       # layers, batch, heads, queries, keys
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 4, 9))
    assert bool((weights.triu(diagonal=1) == 0).all()), "a query attends to a later key"

    seen = {}
    attn = tiny_model.model.layers[1].self_attn
    h1 = attn.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))
    h2 = attn.register_forward_hook(lambda m, a, o: seen.__setitem__("out", o[0]))
    with torch.no_grad():
        tiny_model(ids)
    h1.remove(), h2.remove()
    x = seen["x"]
    v = repeat_kv(attn.v_proj(x).view(2, 9, attn.n_kv_heads, attn.head_dim), attn.n_rep).transpose(1, 2)
    mixed = (weights[1] @ v).transpose(1, 2).reshape(2, 9, -1)
    torch.testing.assert_close(attn.o_proj(mixed), seen["out"])   # the SDPA result, rebuilt from the weights
    assert not tiny_model.training                                # the model's mode is put back


def test_attention_weights_with_padding(tiny_model):
    ids = torch.randint(3, 300, (1, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    w = viz.attention_weights(tiny_model, ids, attention_mask=mask)
    assert float(w[:, 0, :, 3, :2].abs().max()) == 0.0        # padding keys get no attention
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))


def test_rope_rotation_figure_follows_the_sliders():
    fig = viz.rope_rotation_figure(10, 0, head_dim=64, theta=1e6, max_positions=32)
    assert isinstance(fig, Figure)
    assert "angle m*freq = 10 rad" in fig.axes[0].get_title()
    fig = viz.rope_rotation_figure(10, 16, head_dim=64, theta=1e6, max_positions=32)
    assert "angle m*freq = 0.01 rad" in fig.axes[0].get_title()      # 10 * 1e6 ** (-0.5)
    with pytest.raises(ValueError, match="pair must be in 0..31"):
        viz.rope_rotation_figure(1, 32)


def test_rope_explorer_callbacks():
    box = viz.rope_explorer(head_dim=16, theta=1e4, max_positions=40)
    first = box.figure
    box.position.value = 20
    assert box.figure is not first and "angle m*freq = 20 rad" in box.figure.axes[0].get_title()
    box.pair.value = 4                                     # freq = 1e4 ** (-8/16) = 0.01
    assert "angle m*freq = 0.2 rad" in box.figure.axes[0].get_title()
    assert box.pair.max == 7 and box.position.max == 39


def test_wavelength_and_score_figures():
    fig = viz.rope_wavelength_figure(64, 1e6, {"training": 512})
    line = fig.axes[0].get_lines()[0]
    ys = line.get_ydata()
    assert len(ys) == 32 and ys[0] == pytest.approx(2 * torch.pi) and ys[-1] > 1e6
    assert any("512" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    fig = viz.score_matrix_figure(torch.rand(5, 5), title="scores")
    assert fig.axes[0].get_title() == "scores"


def test_attention_heatmap_labels():
    w = torch.rand(4, 4).tril()
    fig = viz.attention_heatmap(w / w.sum(-1, keepdim=True), ["a", "b␣", "你", "c"], "t")
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[:2] == ["0:a", "1:b␣"] and ticks[3] == "3:c"
    assert ticks[2] == ("2:你" if cjk_font() else "2")       # no CJK font: the index only
    with pytest.raises(ValueError, match="3 labels for 4 key positions"):
        viz.attention_heatmap(w, ["a", "b", "c"])


def test_attention_explorer_callbacks(tiny_model, tokenizer):
    tiny_model.config.vocab_size  # the random model's vocab (300) matches this tokenizer
    box = viz.attention_explorer(tiny_model, tokenizer, text="Hello world", max_tokens=16)
    n = len(box.labels)
    assert box.labels[0] == "<|im_start|>" and box.weights.shape == (2, 4, n, n)
    assert "layer 0, query head 0 (KV head 0)" in box.figure.axes[0].get_title()
    box.head.value = 3
    assert "query head 3 (KV head 1)" in box.figure.axes[0].get_title()
    shown = box.figure.axes[0].images[0].get_array()
    torch.testing.assert_close(torch.as_tensor(shown.data), box.weights[0, 3])
    box.layer.value = 1
    torch.testing.assert_close(torch.as_tensor(box.figure.axes[0].images[0].get_array().data), box.weights[1, 3])
    box.text.value = "你好，世界！你好，世界！你好，世界！你好，世界！"
    assert len(box.labels) == 16                           # cut to max_tokens
    assert box.figure.axes[0].images[0].get_array().shape == (16, 16)
    box.text.value = ""
    assert len(box.labels) == 1                            # bos only: still a 1x1 map
