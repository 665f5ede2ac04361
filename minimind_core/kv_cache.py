"""The KV cache: the keys and values of the tokens a decoder has already read.

Generating token n+1 needs the keys and values of tokens 0..n in every layer. Without a cache they
are recomputed from the whole sequence at every step; with one, each step computes them for the
new token only and reads the rest from here.

Layout (MiniMind's): per layer, keys and values [batch, length, kv_heads, head_dim]. Keys are
stored after RoPE (a cached key never has to be rotated again) and before the KV heads are
repeated for grouped-query attention (so the cache is n_rep times smaller than the attention).

One object owns the tensors of every layer and the position:

    cache = KVCache(config, batch_size=1, max_len=512)
    k_all, v_all = cache.update(i, k, v)   # layer i: write the new keys/values, read all of them
    cache.advance(t)                        # after the last layer: the t new tokens are now the past
    cache.length                            # tokens held = RoPE position of the next token

The buffers are allocated once for `max_len` tokens and `update` returns views of them, so a
decoding step allocates nothing. A cache made without `max_len` (what the model makes for
`model(ids, use_cache=True)`) doubles its buffers when they fill up; `static=True` keeps them
where they are and makes running past `max_len` an error, which is what a compiled decoding step
needs (its tensors must not move).

`TransformersCacheAdapter` gives a Hugging Face `Cache` (what `model.generate` passes) the same
three methods; the model wraps one at its edge, so every layer sees one interface.
"""
from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer, [layers, batch, capacity, kv_heads, head_dim], and the
    number of positions filled so far (`length`)."""

    def __init__(self, config, batch_size: int, max_len: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 static: bool = False):
        if static and (max_len is None or dtype is None):
            raise ValueError("a static KVCache needs max_len and dtype (its buffers are allocated up front)")
        self.n_layers = config.num_hidden_layers
        self.batch_size = batch_size
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.static = static
        self.length = 0
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self._capacity = max_len or 0
        self._device, self._dtype = device, dtype
        if max_len is not None and dtype is not None:
            self._allocate(max_len, torch.device(device or "cpu"), dtype)

    @property
    def max_len(self) -> int:
        """Positions the buffers hold before they have to grow."""
        return self._capacity

    def _allocate(self, capacity: int, device: torch.device, dtype: torch.dtype) -> None:
        shape = (self.n_layers, self.batch_size, capacity, self.kv_heads, self.head_dim)
        keys = torch.zeros(shape, device=device, dtype=dtype)
        values = torch.zeros(shape, device=device, dtype=dtype)
        if self.keys is not None and self.length:
            keys[:, :, :self.length] = self.keys[:, :, :self.length]
            values[:, :, :self.length] = self.values[:, :, :self.length]
        self.keys, self.values, self._capacity = keys, values, capacity

    def _reserve(self, needed: int, like: torch.Tensor) -> None:
        """Make room for `needed` positions; the first call also fixes device and dtype (from `like`
        unless given at construction)."""
        if self.keys is not None and needed <= self._capacity:
            return
        if self.static:
            raise ValueError(f"KVCache is full: {needed} positions needed, max_len is {self._capacity}")
        capacity = max(needed, self._capacity if self.keys is None else 2 * self._capacity)
        self._allocate(capacity, like.device if self._device is None else torch.device(self._device),
                       self._dtype or like.dtype)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write layer `layer`'s new keys and values ([batch, t, kv_heads, head_dim]) after the
        `length` cached positions; return all of them ([batch, length + t, kv_heads, head_dim])."""
        b, t = k.shape[:2]
        if b != self.batch_size:
            raise ValueError(f"KVCache was made for batch size {self.batch_size}, got keys of batch {b}")
        end = self.length + t
        self._reserve(end, k)
        self.keys[layer, :, self.length:end] = k
        self.values[layer, :, self.length:end] = v
        return self.keys[layer, :, :end], self.values[layer, :, :end]

    def advance(self, n: int) -> None:
        """Count `n` more positions as cached (the model calls this once every layer has written)."""
        if self.length + n > self._capacity:
            raise ValueError(f"cannot advance the KVCache to {self.length + n} positions: "
                             f"it holds at most {self._capacity}")
        self.length += n

    def get_layer(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, values) of one layer, [batch, length, kv_heads, head_dim] each (views)."""
        if self.keys is None:
            empty = torch.zeros(self.batch_size, 0, self.kv_heads, self.head_dim,
                                device=self._device, dtype=self._dtype)
            return empty, empty
        return self.keys[layer, :, :self.length], self.values[layer, :, :self.length]

    def __getitem__(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`cache[i]` is `get_layer(i)`: the cache reads like MiniMind's list of per-layer (k, v)."""
        if not -self.n_layers <= layer < self.n_layers:
            raise IndexError(f"layer {layer} out of range: the cache has {self.n_layers} layers")
        return self.get_layer(layer % self.n_layers)

    def __iter__(self):
        return (self.get_layer(i) for i in range(self.n_layers))

    def crop(self, length: int) -> None:
        """Forget every position from `length` on (e.g. to decode again from a shared prompt)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"crop length must be in 0..{self.length}, got {length}")
        self.length = length

    def reset(self) -> None:
        """Empty the cache; the buffers stay allocated for the next sequence."""
        self.length = 0


class TransformersCacheAdapter:
    """A transformers `Cache` (it stores [batch, kv_heads, seq, head_dim]) behind KVCache's
    `length` / `update` / `advance`, so the model's layers never see the other layout."""

    def __init__(self, cache):
        self.cache = cache
        self.length = cache.get_seq_length()

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k_all, v_all = self.cache.update(k.transpose(1, 2), v.transpose(1, 2), layer)
        return k_all.transpose(1, 2), v_all.transpose(1, 2)

    def advance(self, n: int) -> None:
        self.length += n        # the wrapped cache counts its own positions as it stores them


__all__ = ["KVCache", "TransformersCacheAdapter"]
