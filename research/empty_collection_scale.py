"""What should set the uint8 scale of a collection created empty? A uint8 index stores weight w as
round(w * 255 / max_weight), clipping (and counting) weights above max_weight. A bulk build takes max_weight from its
first 2,048 documents; a collection created empty over HTTP gets its first documents one write at a time, maybe one
document. This probe encodes NFCorpus once with the shipped default encoder (float vectors, cached under var/), then
builds the same vectors with max_weight set by each candidate rule and reports the clipped postings and the sparse
nDCG@10 / Recall@100 on NFCorpus test:

- the first write's maximum (1, 10 or 100 documents), as the writer does when nothing else is declared, and the worst
  case: a first write of the one document whose largest weight is the smallest of the corpus;
- the same with headroom (x1.5, x2);
- the encoder's calibrated maximum: the largest weight over a calibration sample (here the odd-numbered half of the
  corpus; the rows scored are all of it, so the even half is unseen), as `scripts/default_model.py` records it;
- the whole corpus's maximum (the bulk build's choice, an oracle for an empty collection) and float32 impacts.

python research/empty_collection_scale.py
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from the repository root

from lsr.corpus import read_corpus  # noqa: E402
from lsr.encoders import load_encoder  # noqa: E402
from lsr.engine import Engine  # noqa: E402
from lsr.evaluation import evaluate  # noqa: E402
from lsr.index import Index  # noqa: E402
from lsr.sparse import SparseBatch  # noqa: E402

BEIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "nfcorpus"
CACHE = Path("var/research/nfcorpus-default-vectors.npz")


def vectors(encoder, documents) -> SparseBatch:
    if CACHE.exists():
        saved = np.load(CACHE)
        return SparseBatch(saved["indptr"], saved["indices"], saved["weights"])
    started = time.perf_counter()
    parts = [encoder.encode_documents([d.contents for d in documents[i:i + 64]]) for i in range(0, len(documents), 64)]
    rows = [parts[p].row(r) for p in range(len(parts)) for r in range(len(parts[p]))]
    batch = SparseBatch.from_rows(rows)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, indptr=batch.indptr, indices=batch.indices, weights=batch.weights)
    print(f"encoded {len(documents)} documents in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return batch


def row_max(batch: SparseBatch, rows) -> float:
    return max(float(batch.row(i)[1].max()) for i in rows if batch.indptr[i + 1] > batch.indptr[i])


def main() -> None:
    encoder = load_encoder()
    documents = list(read_corpus(BEIR))
    ids = [d.id for d in documents]
    batch = vectors(encoder, documents)
    n = len(ids)
    corpus_max = float(batch.weights.max())
    rules = {f"first write, {k} doc{'s' if k > 1 else ''}": row_max(batch, range(k)) for k in (1, 10, 100)}
    rules["first write, 1 doc, x1.5 headroom"] = 1.5 * rules["first write, 1 doc"]
    rules["first write, 1 doc, x2 headroom"] = 2.0 * rules["first write, 1 doc"]
    smallest = min(range(n), key=lambda i: row_max(batch, [i]) if batch.indptr[i + 1] > batch.indptr[i] else 9e9)
    rules["first write, 1 doc, the weakest one"] = row_max(batch, [smallest])
    rules["first write, the weakest doc, x2 headroom"] = 2.0 * rules["first write, 1 doc, the weakest one"]
    rules["calibrated (max over half the corpus)"] = row_max(batch, range(1, n, 2))
    rules["calibrated x1.25"] = 1.25 * rules["calibrated (max over half the corpus)"]
    rules["whole-corpus max (bulk build)"] = corpus_max
    print("| scale from | max_weight | clipped postings | share | nDCG@10 | R@100 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, max_weight in [*rules.items(), ("float32 impacts", None)]:
        options = {"max_weight": max_weight} if max_weight is not None else {"impact_dtype": "float32"}
        index = Index.build(encoder, ids=ids, vectors=batch, **options)
        clipped = int((batch.weights > max_weight).sum()) if max_weight is not None else 0
        metrics = evaluate(Engine(index), BEIR, progress=False, batch_throughput=False, mode="sparse")
        shown = f"{max_weight:.3f}" if max_weight is not None else "-"
        print(f"| {name} | {shown} | {clipped:,} | {clipped / batch.nnz:.2%} | {metrics['ndcg@10']:.4f} | "
              f"{metrics['recall@100']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
