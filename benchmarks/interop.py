"""Interop on NFCorpus, in one run: the shipped default model through sentence-transformers, and an index's vectors
through Qdrant.

    python benchmarks/interop.py model --output var/bench/interop-model.json
    python benchmarks/interop.py qdrant --index var/indexes/nf-default --output var/bench/interop-qdrant.json

- ``model``: ``lsr export-model --format sentence-transformers`` of the shipped default encoder; then every NFCorpus
  document and test query encoded by ``SparseEncoder(DIR)`` (encode_document / encode_query) and by lsr's original
  encoder (max |difference|, documents/s of both); then test nDCG@10 / R@100 of three indexes: lsr's original
  encoder, the export read back by ``lsr.load_encoder``, and the vectors ``SparseEncoder`` produced (queries encoded
  by the reloaded export).
- ``qdrant``: the index's vectors into an in-process Qdrant (``qdrant-client``'s local mode, ``:memory:``), then
  every test query through lsr's exact top-10 and Qdrant's: recall of lsr's top-10 in Qdrant's, both latencies
  (encoded query given to both; one query at a time).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import NFCORPUS, emit  # noqa: E402


def dense_rows(batch, vocab: int) -> np.ndarray:
    out = np.zeros((len(batch), vocab), dtype=np.float32)
    for row in range(len(batch)):
        terms, weights = batch.row(row)
        out[row, terms] = weights
    return out


def nfcorpus_texts() -> tuple[list[str], list[str], list[str]]:
    from lsr.corpus import read_corpus
    from lsr.evaluation import judged_queries

    documents = list(read_corpus(NFCORPUS))
    queries, qrels = judged_queries(NFCORPUS, "test")
    return [d.id for d in documents], [d.contents for d in documents], [queries[q] for q in sorted(qrels)]


def run_model(args) -> dict:
    from sentence_transformers import SparseEncoder

    from lsr import Engine, Index, load_encoder
    from lsr.encoders.interop import save_sentence_transformers
    from lsr.evaluation import evaluate
    from lsr.sparse import SparseBatch

    ids, texts, queries = nfcorpus_texts()
    texts = texts[: args.docs] if args.docs else texts
    ids = ids[: len(texts)]
    original = load_encoder(device="cpu")
    work = Path(tempfile.mkdtemp(prefix="lsr-interop-"))
    exported_dir = save_sentence_transformers(original, work / "st")
    st_model = SparseEncoder(str(exported_dir), device="cpu")
    reloaded = load_encoder(exported_dir, device="cpu")
    result = {"documents": len(texts), "queries": len(queries), "exported": str(exported_dir),
              "original_identity": original.identity(), "reloaded_identity": reloaded.identity()}

    started = time.perf_counter()
    lsr_docs = original.encode_documents(texts, batch_size=32)
    result["lsr_docs_per_s"] = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    st_docs = st_model.encode_document(texts, batch_size=32, convert_to_tensor=True)
    result["st_docs_per_s"] = len(texts) / (time.perf_counter() - started)
    st_docs = st_docs.to_dense().float().numpy()
    vocab = original.vocab_size
    differences = []
    for start in range(0, len(texts), 256):  # compared in slices: (documents x 30522) floats add up
        mine = dense_rows(lsr_docs.take(np.arange(start, min(start + 256, len(texts)))), vocab)
        differences.append(float(np.abs(mine - st_docs[start : start + 256]).max()))
    result["documents_max_abs_difference"] = max(differences)
    st_queries = st_model.encode_query(queries, convert_to_tensor=True).to_dense().float().numpy()
    result["queries_max_abs_difference"] = float(np.abs(dense_rows(original.encode_queries(queries), vocab)
                                                        - st_queries).max())
    print(json.dumps(result, indent=2), flush=True)

    if args.docs:
        return result  # a slice: nDCG@10 needs the whole collection
    st_batch = SparseBatch.from_dense(st_docs)
    del st_docs
    indexes = {
        "lsr original encoder": Index.build(original, ids=ids, texts=texts, path=work / "original"),
        "export read back by lsr.load_encoder": Index.build(reloaded, ids=ids, texts=texts, path=work / "reloaded"),
        "SparseEncoder's document vectors": Index.build(reloaded, ids=ids, vectors=st_batch, path=work / "st-vectors"),
    }
    result["ndcg"] = {}
    for name, index in indexes.items():
        metrics = evaluate(Engine(index), NFCORPUS, split="test", progress=False, batch_throughput=False)
        result["ndcg"][name] = {"ndcg@10": round(metrics["ndcg@10"], 4), "recall@100": round(metrics["recall@100"], 4),
                                "latency_ms_mean": round(metrics["latency_ms_mean"], 3)}
        print(name, result["ndcg"][name], flush=True)
    return result


def run_qdrant(args) -> dict:
    from lsr import Engine, export

    engine = Engine.open(args.index, parts=())
    client = export.qdrant_client(":memory:")
    summary = export.to_qdrant(engine.index, client, "nfcorpus")
    _, _, queries = nfcorpus_texts()
    check = export.compare_with_qdrant(engine, client, "nfcorpus", queries, k=10)
    return {"index": args.index, "export": summary, "check": check,
            "qdrant": "qdrant-client local mode (:memory:, in-process Python), not a Qdrant server"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    model = sub.add_parser("model")
    model.add_argument("--docs", type=int, default=None, help="only the first N documents (no nDCG then)")
    model.add_argument("--output", default=None)
    qdrant = sub.add_parser("qdrant")
    qdrant.add_argument("--index", required=True, help="an NFCorpus index built by `lsr index`")
    qdrant.add_argument("--output", default=None)
    args = parser.parse_args()
    emit(run_model(args) if args.what == "model" else run_qdrant(args), args.output)


if __name__ == "__main__":
    main()
