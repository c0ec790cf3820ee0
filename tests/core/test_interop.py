"""Models across layouts, checked by the real library: tiny random BERT and DistilBERT MLMs wrapped as
sentence-transformers SparseEncoders (siamese and inference-free, every pooling and activation) give the same vectors
through lsr.load_encoder and through SparseEncoder; OpenSearch's classic layout gives what its model card computes;
lsr's own encoders exported with `lsr export-model` give lsr's vectors through SparseEncoder; bad directories are
refused with the file and the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lsr.encoders import InferenceFreeEncoder, SpladeEncoder, load_encoder
from lsr.errors import EncoderError
from tests.conftest import VOCAB, WORDS

st = pytest.importorskip("sentence_transformers", reason="the dev extra installs sentence-transformers")
try:  # sentence-transformers 6 moved the modules; 5.x has only the older paths
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SparseStaticEmbedding, SpladePooling
except ImportError:  # pragma: no cover - sentence-transformers 5.x
    from sentence_transformers.models import Router
    from sentence_transformers.sparse_encoder.models import MLMTransformer, SparseStaticEmbedding, SpladePooling

# sentence-transformers' own similarity code warns that torch's sparse CSR tensors are in beta: not lsr's concern
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

QUERIES = ["statin and breast cancer", "vitamin d in fish oil", "coffee", "salt, sugar and blood pressure ?",
           "unknownword green tea [SEP] risk"]
DOCUMENTS = [
    "a study of statin use in women with breast cancer",
    "fish oil and heart disease risk in men",
    "green tea and coffee in the diet of women and men",
    "salt sugar fat protein fiber and blood pressure " * 6,
    "zzz yyy",
]


def make_mlm(directory: Path, family: str, seed: int) -> Path:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast, DistilBertConfig, DistilBertForMaskedLM

    directory.mkdir(parents=True, exist_ok=True)
    BertTokenizerFast(vocab={t: i for i, t in enumerate(VOCAB)}, do_lower_case=True).save_pretrained(directory)
    torch.manual_seed(seed)
    if family == "bert":
        model = BertForMaskedLM(BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
        bias = model.cls.predictions.bias
    else:
        model = DistilBertForMaskedLM(DistilBertConfig(vocab_size=len(VOCAB), dim=32, n_layers=1, n_heads=2,
                                                       hidden_dim=64, max_position_embeddings=64))
        bias = model.vocab_projector.bias
    with torch.no_grad():  # spread the random logits so ReLU keeps a fair share of the vocabulary
        bias.normal_(0.0, 1.0)
    model.save_pretrained(directory)
    return directory


def st_vectors(model, texts: list[str], side: str) -> np.ndarray:
    encode = model.encode_query if side == "query" else model.encode_document
    out = encode(texts, convert_to_tensor=True, batch_size=3)
    return (out.to_dense() if out.is_sparse else out).float().cpu().numpy()


def lsr_vectors(encoder, texts: list[str], side: str) -> np.ndarray:
    batch = encoder.encode_queries(texts) if side == "query" else encoder.encode_documents(texts, batch_size=3)
    dense = np.zeros((len(texts), encoder.vocab_size), dtype=np.float32)
    for row in range(len(texts)):
        terms, weights = batch.row(row)
        dense[row, terms] = weights
    return dense


def assert_same_vectors(st_model, encoder) -> None:
    for side, texts in (("query", QUERIES), ("document", DOCUMENTS)):
        expected, got = st_vectors(st_model, texts, side), lsr_vectors(encoder, texts, side)
        assert expected.shape == got.shape
        assert (expected > 0).sum() > len(texts), "the random model should give non-trivial vectors"
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0, err_msg=side)


def static_table(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(len(VOCAB), generator=generator) * 3


@pytest.mark.parametrize("family", ["bert", "distilbert"])
@pytest.mark.parametrize("pooling,activation", [("max", "relu"), ("max", "log1p_relu"), ("sum", "relu")])
def test_sentence_transformers_layouts_give_the_same_vectors(tmp_path, family, pooling, activation):
    from sentence_transformers import SparseEncoder

    base = make_mlm(tmp_path / "hf", family, seed=3)
    siamese = SparseEncoder(modules=[MLMTransformer(str(base), max_seq_length=24),
                                     SpladePooling(pooling_strategy=pooling, activation_function=activation)])
    siamese.save(str(tmp_path / "siamese"))
    encoder = load_encoder(tmp_path / "siamese")
    assert isinstance(encoder, SpladeEncoder) and encoder.config.max_document_length == 24
    assert (encoder.config.pooling, encoder.config.zero_special_tokens) == (pooling, False)
    assert_same_vectors(SparseEncoder(str(tmp_path / "siamese")), encoder)

    tokenizer = siamese[0].tokenizer
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=tokenizer, weight=static_table(1), frozen=True)],
        document_modules=[MLMTransformer(str(base), max_seq_length=24),
                          SpladePooling(pooling_strategy=pooling, activation_function=activation)])
    SparseEncoder(modules=[router], similarity_fn_name="dot").save(str(tmp_path / "inference-free"))
    encoder = load_encoder(tmp_path / "inference-free")
    assert isinstance(encoder, InferenceFreeEncoder) and not encoder.needs_model_for_queries
    assert_same_vectors(SparseEncoder(str(tmp_path / "inference-free")), encoder)


def test_opensearch_classic_layout_computes_what_its_model_card_does(tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    directory = make_mlm(tmp_path / "doc-v2", "distilbert", seed=5)
    table = {word: round(0.5 + i / 7, 4) for i, word in enumerate(WORDS)}
    (directory / "idf.json").write_text(json.dumps(table))
    encoder = load_encoder(directory)
    assert isinstance(encoder, InferenceFreeEncoder) and encoder.config.extra["layout"] == "opensearch"

    # the model card's code (opensearch-neural-sparse-encoding-doc-v2-distill, "Usage (HuggingFace)")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForMaskedLM.from_pretrained(directory).eval()
    special = list(tokenizer.all_special_ids)
    features = tokenizer(DOCUMENTS, padding=True, truncation=True, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        output = model(**features)[0]
    values, _ = torch.max(output * features["attention_mask"].unsqueeze(-1), dim=1)
    values = torch.log(1 + torch.relu(values))
    values[:, special] = 0
    np.testing.assert_allclose(lsr_vectors(encoder, DOCUMENTS, "document"), values.numpy(), atol=1e-5, rtol=0)

    idf = torch.zeros(len(VOCAB))
    for token, weight in table.items():
        idf[tokenizer.convert_tokens_to_ids(token)] = weight
    query = tokenizer(QUERIES, padding=True, truncation=True, return_tensors="pt", return_token_type_ids=False)
    presence = torch.zeros(len(QUERIES), len(VOCAB))
    presence[torch.arange(len(QUERIES)).unsqueeze(-1), query["input_ids"]] = 1
    expected = presence * idf
    expected[:, special] = 0
    np.testing.assert_allclose(lsr_vectors(encoder, QUERIES, "query"), expected.numpy(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["inference-free", "splade"])
def test_lsr_encoders_exported_load_in_sentence_transformers_with_the_same_vectors(tmp_path, tiny_mlm_dir,
                                                                                   tiny_idf_file, kind):
    from sentence_transformers import SparseEncoder

    from lsr.cli import main

    original = load_encoder(tiny_mlm_dir, kind=kind, idf=tiny_idf_file if kind == "inference-free" else None,
                            max_query_length=32, max_document_length=32)
    original.save(tmp_path / "lsr")
    assert main(["export-model", "--format", "sentence-transformers", "--encoder", str(tmp_path / "lsr"),
                 str(tmp_path / "st")]) == 0
    exported = SparseEncoder(str(tmp_path / "st"))
    assert_same_vectors(exported, original)  # special tokens zeroed by lsr, and by SparseEncoder through the bias
    reloaded = load_encoder(tmp_path / "st")  # and lsr reads its export back: the same vectors again
    for side, texts in (("query", QUERIES), ("document", DOCUMENTS)):
        np.testing.assert_allclose(lsr_vectors(reloaded, texts, side), lsr_vectors(original, texts, side), atol=1e-6)


def test_directories_lsr_cannot_reproduce_are_refused_with_the_file_and_reason(tmp_path, tiny_mlm_dir):
    from sentence_transformers import SparseEncoder

    # neither layout
    plain = tmp_path / "plain"
    shutil.copytree(tiny_mlm_dir, plain)
    with pytest.raises(EncoderError, match="no layout lsr reads"):
        load_encoder(plain)

    # an unknown activation in SpladePooling's config
    siamese = tmp_path / "siamese"
    SparseEncoder(modules=[MLMTransformer(str(tiny_mlm_dir)), SpladePooling("max")]).save(str(siamese))
    pooling = siamese / "1_SpladePooling" / "config.json"
    settings = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**settings, "activation_function": "gelu"}))
    with pytest.raises(EncoderError, match=r"1_SpladePooling/config.json: activation_function 'gelu' is unknown"):
        load_encoder(siamese)
    pooling.write_text(json.dumps(settings))
    load_encoder(siamese)

    # an unknown activation in lsr's own config
    lsr_dir = tmp_path / "lsr"
    load_encoder(tiny_mlm_dir, kind="splade").save(lsr_dir)
    config = json.loads((lsr_dir / "lsr_encoder.json").read_text())
    (lsr_dir / "lsr_encoder.json").write_text(json.dumps({**config, "activation": "softplus"}))
    with pytest.raises(EncoderError, match=r"lsr_encoder.json: unknown activation 'softplus'"):
        load_encoder(lsr_dir)

    # the query table's tokenizer is another vocabulary than the document model's
    from transformers import BertTokenizerFast

    other = BertTokenizerFast(vocab={t: i for i, t in enumerate([*VOCAB[:5], *reversed(WORDS)])}, do_lower_case=True)
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=other, weight=static_table(2), frozen=True)],
        document_modules=[MLMTransformer(str(tiny_mlm_dir)), SpladePooling("max")])
    SparseEncoder(modules=[router]).save(str(tmp_path / "mismatch"))
    with pytest.raises(EncoderError, match=r"query_0_SparseStaticEmbedding: the query table's tokenizer has another "
                                           "vocabulary"):
        load_encoder(tmp_path / "mismatch")

    # an OpenSearch table made for another vocabulary
    classic = tmp_path / "classic"
    shutil.copytree(tiny_mlm_dir, classic)
    (classic / "idf.json").write_text(json.dumps({"statin": 2.0, "Ġstatin": 1.5, "Ġthe": 0.1}))
    with pytest.raises(EncoderError, match=r"classic/idf.json: 2 of its 3 tokens are not in the model's vocabulary"):
        load_encoder(classic)

    # prompts sentence-transformers would prepend
    prompted = tmp_path / "prompted"
    SparseEncoder(modules=[MLMTransformer(str(tiny_mlm_dir)), SpladePooling("max")],
                  prompts={"query": "query: "}).save(str(prompted))
    with pytest.raises(EncoderError, match="config_sentence_transformers.json: prompts"):
        load_encoder(prompted)


def test_sentence_transformers_task_windows_are_read_and_what_changes_tokenizing_is_refused(tmp_path, tiny_mlm_dir):
    from sentence_transformers import SparseEncoder

    directory = tmp_path / "windows"
    SparseEncoder(modules=[MLMTransformer(str(tiny_mlm_dir), max_seq_length=24), SpladePooling("max")]).save(
        str(directory))
    settings_file = directory / "sentence_bert_config.json"
    settings = json.loads(settings_file.read_text())
    settings_file.write_text(json.dumps({**settings, "query_length": 4, "document_length": 7}))
    encoder = load_encoder(directory)
    assert (encoder.config.max_query_length, encoder.config.max_document_length) == (4, 7)
    assert_same_vectors(SparseEncoder(str(directory)), encoder)  # both cut queries at 4 tokens, documents at 7

    settings_file.write_text(json.dumps({**settings, "processing_kwargs": {"text": {"max_length": 5}}}))
    with pytest.raises(EncoderError, match="sentence_bert_config.json: processing_kwargs"):
        load_encoder(directory)
    settings_file.write_text(json.dumps({**settings, "some_future_setting": 1}))
    with pytest.raises(EncoderError, match=r"settings \['some_future_setting'\] are unknown"):
        load_encoder(directory)


@pytest.mark.parametrize("file,content,message", [
    ("modules.json", ["a", "b"], "expected a non-empty list of modules"),
    ("modules.json", {"0": 1}, "expected a JSON array"),
    ("1_SpladePooling/config.json", {"pooling_strategy": "max", "activation_function": ["relu"]},
     "activation_function"),
    ("sentence_bert_config.json", [], "expected a JSON object"),
    ("config_sentence_transformers.json", {"prompts": ["query: "]}, "prompts"),
    ("tokenizer_config.json", "not json", "not valid JSON"),
])
def test_malformed_sentence_transformers_files_are_named(tmp_path, tiny_mlm_dir, file, content, message):
    from sentence_transformers import SparseEncoder

    directory = tmp_path / "broken"
    SparseEncoder(modules=[MLMTransformer(str(tiny_mlm_dir)), SpladePooling("max")]).save(str(directory))
    (directory / file).write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(EncoderError, match=message) as error:
        load_encoder(directory)
    assert file.split("/")[-1] in str(error.value) or "broken" in str(error.value)


def test_export_model_never_overwrites_what_is_not_an_export(tmp_path, tiny_mlm_dir, tiny_idf_file):
    from lsr.cli import main
    from lsr.encoders.interop import save_sentence_transformers

    encoder_dir = tmp_path / "enc"
    load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file).save(encoder_dir)
    before = sorted(p.name for p in encoder_dir.iterdir())
    assert main(["export-model", "--encoder", str(encoder_dir), str(encoder_dir)]) == 2  # onto itself
    assert main(["export-model", "--encoder", str(encoder_dir), str(encoder_dir / "st")]) == 2  # inside it
    assert sorted(p.name for p in encoder_dir.iterdir()) == before
    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    (unrelated / "keep.txt").write_text("mine")
    with pytest.raises(EncoderError, match="not an earlier lsr export"):
        save_sentence_transformers(load_encoder(encoder_dir), unrelated)
    assert (unrelated / "keep.txt").read_text() == "mine"
    out = tmp_path / "st"
    assert main(["export-model", "--encoder", str(encoder_dir), str(out)]) == 0
    assert main(["export-model", "--encoder", str(encoder_dir), str(out)]) == 0  # an earlier export is replaced
    assert not list(tmp_path.glob("*.tmp-export"))
