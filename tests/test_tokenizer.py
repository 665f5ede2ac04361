import json

import pytest

from minimind_core.chat import CHAT_TEMPLATE, prompt_ids, render_chat
from minimind_core.tokenizer import RESERVED_TOKENS, SPECIAL_TOKENS, load_tokenizer, train_tokenizer

TEXTS = ["今天天气很好，我们去公园散步吧。", "The quick brown fox jumps over the lazy dog.",
         "机器学习是人工智能的一个分支。", "Language models predict the next token."] * 30


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(TEXTS, 400, out)
    return out


def test_special_token_ids(tok_dir):
    tok = load_tokenizer(tok_dir)
    assert [tok.convert_tokens_to_ids(s) for s in SPECIAL_TOKENS] == [0, 1, 2]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert 256 + 9 < len(tok) <= 400


@pytest.mark.parametrize("text", ["今天天气很好", "Hello, world!", "emoji 😀🚀 and 中文 mixed",
                                  "<|im_start|>user\n你好<|im_end|>\n", "  leading spaces\n\ttabs",
                                  "unseen characters: ü ß 𝔘 ☃"])
def test_round_trip(tok_dir, text):
    tok = load_tokenizer(tok_dir)
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text


def test_no_automatic_bos_eos_and_specials_are_single_tokens(tok_dir):
    tok = load_tokenizer(tok_dir)
    assert tok.encode("hello") == tok.encode("hello", add_special_tokens=False)
    assert tok.encode("<|im_start|><|im_end|><|endoftext|>", add_special_tokens=False) == [1, 2, 0]


def test_tool_and_thinking_tags_are_reserved_single_tokens(tok_dir):
    """<tool_call> ... </think> never occur in TEXTS, yet each is one token, ids 3-8, in every
    tokenizer the course trains; they are not special, so decoding for display keeps them."""
    tok = load_tokenizer(tok_dir)
    assert [tok.convert_tokens_to_ids(t) for t in RESERVED_TOKENS] == [3, 4, 5, 6, 7, 8]
    text = "<think>\n想一想\n</think>\n\n<tool_call>\n{}\n</tool_call><tool_response>x</tool_response>"
    ids = tok.encode(text, add_special_tokens=False)
    assert [i for i in ids if i < 9] == [7, 8, 3, 4, 5, 6]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode([1] + ids + [2], skip_special_tokens=True) == text
    assert set(tok.all_special_ids) == {0, 1, 2}
    added = json.loads((tok_dir / "tokenizer.json").read_text())["added_tokens"]
    assert [(a["id"], a["content"], a["special"]) for a in added] == (
        [(i, t, True) for i, t in enumerate(SPECIAL_TOKENS)] + [(i + 3, t, False) for i, t in enumerate(RESERVED_TOKENS)])


def test_chat_template_matches_render_chat(tok_dir):
    tok = load_tokenizer(tok_dir)
    conv = [{"role": "user", "content": "你是谁？"}, {"role": "assistant", "content": "我是MiniMind。"},
            {"role": "user", "content": "Who are you?"}]
    expected = ("<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
                "<|im_start|>user\n你是谁？<|im_end|>\n<|im_start|>assistant\n我是MiniMind。<|im_end|>\n"
                "<|im_start|>user\nWho are you?<|im_end|>\n")
    assert tok.apply_chat_template(conv, tokenize=False) == expected == render_chat(conv)
    gen = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    assert gen == expected + "<|im_start|>assistant\n" == render_chat(conv, add_generation_prompt=True)
    with_system = [{"role": "system", "content": "Be brief."}] + conv[:1]
    assert tok.apply_chat_template(with_system, tokenize=False) == render_chat(with_system)
    assert "helpful assistant" not in render_chat(with_system)


def test_prompt_ids_are_the_templated_prompt(tok_dir):
    tok = load_tokenizer(tok_dir)
    conv = [{"role": "user", "content": "你是谁？"}]
    want = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    assert prompt_ids(tok, conv) == prompt_ids(tok, "你是谁？") == tok.encode(want, add_special_tokens=False)
    assert tok.decode(prompt_ids(tok, conv)).endswith("你是谁？<|im_end|>\n<|im_start|>assistant\n")


def test_training_is_deterministic(tmp_path):
    train_tokenizer(TEXTS, 350, tmp_path / "a")
    train_tokenizer(TEXTS, 350, tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_foreign_folder_without_template_gets_ours(tok_dir, tmp_path):
    """A tokenizer folder from elsewhere (MiniMind's `model/` folder) loads the same way."""
    import shutil

    for f in tok_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    tok = load_tokenizer(tmp_path)
    assert tok.chat_template == CHAT_TEMPLATE


def test_bad_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a tokenizer folder"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(TEXTS, 100)


def test_a_model_folder_tokenizer_loads_without_asking_to_run_its_code(tmp_path):
    """A checkpoint folder carries the model's own code (auto_map in config.json); loading only its
    tokenizer must neither prompt for trust_remote_code nor read the prompt's answer from stdin."""
    import subprocess
    import sys

    from minimind_core.checkpoint import save_model_folder
    from minimind_core.config import MiniMindConfig
    from minimind_core.model import MiniMindForCausalLM
    from minimind_core.profiles import SAMPLE_DIR

    tok = load_tokenizer(SAMPLE_DIR / "tokenizer")
    model = MiniMindForCausalLM(MiniMindConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                               num_key_value_heads=1, intermediate_size=64, vocab_size=len(tok)))
    save_model_folder(tmp_path / "m", model, tokenizer=tok)
    assert "auto_map" in (tmp_path / "m" / "config.json").read_text()
    code = ("from minimind_core.tokenizer import load_tokenizer; "
            f"print(len(load_tokenizer({str(tmp_path / 'm')!r})))")
    out = subprocess.run([sys.executable, "-c", code], input="", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(tok))
    assert "custom code" not in out.stdout + out.stderr and "[y/N]" not in out.stdout + out.stderr
