"""KVCache on its own: writing, reading back, growing, cropping, and its errors."""
import pytest
import torch

from conftest import small_config
from minimind_core.kv_cache import KVCache


def _kv(batch, t, fill):
    return torch.full((batch, t, 2, 16), float(fill)), torch.full((batch, t, 2, 16), -float(fill))


def test_update_writes_after_the_cached_positions_and_returns_all():
    cache = KVCache(small_config(), batch_size=2, max_len=8, dtype=torch.float32)
    k, v = cache.update(0, *_kv(2, 3, 1))
    assert k.shape == (2, 3, 2, 16) and cache.length == 0      # counted only once every layer wrote
    cache.update(1, *_kv(2, 3, 10))
    cache.advance(3)
    k, v = cache.update(0, *_kv(2, 2, 2))
    assert k.shape == (2, 5, 2, 16)
    assert k[:, :3].eq(1).all() and k[:, 3:].eq(2).all() and v[:, 3:].eq(-2).all()
    cache.update(1, *_kv(2, 2, 20))
    cache.advance(2)
    assert cache.length == 5
    layer1_k, layer1_v = cache[1]
    assert layer1_k[:, :3].eq(10).all() and layer1_k[:, 3:].eq(20).all() and layer1_v[:, 3:].eq(-20).all()
    assert [k.shape[1] for k, _ in cache] == [5, 5]            # reads like MiniMind's list of (k, v)
    assert layer1_k.data_ptr() == cache.keys[1].data_ptr()      # views of the buffers, no copies


def test_a_cache_without_max_len_grows_and_keeps_what_it_holds():
    cache = KVCache(small_config(), batch_size=1)
    for step in range(1, 6):
        for layer in range(2):
            cache.update(layer, *_kv(1, 1, step))
        cache.advance(1)
    k, _ = cache[0]
    assert k[0, :, 0, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert cache.max_len >= 5 and cache.keys.dtype == torch.float32


def test_crop_and_reset():
    cache = KVCache(small_config(), batch_size=1, max_len=6, dtype=torch.float32)
    for layer in range(2):
        cache.update(layer, *_kv(1, 4, 1))
    cache.advance(4)
    cache.crop(2)
    assert cache.length == 2 and cache[0][0].shape[1] == 2
    with pytest.raises(ValueError, match="crop length must be in 0..2, got 3"):
        cache.crop(3)
    cache.reset()
    assert cache.length == 0 and cache[0][0].shape == (1, 0, 2, 16)


def test_errors_name_what_was_wrong():
    with pytest.raises(ValueError, match="static KVCache needs max_len and dtype"):
        KVCache(small_config(), batch_size=1, static=True)
    cache = KVCache(small_config(), batch_size=2, max_len=4, dtype=torch.float32, static=True)
    with pytest.raises(ValueError, match="made for batch size 2, got keys of batch 1"):
        cache.update(0, *_kv(1, 1, 0))
    with pytest.raises(ValueError, match="KVCache is full: 5 positions needed, max_len is 4"):
        cache.update(0, *_kv(2, 5, 0))
    with pytest.raises(ValueError, match="cannot advance the KVCache to 5 positions"):
        cache.advance(5)
    with pytest.raises(IndexError, match="layer 2 out of range: the cache has 2 layers"):
        cache[2]
