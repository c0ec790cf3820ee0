"""Fixtures: a tiny random BERT (MLM and plain) with a small WordPiece vocabulary, built in the test, no files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("LSR_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
NFCORPUS = SHARED / "data" / "beir" / "nfcorpus"
SPLADE_TINY = SHARED / "models" / "splade-tiny"
OPENSEARCH_IDF = SHARED / "models" / "opensearch-idf" / "idf.json"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"

WORDS = ("the a of and in is to statin statins breast cancer heart disease diet vitamin fish oil risk study "
         "women men blood pressure sugar salt fat protein fiber coffee tea milk egg meat bean soy green "
         "##s ##ing ##ed ##er ##ly").split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def make_tiny_model_dir(directory: Path, mlm: bool = True, seed: int = 0) -> Path:
    """Save a random 1-layer BERT (hidden 32) and its WordPiece tokenizer as a plain Hugging Face directory."""
    from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(VOCAB)}, do_lower_case=True)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    model = BertForMaskedLM(config) if mlm else BertModel(config)
    with torch.no_grad():  # random init gives tiny logits; spread them so ReLU keeps a useful number of terms
        if mlm:
            model.cls.predictions.bias.normal_(0.0, 1.0)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-mlm"))


@pytest.fixture(scope="session")
def tiny_dense_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-dense"), mlm=False)


@pytest.fixture(scope="session")
def tiny_idf_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("idf") / "idf.json"
    path.write_text(json.dumps({word: 1.0 + i / 10 for i, word in enumerate(WORDS)}))
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


TINY_DOCS = [
    {"_id": "d1", "title": "Statins and breast cancer", "text": "a study of statin use in women"},
    {"_id": "d2", "title": "Fish oil", "text": "fish oil and heart disease risk"},
    {"_id": "d3", "title": "", "text": "green tea and coffee in the diet"},
    {"_id": "d4", "title": "Salt", "text": "salt sugar and blood pressure"},
    {"_id": "d5", "title": "Soy", "text": "soy bean protein and fiber for men"},
]
