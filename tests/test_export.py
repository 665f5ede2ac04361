"""`export llama` writes a folder that plain transformers loads and runs, without minimind_core."""
import json
import subprocess
import sys

import torch

from minimind_core.cli import main
from minimind_core.tokenizer import train_tokenizer

LOADER = r"""
import sys, json, torch
sys.modules["minimind_core"] = None          # make sure nothing of ours is importable
from transformers import AutoModelForCausalLM, AutoTokenizer
d = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(d).eval()
tok = AutoTokenizer.from_pretrained(d)
ids = tok.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True,
                              return_tensors="pt", return_dict=True)["input_ids"]
out = model.generate(ids, max_new_tokens=5, do_sample=False)
x = torch.tensor([[5, 6, 7, 8, 9, 10]])
print(json.dumps({"class": type(model).__name__, "new": out.shape[1] - ids.shape[1],
                  "logits": model(x).logits[0, -1, :8].tolist(),
                  "prompt_end": tok.decode(ids[0])}))
"""


def test_export_llama_round_trip(tiny_model, tmp_path):
    src = tmp_path / "model"
    tiny_model.save_pretrained(src)
    train_tokenizer(["hello world, 你好世界 " * 5] * 20, 300, src)
    out = tmp_path / "llama"
    assert main(["export", "llama", "--model", str(src), "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    proc = subprocess.run([sys.executable, "-c", LOADER, str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["class"] == "LlamaForCausalLM" and res["new"] == 5
    assert res["prompt_end"].endswith("<|im_start|>assistant\n")
    with torch.no_grad():
        ours = tiny_model(torch.tensor([[5, 6, 7, 8, 9, 10]])).logits[0, -1, :8]
    torch.testing.assert_close(torch.tensor(res["logits"]), ours, atol=1e-4, rtol=1e-4)


def test_export_rejects_a_non_model_folder(tmp_path, capsys):
    assert main(["export", "llama", "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a model folder" in capsys.readouterr().err
