"""Training on a tiny random BERT: the sparse-gradient pooler, data preparation, a 20-step run, resume, teachers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lsr.encoders import load_encoder
from lsr.encoders.batching import pad_batch
from lsr.training.data import (
    BODY_SUFFIX,
    Example,
    TrainingTexts,
    examples_from_qrels,
    mine_negatives,
    read_examples,
    self_supervised_examples,
    write_examples,
)
from lsr.training.trainer import TrainConfig, Trainer
from tests.conftest import TINY_DOCS, write_jsonl

QUERIES = {
    "q1": "statins and breast cancer", "q2": "fish oil heart", "q3": "salt and blood pressure",
    "q4": "soy protein", "q5": "green tea coffee", "q6": "cancer risk in women", "q7": "heart disease diet",
    "q8": "sugar and salt",
}
QRELS = [("q1", "d1"), ("q2", "d2"), ("q3", "d4"), ("q4", "d5"), ("q5", "d3"), ("q6", "d1"), ("q7", "d2"),
         ("q8", "d4")]


@pytest.fixture()
def tiny_beir(tmp_path: Path) -> Path:
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    write_jsonl(root / "corpus.jsonl", TINY_DOCS)
    write_jsonl(root / "queries.jsonl", [{"_id": q, "text": t} for q, t in QUERIES.items()])
    for split, pairs in (("train", QRELS), ("dev", QRELS[:4])):
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in pairs))
    return root


def test_forward_train_equals_dense_autograd(tiny_mlm_dir):
    encoder = load_encoder(tiny_mlm_dir, kind="splade")
    pooler = encoder.pooler.eval()
    ids, mask = pad_batch(encoder.tokenize(["statins and breast cancer risk", "fish", "the diet of women and men"],
                                           32), encoder.tokenizer.pad_token_id, "cpu")
    probe = torch.randn(3, encoder.vocab_size, generator=torch.Generator().manual_seed(0))

    def weights_and_grads(fn):
        encoder.model.zero_grad()
        weights = fn()
        (weights * probe).sum().backward()
        return weights.detach(), {n: p.grad.clone() for n, p in encoder.model.named_parameters() if p.grad is not None}

    def dense():
        w = torch.log1p(torch.relu(pooler.max_logits(ids, mask)))
        w[:, pooler.special_ids] = 0.0
        return w

    w_dense, g_dense = weights_and_grads(dense)
    w_sparse, g_sparse = weights_and_grads(lambda: pooler.forward_train(ids, mask, "fp32"))
    assert (w_dense > 0).sum() > 10
    torch.testing.assert_close(w_sparse, w_dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w_sparse, pooler(ids, mask, "fp32"), atol=1e-5, rtol=1e-5)
    for name, grad in g_dense.items():
        if name.endswith("key.bias"):  # mathematically zero (softmax shift invariance); both are rounding noise
            continue
        torch.testing.assert_close(g_sparse[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_examples_self_supervised_and_mining(tiny_beir: Path, tmp_path: Path):
    documents = TrainingTexts.from_corpus(tiny_beir)
    examples = examples_from_qrels(tiny_beir, "train", documents)
    assert [(e.query_id, e.positive) for e in examples] == sorted(QRELS)
    titles = {d["_id"]: d["title"] for d in TINY_DOCS if d["title"]}
    pairs = self_supervised_examples(documents, titles, min_title_words=1)
    assert pairs[0].query == "Statins and breast cancer" and pairs[0].positive == "d1" + BODY_SUFFIX
    assert documents["d1" + BODY_SUFFIX] == "a study of statin use in women"  # body only, no title
    ranked = ["d1", "d2", "d3", "d4", "d5"]
    mined = mine_negatives(examples + pairs, lambda query, depth: ranked[:depth], count=2, depth=5,
                           relevant={"q1": {"d1", "d3"}}, seed=0)
    q1 = next(e for e in mined if e.query_id == "q1")
    assert len(q1.negatives) == 2 and not {"d1", "d3"} & set(q1.negatives)
    body = next(e for e in mined if e.query_id == "title:d1")
    assert all(n.endswith(BODY_SUFFIX) and n != "d1" + BODY_SUFFIX for n in body.negatives)
    path = tmp_path / "examples.jsonl"
    assert write_examples(mined, path) == len(mined)
    assert read_examples(path, documents) == mined


def test_read_examples_errors_name_file_and_line(tmp_path: Path, tiny_beir: Path):
    documents = TrainingTexts.from_corpus(tiny_beir)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query_id": "q", "query": "x", "positive": "d1"}, "{broken"])
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a training example"):
        read_examples(bad)
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"query_id": "q", "query": "x", "positive": "nope"}])
    with pytest.raises(ValueError, match=r"unknown.jsonl:1: document 'nope' is not in the corpus"):
        read_examples(unknown, documents)
    with pytest.raises(FileNotFoundError, match="lsr train. prepares them"):
        read_examples(tmp_path / "missing.jsonl")


def _config(tiny_mlm_dir: Path, tiny_idf_file: Path, beir: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(kind="inference-free", base_model=str(tiny_mlm_dir), idf=str(tiny_idf_file), beir=str(beir),
                    output=str(out), negatives=1, negative_depth=5, batch_size=4, steps=20, lr=3e-3, warmup_steps=2,
                    flops_documents=1e-4, flops_warmup_steps=5, eval_every=10, eval_queries=0, eval_documents=0,
                    checkpoint_every=10, max_document_length=32, seed=3, teachers=["bm25"],
                    cache_dir=str(out.parent / "cache"))
    settings.update(overrides)
    return TrainConfig(**settings)


def test_twenty_steps_lower_the_loss_and_round_trip(tiny_mlm_dir, tiny_idf_file, tiny_beir, tmp_path):
    config = _config(tiny_mlm_dir, tiny_idf_file, tiny_beir, tmp_path / "model", save_dtype="fp16",
                     final_eval_split="dev", eval_start=False)
    trainer = Trainer(config, log=lambda _: None)
    fixed = [trainer.examples[i] for i in range(len(trainer.examples))]
    with torch.no_grad():
        before = _full_loss(trainer, fixed)
    out = trainer.fit()
    with torch.no_grad():
        after = _full_loss(trainer, fixed)
    assert after < before * 0.9, (before, after)
    log = [json.loads(line) for line in (config.work / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 20 and {"contrastive", "kl", "flops_d", "doc_nnz", "lr"} <= set(log[0])
    assert [h["step"] for h in json.loads((out / "training.json").read_text())["history"]] == [10, 20]
    card = (out / "README.md").read_text()
    assert "lsr train" in card and "dev, full corpus" in card
    # the output is an encoder directory that lsr loads unchanged, stored in fp16, computing like the trained one
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        assert all(handle.get_tensor(k).dtype == torch.float16 for k in handle.keys())
    loaded = load_encoder(out)
    assert loaded.config.kind == "inference-free" and not loaded.needs_model_for_queries
    # trained on <= 32 tokens, saved with the base model's length: the default 256, cut to the tiny model's 128 positions
    assert loaded.config.max_document_length == 128
    texts = [d["text"] for d in TINY_DOCS]
    got, want = loaded.encode_documents(texts), trainer.encoder.encode_documents(texts)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.weights, want.weights, rtol=1e-5, atol=1e-6)


def test_the_starting_model_is_evaluated_and_kept_when_training_does_not_help(tiny_mlm_dir, tiny_idf_file,
                                                                              tiny_beir, tmp_path):
    config = _config(tiny_mlm_dir, tiny_idf_file, tiny_beir, tmp_path / "model", steps=10, eval_every=5,
                     checkpoint_every=0, index_document_length=48)
    trainer = Trainer(config, log=lambda _: None)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    real = trainer.evaluate
    dev = iter([0.5, 0.4, 0.45])  # dev nDCG@10 at steps 0, 5, 10: training only hurts

    moved = []

    def scripted(*args, **kwargs):
        moved.append(any(not torch.equal(v, start[k]) for k, v in trainer.model.state_dict().items()))
        return {**real(*args, **kwargs), "ndcg@10": next(dev)}

    trainer.evaluate = scripted
    out = trainer.fit()
    info = json.loads((out / "training.json").read_text())
    assert [h["step"] for h in info["history"]] == [0, 5, 10] and info["best"]["step"] == 0
    assert moved == [False, True, True]  # evaluated before any step, then on trained weights
    kept = load_encoder(out)
    assert kept.config.max_document_length == 48
    assert all(torch.equal(kept.model.state_dict()[k], start[k]) for k in start)
    assert "holds the starting weights" in (out / "README.md").read_text()


def _full_loss(trainer: Trainer, examples: list[Example]) -> float:
    trainer.model.eval()
    total = 0.0
    for start in range(0, len(examples), 4):
        batch = examples[start : start + 4]
        docs = [trainer.documents[d] for e in batch for d in e.candidates()]
        ids, mask = pad_batch(trainer._tokens(docs, 32), trainer.encoder.tokenizer.pad_token_id, "cpu")
        scores = trainer._query_weights([e.query for e in batch]) @ trainer.pooler.forward_train(ids, mask).T
        width = len(batch[0].candidates())
        total += torch.nn.functional.cross_entropy(scores, torch.arange(len(batch)) * width).item() * len(batch)
    return total / len(examples)


def test_resume_gives_the_same_next_step(tiny_mlm_dir, tiny_idf_file, tiny_beir, tmp_path):
    straight = Trainer(_config(tiny_mlm_dir, tiny_idf_file, tiny_beir, tmp_path / "a", steps=12, eval_every=0,
                               checkpoint_every=10), log=lambda _: None)
    for _ in range(11):
        expected = straight.train_step()
    resumed = Trainer(_config(tiny_mlm_dir, tiny_idf_file, tiny_beir, tmp_path / "b", steps=12, eval_every=0,
                              checkpoint_every=10), log=lambda _: None)
    for _ in range(10):
        resumed.train_step()
    resumed.save_checkpoint()
    fresh = Trainer(_config(tiny_mlm_dir, tiny_idf_file, tiny_beir, tmp_path / "b", steps=12, eval_every=0,
                            checkpoint_every=10), log=lambda _: None)
    assert fresh.load_checkpoint() == 10
    got = fresh.train_step()
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    for (name, a), b in zip(straight.model.state_dict().items(), fresh.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_teacher_scores_are_cached(tiny_mlm_dir, tiny_idf_file, tiny_beir, tmp_path, tiny_dense_dir):
    from lsr.training.teachers import EncoderTeacher, teacher_scores

    documents = TrainingTexts.from_corpus(tiny_beir)
    examples = [Example("q1", "statins and breast cancer", "d1", ["d2"]), Example("q2", "fish oil", "d2", ["d4"])]
    teacher = EncoderTeacher(tiny_dense_dir, "dense")
    first = teacher_scores(teacher, examples, documents, tmp_path / "cache")
    assert first.shape == (2, 2) and len(list((tmp_path / "cache").glob("*.npy"))) == 1
    teacher.score = lambda pairs: pytest.fail("recomputed despite the cache")
    np.testing.assert_array_equal(teacher_scores(teacher, examples, documents, tmp_path / "cache"), first)
    sparse = teacher_scores(EncoderTeacher(tiny_mlm_dir, "splade"), examples, documents, None)
    assert sparse.shape == (2, 2) and np.isfinite(sparse).all()


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="kind"):
        TrainConfig(kind="colbert")
    with pytest.raises(ValueError, match="teacher weights"):
        TrainConfig(teachers=["bm25"], teacher_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="base model"):
        Trainer(TrainConfig(output="x"))


def test_lsr_train_cli_flags_override_the_config(tiny_mlm_dir, tiny_idf_file, tiny_beir, tmp_path, capsys):
    from lsr.cli import main

    config = tmp_path / "train.yaml"
    config.write_text(f"kind: inference-free\nbase_model: {tiny_mlm_dir}\nidf: {tiny_idf_file}\nbeir: {tiny_beir}\n"
                      f"steps: 50\nbatch_size: 4\nnegative_depth: 5\nmax_document_length: 32\n"
                      f"cache_dir: {tmp_path / 'cache'}\n")
    out = tmp_path / "model"
    assert main(["train", "--config", str(config), "--steps", "2", "--eval-every", "0", "--checkpoint-every", "0",
                 "--freeze-embeddings", "true", "--teachers", "bm25", "--output", str(out)]) == 0
    saved = json.loads((out / "training.json").read_text())["config"]
    assert saved["steps"] == 2 and saved["freeze_embeddings"] is True and saved["teachers"] == ["bm25"]
    assert saved["command"].startswith("lsr train --config ") and "--freeze-embeddings true" in saved["command"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: inference-free\nlearning_rate: 1\n")
    assert main(["train", "--config", str(bad)]) != 0
    assert "unknown settings ['learning_rate']" in capsys.readouterr().err


def test_lsr_eval_baseline_bm25(tiny_beir, tmp_path):
    from lsr.cli import main

    output = tmp_path / "bm25.json"
    assert main(["eval", "--beir", str(tiny_beir), "--baseline", "bm25", "--split", "dev", "--output", str(output)]) == 0
    metrics = json.loads(output.read_text())
    assert metrics["queries"] == 4 and metrics["ndcg@10"] > 0.5  # the tiny queries share words with their documents
    assert main(["eval", "--beir", str(tiny_beir)]) != 0  # neither --index nor --baseline
