"""Looking inside token embeddings (lesson 02): nearest neighbours, word vectors and PCA.

    embedding_matrix(model)                 the input embedding matrix [vocab, hidden], float32 on the CPU
    nearest_neighbours(weight, query, k)    the k tokens of highest cosine similarity to a token or a vector
    word_ids(tokenizer, word)               a word's token ids as it appears mid-sentence
    word_vector(weight, tokenizer, word)    a word's vector: the mean of its tokens' embeddings
    pca_basis(x) / pca_2d(x)                the two leading principal directions (SVD, signs fixed)

These are the measurements lesson 02's pictures (viz.embeddings) are drawn from; they need only
torch, so a check or a script can use them without matplotlib.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def embedding_matrix(model_or_weight) -> torch.Tensor:
    """The input embedding matrix [vocab, hidden] of a model (or the matrix itself), as a float32
    CPU tensor cut off from autograd."""
    if isinstance(model_or_weight, torch.Tensor):
        w = model_or_weight
    else:
        w = model_or_weight.get_input_embeddings().weight
    return w.detach().float().cpu()


def nearest_neighbours(weight, query, k: int = 8, exclude: Sequence[int] | None = None):
    """The `k` rows of `weight` ([vocab, hidden]) most cosine-similar to `query`.

    `query` is a token id (that token itself is left out) or a vector of size hidden. `exclude`:
    more ids to leave out. Returns (ids LongTensor [k], similarities FloatTensor [k]), most
    similar first."""
    w = embedding_matrix(weight)
    skip = set(int(i) for i in (exclude or []))
    if isinstance(query, int) or (isinstance(query, torch.Tensor) and query.dim() == 0):
        qid = int(query)
        if not 0 <= qid < w.shape[0]:
            raise ValueError(f"token id {qid} is outside the vocabulary (0..{w.shape[0] - 1})")
        skip.add(qid)
        q = w[qid]
    else:
        q = torch.as_tensor(query).detach().float().cpu()
        if q.shape != (w.shape[1],):
            raise ValueError(f"query vector has shape {tuple(q.shape)}, expected ({w.shape[1]},)")
    sims = F.cosine_similarity(w, q[None, :], dim=-1)
    if skip:
        sims[list(skip)] = -float("inf")
    k = min(k, w.shape[0] - len(skip))
    top = sims.topk(k)
    return top.indices, top.values


def word_ids(tokenizer, word: str) -> list[int]:
    """The token ids of `word` as it appears mid-sentence: an English word follows a space there,
    and byte-level BPE keeps that space in the token."""
    text = (" " + word) if word[:1].isascii() and word[:1].isalpha() else word
    return list(tokenizer.encode(text, add_special_tokens=False))


def word_vector(weight, tokenizer, word: str):
    """(vector, ids): the mean embedding of the tokens of `word` (English words with their leading
    space, as they appear mid-sentence)."""
    w = embedding_matrix(weight)
    ids = word_ids(tokenizer, word)
    if not ids:
        raise ValueError("empty word: type a word or a token")
    return w[ids].mean(0), ids


def pca_basis(x):
    """(mean [1, d], components [2, d]) of the rows of `x` ([n >= 2, d]): centre, SVD, keep the two
    leading directions. Each direction's sign is fixed (largest loading positive), so the picture
    does not flip between runs; with d == 1 the second direction is zero."""
    x = torch.as_tensor(x).detach().float().cpu()
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"expected an [n >= 2, d] matrix, got shape {tuple(x.shape)}")
    mean = x.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    comps = vh[:2]
    comps = comps * torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    if comps.shape[0] < 2:
        comps = torch.cat([comps, torch.zeros_like(comps)], 0)
    return mean, comps


def pca_2d(x) -> torch.Tensor:
    """The rows of `x` ([n, d]) projected on their first two principal components ([n, 2])."""
    mean, comps = pca_basis(x)
    return (torch.as_tensor(x).detach().float().cpu() - mean) @ comps.T


__all__ = ["embedding_matrix", "nearest_neighbours", "word_ids", "word_vector", "pca_basis", "pca_2d"]
