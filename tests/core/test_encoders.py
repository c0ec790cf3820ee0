from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lsr.encoders import (
    ENCODER_CONFIG_FILE,
    DenseEncoder,
    InferenceFreeEncoder,
    SpladeEncoder,
    load_encoder,
)
from lsr.encoders.config import EncoderConfig
from lsr.sparse import SparseBatch

TEXTS = ["statins and breast cancer risk in women", "fish oil", "green tea coffee and the heart disease study",
         "salt"]


def naive_splade(encoder, texts, max_length):
    """The textbook computation: full logits, log(1 + ReLU), masked max, special tokens zeroed."""
    enc = encoder.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        logits = encoder.model(**enc).logits
    weights = torch.log1p(torch.relu(logits)) * enc["attention_mask"].unsqueeze(-1)
    pooled = weights.amax(dim=1)
    pooled[:, encoder.special_ids] = 0
    return pooled.numpy()


def to_dense(batch: SparseBatch, vocab: int) -> np.ndarray:
    out = np.zeros((len(batch), vocab), dtype=np.float32)
    for i in range(len(batch)):
        ids, w = batch.row(i)
        out[i, ids] = w
    return out


def test_splade_chunked_pooling_matches_naive(tiny_mlm_dir):
    encoder = load_encoder(tiny_mlm_dir, kind="splade", device="cpu")
    assert isinstance(encoder, SpladeEncoder)
    encoder.pooler.chunk_tokens = 7  # force many chunks, including documents longer than a chunk
    got = to_dense(encoder.encode_documents(TEXTS, batch_size=3), encoder.vocab_size)
    expected = naive_splade(encoder, TEXTS, encoder.config.max_document_length)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert (got > 0).sum() > 0, "the tiny model should activate some terms"
    assert (got[:, encoder.special_ids] == 0).all()


def test_splade_queries_use_query_length(tiny_mlm_dir):
    encoder = load_encoder(tiny_mlm_dir, kind="splade", device="cpu", max_query_length=3)
    got = to_dense(encoder.encode_queries(TEXTS), encoder.vocab_size)
    np.testing.assert_allclose(got, naive_splade(encoder, TEXTS, 3), rtol=1e-5, atol=1e-6)


def test_rows_come_back_in_input_order(tiny_mlm_dir):
    encoder = load_encoder(tiny_mlm_dir, kind="splade", device="cpu")
    together = encoder.encode_documents(TEXTS, batch_size=2)
    for i, text in enumerate(TEXTS):
        alone = encoder.encode_documents([text])
        np.testing.assert_array_equal(together.row(i)[0], alone.row(0)[0])
        np.testing.assert_allclose(together.row(i)[1], alone.row(0)[1], rtol=1e-5)


def test_inference_free_queries_are_idf_of_distinct_tokens(tiny_mlm_dir, tiny_idf_file):
    encoder = load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu")
    assert isinstance(encoder, InferenceFreeEncoder) and not encoder.needs_model_for_queries
    table = json.loads(tiny_idf_file.read_text())
    batch = encoder.encode_queries(["statin statin cancer", "zzzz qqqq", ""])
    ids, weights = batch.row(0)
    tokens = encoder.tokenizer.convert_ids_to_tokens(ids.tolist())
    assert sorted(tokens) == ["cancer", "statin"]  # distinct, special tokens ([CLS], [SEP]) dropped
    assert dict(zip(tokens, weights.tolist())) == pytest.approx({t: table[t] for t in tokens})
    assert len(batch.row(1)[0]) == 0  # only unknown tokens -> empty vector, not an error
    assert len(batch.row(2)[0]) == 0


def test_inference_free_needs_idf(tiny_mlm_dir):
    with pytest.raises(ValueError, match="--idf"):
        load_encoder(tiny_mlm_dir, kind="inference-free", device="cpu")


def test_plain_directory_needs_kind(tiny_mlm_dir):
    with pytest.raises(ValueError, match="--kind"):
        load_encoder(tiny_mlm_dir)


