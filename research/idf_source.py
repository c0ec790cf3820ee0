"""Diagnostic: does the query-side IDF source matter? Re-scores NFCorpus test on an existing inference-free index
with the MS MARCO IDF (as built), an IDF computed on NFCorpus itself, and their 50/50 mix (same document vectors).

python research/idf_source.py var/indexes/nf-if-f32
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from the repository root

from lsr.corpus import read_corpus  # noqa: E402
from lsr.encoders.idf import document_frequencies, idf_from_frequencies  # noqa: E402
from lsr.engine import Engine  # noqa: E402
from lsr.evaluation import evaluate  # noqa: E402

idx = sys.argv[1]
s = Engine.open(idx, parts=())
enc = s.index.encoder
print("msmarco idf", evaluate(s, "../shared/data/beir/nfcorpus", progress=False, batch_throughput=False,
                              mode="sparse")["ndcg@10"])
docs = list(read_corpus("../shared/data/beir/nfcorpus"))
df, n = document_frequencies([d.contents for d in docs], enc.tokenizer)
idf = idf_from_frequencies(df, n)
orig = enc._query_idf.copy()
for name, table in [("nfcorpus idf", idf), ("mix", 0.5 * idf + 0.5 * orig)]:
    q = table.astype(np.float32).copy()
    q[enc.special_ids] = 0
    q[orig == 0] = 0
    enc._query_idf = q
    print(name, evaluate(s, "../shared/data/beir/nfcorpus", progress=False, batch_throughput=False, mode="sparse")["ndcg@10"])
