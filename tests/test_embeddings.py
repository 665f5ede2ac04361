"""Lesson 02's measurements: nearest neighbours by cosine, PCA, word vectors."""
import pytest
import torch
import torch.nn.functional as F

from minimind_core.embeddings import nearest_neighbours, pca_2d, word_vector


@pytest.fixture(scope="module")
def tokenizer():
    from minimind_core.tokenizer import train_tokenizer

    texts = ["apples and pears and plums", "Halden and Selstead are cities", "the baker and the farmer",
             "你好，世界！"] * 20
    return train_tokenizer(texts, 300)


def test_nearest_neighbours_by_cosine():
    w = torch.tensor([[1.0, 0.0], [10.0, 3.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.1]])
    ids, sims = nearest_neighbours(w, 0, k=2)
    assert ids.tolist() == [4, 1]          # by angle, not by length or dot product
    torch.testing.assert_close(sims, F.cosine_similarity(w[[4, 1]], w[0:1]))
    ids, _ = nearest_neighbours(w, torch.tensor([1.0, 0.0]), k=1)
    assert ids.tolist() == [0]             # a vector query keeps every token
    ids, _ = nearest_neighbours(w, 0, k=10, exclude=[4])
    assert ids.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        nearest_neighbours(w, 9)
    with pytest.raises(ValueError, match="shape"):
        nearest_neighbours(w, torch.ones(3))


def test_pca_2d_recovers_the_main_directions():
    torch.manual_seed(0)
    t = torch.randn(200)
    s = torch.randn(200) * 0.3
    x = torch.stack([t, s, torch.zeros(200), torch.zeros(200)], 1) @ torch.linalg.qr(torch.randn(4, 4))[0].T
    p = pca_2d(x)
    assert p.shape == (200, 2)
    assert abs(torch.corrcoef(torch.stack([p[:, 0], t]))[0, 1]) > 0.999
    assert abs(torch.corrcoef(torch.stack([p[:, 1], s]))[0, 1]) > 0.99
    torch.testing.assert_close(pca_2d(x), p)               # deterministic signs
    with pytest.raises(ValueError):
        pca_2d(torch.randn(1, 4))


def test_word_vector_uses_the_leading_space_for_english(tokenizer):
    w = torch.randn(len(tokenizer), 8)
    vec, ids = word_vector(w, tokenizer, "apples")
    assert ids == tokenizer.encode(" apples", add_special_tokens=False)
    torch.testing.assert_close(vec, w[ids].mean(0))
    _, ids_zh = word_vector(w, tokenizer, "世界")
    assert ids_zh == tokenizer.encode("世界", add_special_tokens=False)
