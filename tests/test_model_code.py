"""Self-contained model folders: the modeling code generated from the library's source, loaded by
transformers in a fresh process that never imports minimind_core, with the same logits and tokens."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minimind_core import checkpoint as ck
from minimind_core.model_code import AUTO_MAP, model_code_files

sys.path.insert(0, str(Path(__file__).parent))
from course_model import PROMPTS, write_course_model  # noqa: E402

# Run in a fresh interpreter: refuse any import of minimind_core, load the folder with transformers
# alone, print logits and greedy tokens as JSON.
FRESH_LOADER = r"""
import importlib.abc, json, sys

class NoMiniMindCore(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "minimind_core" or name.startswith("minimind_core."):
            raise ImportError("minimind_core must not be imported here")
        return None

sys.meta_path.insert(0, NoMiniMindCore())
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

folder, prompts = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
rows = []
for text in prompts:
    ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([tok.encode(ids, add_special_tokens=False)])
    with torch.no_grad():
        logits = model(ids).logits[0]
        new = model.generate(ids, max_new_tokens=16, do_sample=False, pad_token_id=0)[0, ids.shape[1]:]
    rows.append({"ids": ids[0].tolist(), "logits": logits.tolist(), "greedy": new.tolist()})
print(json.dumps({"class": type(model).__module__ + "." + type(model).__name__, "rows": rows,
                  "imported": sorted(m for m in sys.modules if m.startswith("minimind_core"))}))
"""


def fresh_load(folder: Path, prompts, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "hf_modules"), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-c", FRESH_LOADER, str(folder), json.dumps(prompts)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_generated_code_imports_nothing_from_the_library():
    files = model_code_files()
    assert {"configuration_minimind.py", "modeling_minimind.py", "kv_cache.py", "moe.py"} <= set(files)
    for name, text in files.items():
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = f"{node.module}.py" if node.module else None
                assert node.level == 1 and (target in files or all(f"{a.name}.py" in files for a in node.names)), \
                    f"{name}: line {node.lineno} imports what the folder does not hold"
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any(m.split(".")[0] == "minimind_core" for m in mods), f"{name}: line {node.lineno}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register":
                pytest.fail(f"{name}: line {node.lineno} still registers with the Auto classes")
        assert text.startswith("# Generated from minimind_core/")
    # the body is the library's: the model's forward is there, line for line
    model_src = (Path(ck.__file__).parent / "model.py").read_text(encoding="utf-8")
    start = model_src.index("class MiniMindForCausalLM")
    assert model_src[start:start + 2000] in files["modeling_minimind.py"]


@pytest.mark.parametrize("config", [{}, dict(qk_norm=True, head_dim=24, inference_rope_scaling=True,
                                             max_position_embeddings=4096)], ids=["minimind2", "minimind3"])
def test_checkpoint_loads_in_a_fresh_process_with_equal_logits(tmp_path, config):
    run = write_course_model(tmp_path / "run", **config)
    latest = ck.latest_checkpoint(run)
    config = json.loads((latest / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP and config["model_type"] == "minimind"
    from minimind_core.generate import chat_prompt_ids, generate

    model, tok = ck.load_model_and_tokenizer(run, device="cpu")
    prompts = PROMPTS[:3]
    for folder in (latest, run):          # the checkpoint, and the run folder's top level
        got = fresh_load(folder, prompts, tmp_path)
        assert got["imported"] == [] and got["class"].endswith("modeling_minimind.MiniMindForCausalLM")
        for text, row in zip(prompts, got["rows"]):
            ids = chat_prompt_ids(tok, text)
            assert row["ids"] == ids[0].tolist()
            with torch.no_grad():
                ours = model(ids).logits[0]
            torch.testing.assert_close(torch.tensor(row["logits"]), ours, atol=1e-5, rtol=1e-5)
            assert row["greedy"] == generate(model, ids, max_new_tokens=16, do_sample=False)[0].tolist()


def test_the_library_still_loads_its_own_class(tmp_path):
    """With minimind_core imported, transformers picks the registered class, not the folder's copy."""
    from transformers import AutoModelForCausalLM

    from minimind_core import MiniMindForCausalLM

    run = write_course_model(tmp_path / "run")
    assert type(AutoModelForCausalLM.from_pretrained(str(run))) is MiniMindForCausalLM
    assert type(ck.load_model(run)) is MiniMindForCausalLM


def test_run_folder_top_level_is_the_newest_checkpoint(tmp_path):
    from minimind_core import MiniMindConfig, MiniMindForCausalLM

    model = MiniMindForCausalLM(MiniMindConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                               num_key_value_heads=1, vocab_size=300, max_position_embeddings=64))
    ck.save_checkpoint(tmp_path, 1, model=model, trainer_state={"step": 1})
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    newest = ck.save_checkpoint(tmp_path, 2, model=model, trainer_state={"step": 2})
    for name in ("config.json", "model.safetensors", "modeling_minimind.py"):
        assert (tmp_path / name).stat().st_ino == (newest / name).stat().st_ino, name   # a hard link
    assert not (tmp_path / ck.TRAINER_STATE).exists() and not (tmp_path / ck.CHECKPOINT_INFO).exists()
    assert ck.resolve_model_dir(tmp_path) == newest
    ck.retire_checkpoints(tmp_path)
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "model.safetensors").exists()
    assert ck.list_checkpoints(tmp_path) == []


def test_files_carry_what_older_transformers_read(tmp_path):
    from minimind_core.export import export_llama

    run = write_course_model(tmp_path / "run")
    out = export_llama(run, tmp_path / "llama")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["rope_theta"] == 1e6 and cfg.get("torch_dtype") == "float32"
    for folder in (out, ck.latest_checkpoint(run)):
        tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
        assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
        assert "<|im_start|>" in tok_cfg["chat_template"] and "backend" not in tok_cfg


OLD_PYTHON = os.environ.get("MINIMIND_OLD_TRANSFORMERS_PYTHON")


@pytest.mark.skipif(not OLD_PYTHON, reason="set MINIMIND_OLD_TRANSFORMERS_PYTHON to a Python with an older "
                                           "transformers (.ci/old_transformers does)")
def test_older_transformers_read_the_same_model(tmp_path):
    """A course checkpoint and its Llama export, loaded by the older transformers: the same token ids,
    logits and greedy tokens as the library gives (RoPE base, tokenizer class, chat template)."""
    from minimind_core.export import export_llama
    from minimind_core.generate import chat_prompt_ids, generate

    run = write_course_model(tmp_path / "run")
    llama = export_llama(run, tmp_path / "llama")
    model, tok = ck.load_model_and_tokenizer(run, device="cpu")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "hf_modules"), OMP_NUM_THREADS="1")
    for folder in (ck.latest_checkpoint(run), llama):
        proc = subprocess.run([OLD_PYTHON, "-c", FRESH_LOADER, str(folder), json.dumps(PROMPTS[:3])], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        for text, row in zip(PROMPTS[:3], got["rows"]):
            ids = chat_prompt_ids(tok, text)
            assert row["ids"] == ids[0].tolist(), folder
            with torch.no_grad():
                torch.testing.assert_close(torch.tensor(row["logits"]), model(ids).logits[0], atol=1e-5, rtol=1e-5)
            assert row["greedy"] == generate(model, ids, max_new_tokens=16, do_sample=False)[0].tolist()
