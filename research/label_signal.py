"""How much do NFCorpus train judgments carry, with the encoder out of the loop? (a diagnostic, not a model)

Takes the document vectors of an existing float32 inference-free index and trains, on the train qrels with a
listwise cross-entropy over all documents:
  --mode query-table      the 30k query-side term weights (initialized to the IDF table), documents frozen;
  --mode free-documents   the document vectors themselves as free parameters, query side = IDF (an upper bound on
                          what an encoder that memorized the corpus could reach, not a usable model).
Prints dev and test nDCG@10 after every epoch.

python research/label_signal.py --index var/indexes/nf-if-f32 --mode free-documents --lr 0.01 --epochs 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from the repository root

from lsr.corpus import read_qrels, read_queries  # noqa: E402
from lsr.evaluation import trec_metrics  # noqa: E402
from lsr.index import Index  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="float32 inference-free lsr index of the corpus")
    parser.add_argument("--beir", default="../shared/data/beir/nfcorpus")
    parser.add_argument("--mode", choices=("query-table", "free-documents"), required=True)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    index = Index.open(args.index, parts=())
    if index.manifest.impact_dtype != "float32" or len(index.segments) != 1:
        raise SystemExit("needs a one-segment float32 index: lsr index ... --impact-dtype float32")
    seg = index.segments[0]
    postings = seg.postings()  # scipy CSC (rows x terms) of stored impacts
    vocab, n_docs = postings.shape[1], seg.info.rows
    docs = (postings / index.manifest.scale).astype(np.float32).tocsr()
    ids = [str(x) for x in seg.ids]
    position = {d: i for i, d in enumerate(ids)}
    encoder = index.encoder
    idf = torch.tensor(encoder.idf, dtype=torch.float32)
    queries = read_queries(args.beir)

    def indicator(qids: list[str]) -> sp.csr_matrix:
        rows, cols = [], []
        for r, tokens in enumerate(encoder.tokenize([queries[q] for q in qids], 64)):
            unique = np.setdiff1d(np.unique(tokens), encoder.special_ids)
            rows += [r] * len(unique)
            cols += unique.tolist()
        return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(qids), vocab))

    def ndcg(query_weights: np.ndarray, doc_matrix, split: str) -> float:
        qrels = read_qrels(args.beir, split)
        qids = sorted(qrels)
        scores = indicator(qids).multiply(query_weights[None, :]).tocsr() @ doc_matrix.T
        scores = scores.toarray() if sp.issparse(scores) else np.asarray(scores)
        run = {q: [ids[j] for j in np.argsort(-scores[i], kind="stable")[:1000]] for i, q in enumerate(qids)}
        return trec_metrics(run, qrels)["ndcg@10"]

    train = read_qrels(args.beir, "train")
    train_ids = sorted(train)
    targets = np.zeros((len(train_ids), n_docs), np.float32)
    for i, q in enumerate(train_ids):
        for d, label in train[q].items():
            if label > 0 and d in position:
                targets[i, position[d]] = 1
    targets = torch.tensor(targets / targets.sum(1, keepdims=True).clip(1))
    q_train = torch.tensor(indicator(train_ids).toarray())
    dense_docs = torch.tensor(docs.toarray())
    param = torch.nn.Parameter(idf.clone() if args.mode == "query-table" else dense_docs.clone())
    optimizer = torch.optim.Adam([param], lr=args.lr)
    print("untrained", {s: round(ndcg(idf.numpy(), docs, s), 4) for s in ("dev", "test")})
    generator = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        total = 0.0
        for batch in torch.randperm(len(train_ids), generator=generator).split(64):
            if args.mode == "query-table":
                scores = (q_train[batch] * torch.relu(param)) @ dense_docs.T
            else:
                scores = (q_train[batch] * idf) @ torch.relu(param).T
            loss = -(targets[batch] * torch.log_softmax(scores, 1)).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        weights = torch.relu(param).detach().numpy()
        q_w, d_m = (weights, docs) if args.mode == "query-table" else (idf.numpy(), weights)
        print(epoch, round(total / len(train_ids), 3), {s: round(ndcg(q_w, d_m, s), 4) for s in ("dev", "test")},
              flush=True)


if __name__ == "__main__":
    main()
