"""Lesson 01 pictures and widgets: coloured tokens, the merge table, characters per token."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from minimind_core import bpe  # noqa: E402
from minimind_core.viz import tokens as viz  # noqa: E402

TEXTS = ["你好，世界！今天天气很好。我们去公园散步吧。", "The quick brown fox jumps over the lazy dog.",
         "世界很大，我想去看看。天气很好。", "Hello world, the weather is good today."] * 15


@pytest.fixture(scope="module")
def tokenizer():
    from minimind_core.tokenizer import train_tokenizer

    return train_tokenizer(TEXTS, 400)


def test_tokens_html_shows_every_token_with_its_id(tokenizer):
    text = "Hello 你好!"
    ids = tokenizer.encode(text, add_special_tokens=False)
    out = viz.tokens_html(tokenizer, text)
    assert out.count("<span title=") == len(ids)
    for i in ids:
        assert f">{i}</span>" in out
    assert "Hello" in out or "Hel" in out
    assert "你" in out
    assert viz.tokens_html(tokenizer, "") == "<i>(no tokens: the text is empty)</i>"
    shown = viz.tokens_html(tokenizer, "<b>")
    assert "&lt;" in shown and "&gt;" in shown and "<b>" not in shown      # escaped, not rendered


def test_token_summary(tokenizer):
    s = viz.token_summary(tokenizer, "你好")
    assert s["characters"] == 2 and s["bytes"] == 6
    assert s["tokens"] == len(tokenizer.encode("你好", add_special_tokens=False))
    assert s["chars_per_token"] == pytest.approx(2 / s["tokens"])


def test_playground_updates_when_the_text_changes(tokenizer):
    box = viz.tokenizer_playground(tokenizer, text="Hello")
    first = box.tokens.value
    assert "5 characters" in first
    box.text.value = "世界很大"
    assert box.tokens.value != first
    assert "4 characters, 12 UTF-8 bytes" in box.tokens.value
    box.text.value = ""
    assert "no tokens" in box.tokens.value


def test_bytes_html_lists_utf8_bytes():
    out = viz.bytes_html("a中")
    assert "<code>61</code>" in out and "<code>e4 b8 ad</code>" in out and "U+4E2D" in out


def test_merge_table_and_progress_figure():
    text = "low lower lowest " * 4
    steps = bpe.train_bpe_steps(text, 5)
    table = viz.merge_table_html(steps)
    assert table.count("<tr>") == len(steps) + 1
    assert "<code>lo</code>" in table and "<code>(108, 111)</code>" in table
    assert viz.merge_table_html(steps, first=2).count("<tr>") == len(steps) - 1
    fig = viz.merge_progress_figure(steps, len(text.encode()))
    assert isinstance(fig, Figure)
    line = fig.axes[0].lines[0]
    assert list(line.get_ydata()) == [len(text.encode())] + [s.length for s in steps]
    with pytest.raises(ValueError, match="no merge steps"):
        viz.merge_progress_figure([], 10)


def test_partial_utf8_tokens_are_shown_as_hex_in_the_merge_table():
    steps = bpe.train_bpe_steps("中文中文中文", 1)
    assert steps[0].token == b"\xe4\xb8"
    assert "\\xe4\\xb8" in viz.merge_table_html(steps)


def test_split_by_language():
    out = viz.split_by_language(["你好世界", "Hello world", "Hello 你好 world and more english words here", "  ", "Ärger"])
    assert out["zh"] == ["你好世界"]
    assert out["en"] == ["Hello world"]


def test_chars_per_token(tokenizer):
    texts = ["你好世界", "Hello"]
    n = sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in texts)
    assert viz.chars_per_token(tokenizer, texts) == pytest.approx(9 / n)
    with pytest.raises(ValueError):
        viz.chars_per_token(tokenizer, ["", ""])


def test_default_vocab_sizes():
    assert viz.default_vocab_sizes(2048) == [512, 1024, 2048, 4096]
    assert viz.default_vocab_sizes(6400) == [512, 1024, 2048, 4096, 6400, 8192]


def test_sweep_grows_with_the_vocabulary_and_the_figure_plots_it():
    train = TEXTS
    held = viz.split_by_language(["今天天气很好，我们去看看世界。", "The weather is good, the fox jumps."])
    sweep = viz.chars_per_token_sweep(train, held, [265, 300, 400])
    assert sorted(sweep) == [265, 300, 400]
    assert sweep[265]["zh"] == pytest.approx(1 / 3, abs=0.01)      # bytes only: 3 per Chinese character
    assert sweep[265]["en"] == pytest.approx(1.0)
    assert sweep[400]["zh"] > sweep[265]["zh"] and sweep[400]["en"] > sweep[265]["en"]
    fig = viz.chars_per_token_figure(sweep, mark=300, reference={"zh": (1.5, 1.7), "en": (4, 5)})
    ax = fig.axes[0]
    ys = {line.get_label(): list(line.get_ydata()) for line in ax.lines}
    assert ys["Chinese text"] == [sweep[v]["zh"] for v in (265, 300, 400)]
    assert ys["English text"] == [sweep[v]["en"] for v in (265, 300, 400)]
    with pytest.raises(ValueError):
        viz.chars_per_token_figure({})


def test_corpus_texts_of_the_sample_profile_match_the_sample_tokenizer_recipe():
    from minimind_core import get_profile
    from minimind_core.sample_corpus import FILES

    prof = get_profile("smoke")
    if not prof.stage("pretrain").data.exists():
        pytest.skip("the sample corpus is not generated (python -m minimind_core data sample)")
    texts = viz.corpus_texts(prof)
    n_pre = sum(1 for line in open(prof.stage("pretrain").data, encoding="utf-8") if line.strip())
    assert len(texts) > n_pre
    first = open(prof.stage("pretrain").data, encoding="utf-8").readline()
    import json
    assert texts[0] == json.loads(first)["text"]
    assert FILES["sft"] == "sft.jsonl"


def test_corpus_texts_says_how_to_download(tmp_path):
    from dataclasses import replace

    from minimind_core import get_profile
    from minimind_core.course import MissingDataError

    prof = get_profile("full")
    recipe = replace(prof.stage("pretrain"), data=tmp_path / "pretrain_t2t_mini.jsonl")
    prof = replace(prof, stages={**prof.stages, "pretrain": recipe})
    with pytest.raises(MissingDataError, match="data download pretrain_t2t_mini"):
        viz.corpus_texts(prof)
    # a file MiniMind no longer publishes names its replacement
    recipe = replace(recipe, data=tmp_path / "pretrain_hq.jsonl")
    prof = replace(prof, stages={**prof.stages, "pretrain": recipe})
    with pytest.raises(MissingDataError, match="retired.*data download pretrain_t2t_mini"):
        viz.corpus_texts(prof)


def test_training_on_the_sample_corpus_reproduces_the_sample_tokenizer():
    from minimind_core import get_profile
    from minimind_core.tokenizer import load_tokenizer, train_tokenizer

    prof = get_profile("smoke")
    if not (prof.tokenizer / "tokenizer.json").exists():
        pytest.skip("the sample corpus is not generated (python -m minimind_core data sample)")
    tok = train_tokenizer(viz.corpus_texts(prof), prof.model_config().vocab_size)
    assert tok.get_vocab() == load_tokenizer(prof.tokenizer).get_vocab()
