"""Diagnostic (not a model): corpus-wide listwise training of the inference-free document encoder.

Starts from splade-tiny (documents <= 256 tokens) with a document bank read from a float32 inference-free index of
the same encoder (var/indexes/nf-if-f32). Each step encodes 16 documents live, scores all 2,590 NFCorpus train
queries (IDF weights) against the bank with those 16 columns replaced, and takes the cross-entropy over all 3,633
documents toward the train qrels (binary, normalized per query) + flops_weight x IDF-aware FLOPS; the bank is
refreshed with the live vectors. Prints per epoch the bank's dev and test nDCG@10 and document non-zeros.

python research/listwise_probe.py LR EPOCHS TEMPERATURE FLOPS_WEIGHT FREEZE_EMBEDDINGS(0|1) [OUT_DIR]
e.g. python research/listwise_probe.py 3e-5 2 1.0 0.003 1
"""

import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from the repository root

from lsr.corpus import read_qrels, read_queries  # noqa: E402
from lsr.encoders import load_encoder  # noqa: E402
from lsr.encoders.batching import pad_batch  # noqa: E402
from lsr.evaluation import trec_metrics  # noqa: E402
from lsr.index import Index  # noqa: E402
from lsr.training.data import TrainingTexts  # noqa: E402
from lsr.training.losses.idf_flops import idf_aware_flops  # noqa: E402

lr = float(sys.argv[1])
epochs = int(sys.argv[2])
temp = float(sys.argv[3])
flops_w = float(sys.argv[4])
freeze = sys.argv[5] == "1"
B = 16
MAXLEN = 256
torch.manual_seed(0)
beir = "../shared/data/beir/nfcorpus"
index = Index.open("var/indexes/nf-if-f32", load_encoder=False)
seg = index.segments[0]
bank = seg.postings().tocsr()  # rows x terms, stored impacts
N, V = bank.shape
ids = [str(x) for x in seg.ids]
pos = {d: i for i, d in enumerate(ids)}
enc = load_encoder(
    "../shared/models/splade-tiny",
    kind="inference-free",
    idf="../shared/models/opensearch-idf/idf.json",
    max_document_length=MAXLEN,
)
store = TrainingTexts.from_corpus(beir)
doc_tokens = enc.tokenize([store.full[d] for d in ids], MAXLEN)
queries = read_queries(beir)
qidf = enc._query_idf


def qmatrix(qids):
    rows, cols, vals = [], [], []
    for r, toks in enumerate(enc.tokenize([queries[q] for q in qids], 64)):
        u = np.unique(np.asarray(toks))
        w = qidf[u]
        k = w > 0
        rows += [r] * int(k.sum())
        cols += u[k].tolist()
        vals += w[k].tolist()
    return sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(len(qids), V))


train = read_qrels(beir, "train")
tq = sorted(train)
Qtr = qmatrix(tq)
T = np.zeros((len(tq), N), np.float32)
for i, q in enumerate(tq):
    for d, label in train[q].items():
        if label > 0 and d in pos:
            T[i, pos[d]] = 1
T = T / T.sum(1, keepdims=True).clip(1)
T = torch.tensor(T)
Qt = torch.sparse_csr_tensor(
    torch.tensor(Qtr.indptr, dtype=torch.int64),
    torch.tensor(Qtr.indices, dtype=torch.int64),
    torch.tensor(Qtr.data),
    size=Qtr.shape,
)
S = torch.tensor((Qtr @ bank.T).toarray())  # train queries x docs, bank scores


def ndcg(doc_matrix, split):
    qr = read_qrels(beir, split)
    qs = sorted(qr)
    sc = (qmatrix(qs) @ doc_matrix.T).toarray()
    run = {q: [ids[j] for j in np.argsort(-sc[i], kind="stable")[:1000]] for i, q in enumerate(qs)}
    return round(trec_metrics(run, qr)["ndcg@10"], 4)


print("bank start", ndcg(bank, "dev"), ndcg(bank, "test"), bank.nnz / N, flush=True)
model = enc.model
pooler = enc.pooler
if freeze:
    model.get_input_embeddings().weight.requires_grad_(False)
    pooler.decoder.weight.requires_grad_(False)
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
idf_t = torch.tensor(qidf)
bank_rows = [bank[i] for i in range(N)]
g = torch.Generator().manual_seed(0)
steps_per_epoch = N // B
total = epochs * steps_per_epoch
step = 0
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 50) * max(0.0, (total - s) / total))
for ep in range(epochs):
    t0 = time.time()
    model.train()
    tl = 0
    for batch in torch.randperm(N, generator=g)[: steps_per_epoch * B].split(B):
        b = batch.tolist()
        inp, mask = pad_batch([doc_tokens[i] for i in b], enc.tokenizer.pad_token_id, "cpu")
        D = pooler.forward_train(inp, mask, "bf16")  # B x V
        live = Qt @ D.T  # nq x B
        scores = S.clone()
        scores[:, batch] = live
        loss = -(T * torch.log_softmax(scores / temp, 1)).sum(1).mean() * temp
        fl = idf_aware_flops(D) if flops_w > 0 else torch.zeros(())
        (loss + flops_w * fl).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        with torch.no_grad():
            S[:, batch] = live.detach()
            Dn = D.detach().numpy()
            for j, i in enumerate(b):
                bank_rows[i] = sp.csr_matrix(Dn[j : j + 1])
        tl += loss.item()
    bank = sp.vstack(bank_rows).tocsr()
    print(
        ep,
        round(tl / steps_per_epoch, 4),
        "bank dev/test",
        ndcg(bank, "dev"),
        ndcg(bank, "test"),
        "nnz",
        round(bank.nnz / N, 1),
        f"{time.time() - t0:.0f}s",
        flush=True,
    )
enc.save(sys.argv[6]) if len(sys.argv) > 6 else None
