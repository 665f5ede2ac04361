"""Test configuration: every test, and every notebook that nbval runs, uses the `smoke` profile.

The kernels nbval starts inherit this environment. Shared helpers for the tests live here too.
"""
import os

os.environ["MINIMIND_PROFILE"] = "smoke"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# as `import minimind_core` does, before torch loads OpenMP: waiting threads sleep instead of spinning
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


def small_config(**overrides):
    from minimind_core import MiniMindConfig

    kw = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              vocab_size=300, max_position_embeddings=256)
    kw.update(overrides)
    return MiniMindConfig(**kw)


@pytest.fixture
def tiny_model():
    """A small random MiniMind model with non-trivial weights (norm weights perturbed too)."""
    from minimind_core import MiniMindForCausalLM

    torch.manual_seed(0)
    model = MiniMindForCausalLM(small_config()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model