@pytest.mark.parametrize("kind", ["splade", "inference-free", "dense"])
def test_save_load_round_trips_exactly(kind, tiny_mlm_dir, tiny_dense_dir, tiny_idf_file, tmp_path):
    source = tiny_dense_dir if kind == "dense" else tiny_mlm_dir
    encoder = load_encoder(source, kind=kind, idf=tiny_idf_file if kind == "inference-free" else None,
                           device="cpu", max_document_length=12)
    saved = encoder.save(tmp_path / "enc")
    assert (saved / ENCODER_CONFIG_FILE).exists()
    again = load_encoder(saved, device="cpu")
    assert type(again) is type(encoder)
    assert again.config.kind == kind and again.config.max_document_length == 12
    assert again.identity() == encoder.identity()
    for side in ("encode_documents", "encode_queries"):
        a, b = getattr(encoder, side)(TEXTS), getattr(again, side)(TEXTS)
        if kind == "dense":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_array_equal(a.indices, b.indices)
            np.testing.assert_array_equal(a.weights, b.weights)


def test_load_rejects_conflicting_kind(tiny_mlm_dir, tmp_path):
    saved = load_encoder(tiny_mlm_dir, kind="splade", device="cpu").save(tmp_path / "enc")
    with pytest.raises(ValueError, match="drop --kind"):
        load_encoder(saved, kind="dense")


def test_dense_is_normalized_mean_pooling(tiny_dense_dir):
    encoder = load_encoder(tiny_dense_dir, kind="dense", device="cpu")
    assert isinstance(encoder, DenseEncoder)
    got = encoder.encode_documents(TEXTS, batch_size=3)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    enc = encoder.tokenizer(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        hidden = encoder.model(**enc).last_hidden_state[0].mean(0)
    np.testing.assert_allclose(got[0], (hidden / hidden.norm()).numpy(), rtol=1e-4, atol=1e-6)


def test_bf16_is_close_to_fp32(tiny_mlm_dir):
    fp32 = load_encoder(tiny_mlm_dir, kind="splade", device="cpu", dtype="fp32")
    bf16 = load_encoder(tiny_mlm_dir, kind="splade", device="cpu", dtype="bf16")
    a, b = to_dense(fp32.encode_documents(TEXTS), fp32.vocab_size), to_dense(bf16.encode_documents(TEXTS), bf16.vocab_size)
    assert np.abs(a - b).max() < 0.1


def test_sparse_batch_validate_names_the_problem():
    bad_id = SparseBatch.from_rows([(np.array([1]), np.array([1.0])), (np.array([99]), np.array([1.0]))])
    with pytest.raises(ValueError, match="row 1: token id 99 is outside the vocabulary"):
        bad_id.validate(50)
    for value in (np.nan, np.inf, -1.0):
        with pytest.raises(ValueError, match="not a finite non-negative"):
            SparseBatch.from_rows([(np.array([1]), np.array([value]))]).validate(50)


def test_encoder_config_rejects_unknown_kind_and_future_version():
    with pytest.raises(ValueError, match="unknown encoder kind"):
        EncoderConfig(kind="colbert")
    with pytest.raises(ValueError, match="upgrade lsr"):
        EncoderConfig(kind="splade", format_version=99)


def test_sparse_batch_take_reorders_rows_including_empty_ones():
    rows = [(np.array([1, 4]), np.array([0.5, 1.0])), (np.array([], dtype=int), np.array([])),
            (np.array([2]), np.array([3.0]))]
    taken = SparseBatch.from_rows(rows).take([2, 0, 1, 0])
    expected = [rows[2], rows[0], rows[1], rows[0]]
    assert len(taken) == 4
    for i, (ids, weights) in enumerate(expected):
        np.testing.assert_array_equal(taken.row(i)[0], ids)
        np.testing.assert_allclose(taken.row(i)[1], weights)


def test_missing_encoder_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder directory .* does not exist"):
        load_encoder(tmp_path / "nosuch", kind="splade")
