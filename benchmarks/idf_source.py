"""Diagnostic: does the query-side IDF source matter? Re-scores NFCorpus test on an existing inference-free index
with the MS MARCO IDF (as built), an IDF computed on NFCorpus itself, and their 50/50 mix (same document vectors).

python benchmarks/idf_source.py var/indexes/nf-if-f32
"""

import sys

import numpy as np

from indexer.corpus import read_corpus
from service.evaluation import evaluate
from service.searcher import Searcher
from training.idf import document_frequencies, idf_from_frequencies

idx = sys.argv[1]
s = Searcher.open(idx)
enc = s.encoder
print("msmarco idf", evaluate(s, "../shared/data/beir/nfcorpus", progress=False, batch_throughput=False)["ndcg@10"])
docs = list(read_corpus("../shared/data/beir/nfcorpus"))
df, n = document_frequencies([d.contents for d in docs], enc.tokenizer)
idf = idf_from_frequencies(df, n)
orig = enc._query_idf.copy()
for name, table in [("nfcorpus idf", idf), ("mix", 0.5 * idf + 0.5 * orig)]:
    q = table.astype(np.float32).copy()
    q[enc.special_ids] = 0
    q[orig == 0] = 0
    enc._query_idf = q
    print(name, evaluate(s, "../shared/data/beir/nfcorpus", progress=False, batch_throughput=False)["ndcg@10"])
