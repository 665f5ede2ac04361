"""Lesson 02 pictures and widgets: parameter breakdown, nearest neighbours, PCA, the explorer."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from conftest import small_config  # noqa: E402
from minimind_core import MiniMindConfig, MiniMindForCausalLM, count_parameters  # noqa: E402
from minimind_core.viz import embeddings as viz  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    from minimind_core.tokenizer import train_tokenizer

    texts = ["apples and pears and plums", "Halden and Selstead are cities", "the baker and the farmer",
             "你好，世界！"] * 20
    return train_tokenizer(texts, 300)


def test_minimind2_small_breakdown_matches_the_spec():
    model = viz.meta_model(MiniMindConfig())
    assert model.lm_head.weight.device.type == "meta"
    b = viz.parameter_breakdown(model)
    assert sum(b.values()) == count_parameters(model) == 25_829_888
    assert b["embedding (tied with lm_head)"] == 6400 * 512
    assert b["attention q"] == b["attention o"] == 8 * 512 * 512
    assert b["attention k"] == b["attention v"] == 8 * 512 * 128
    assert b["MLP gate"] == b["MLP up"] == b["MLP down"] == 8 * 512 * 1408
    assert b["norms"] == 17 * 512
    assert list(b) == [c for c in viz.COMPONENT_ORDER if c in b]


def test_untied_and_moe_breakdowns():
    untied = viz.meta_model(MiniMindConfig(tie_word_embeddings=False))
    b = viz.parameter_breakdown(untied)
    assert b["embedding"] == b["lm_head"] == 6400 * 512
    assert sum(b.values()) == 29_106_688
    moe = viz.parameter_breakdown(viz.meta_model(MiniMindConfig(hidden_size=640, use_moe=True)))
    assert sum(moe.values()) == 145_029_760
    assert moe["MoE router"] == 8 * 4 * 640
    assert moe["MLP gate"] == 8 * 5 * 640 * 1728          # 4 routed + 1 shared expert


def test_component_of_rejects_unknown_names():
    assert viz.component_of("model.layers.3.self_attn.k_proj.weight") == "attention k"
    assert viz.component_of("model.layers.0.mlp.shared_experts.0.up_proj.weight") == "MLP up"
    with pytest.raises(ValueError, match="rotary.weight"):
        viz.component_of("model.rotary.weight")


def test_breakdown_figure():
    b = {"embedding": 100, "attention q": 50, "norms": 2}
    fig = viz.parameter_breakdown_figure(b, "demo")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [p.get_width() for p in ax.patches] == [2, 50, 100]
    assert any("65.8%" in t.get_text() for t in ax.texts)
    with pytest.raises(ValueError):
        viz.parameter_breakdown_figure({})


def test_embedding_parameters():
    assert viz.embedding_parameters(6400, 512, tied=True) == 3_276_800
    assert viz.embedding_parameters(6400, 512, tied=False) == 6_553_600
    for tied in (True, False):
        cfg = small_config(tie_word_embeddings=tied)
        m = viz.meta_model(cfg)
        emb = sum(v for k, v in viz.parameter_breakdown(m).items() if k.startswith(("embedding", "lm_head")))
        assert emb == viz.embedding_parameters(cfg.vocab_size, cfg.hidden_size, tied)


def test_nearest_neighbours_by_cosine():
    w = torch.tensor([[1.0, 0.0], [10.0, 3.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.1]])
    ids, sims = viz.nearest_neighbours(w, 0, k=2)
    assert ids.tolist() == [4, 1]          # by angle, not by length or dot product
    torch.testing.assert_close(sims, F.cosine_similarity(w[[4, 1]], w[0:1]))
    ids, _ = viz.nearest_neighbours(w, torch.tensor([1.0, 0.0]), k=1)
    assert ids.tolist() == [0]             # a vector query keeps every token
    ids, _ = viz.nearest_neighbours(w, 0, k=10, exclude=[4])
    assert ids.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        viz.nearest_neighbours(w, 9)
    with pytest.raises(ValueError, match="shape"):
        viz.nearest_neighbours(w, torch.ones(3))


def test_pca_2d_recovers_the_main_directions():
    torch.manual_seed(0)
    t = torch.randn(200)
    s = torch.randn(200) * 0.3
    x = torch.stack([t, s, torch.zeros(200), torch.zeros(200)], 1) @ torch.linalg.qr(torch.randn(4, 4))[0].T
    p = viz.pca_2d(x)
    assert p.shape == (200, 2)
    assert abs(torch.corrcoef(torch.stack([p[:, 0], t]))[0, 1]) > 0.999
    assert abs(torch.corrcoef(torch.stack([p[:, 1], s]))[0, 1]) > 0.99
    torch.testing.assert_close(viz.pca_2d(x), p)               # deterministic signs
    with pytest.raises(ValueError):
        viz.pca_2d(torch.randn(1, 4))


def test_word_vector_uses_the_leading_space_for_english(tokenizer):
    w = torch.randn(len(tokenizer), 8)
    vec, ids = viz.word_vector(w, tokenizer, "apples")
    assert ids == tokenizer.encode(" apples", add_special_tokens=False)
    torch.testing.assert_close(vec, w[ids].mean(0))
    _, ids_zh = viz.word_vector(w, tokenizer, "世界")
    assert ids_zh == tokenizer.encode("世界", add_special_tokens=False)


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
