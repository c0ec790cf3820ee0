"""Document encoding throughput: lsr's chunked max-then-activate pooling against the naive SPLADE loop.

Naive loop (what most SPLADE code does): transformers forward with the full (batch, length, vocabulary) logits,
log(1 + ReLU) on all of them, masked max over positions; batches in corpus order. Same documents, same truncation,
same batch size, one process, one run. Also checks that the vectors agree.

    python benchmarks/encode_throughput.py --docs 512 --output var/bench/encode.json
    python benchmarks/encode_throughput.py --device cuda --docs 4096 --batch-size 256   # a GPU (adds fp16)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsr.corpus import read_corpus  # noqa: E402
from lsr.encoders import load_encoder  # noqa: E402


def naive_encode(model, tokenizer, texts, batch_size, max_length, sort_by_length=False):
    order = np.arange(len(texts))
    if sort_by_length:
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        order = np.argsort(-np.asarray(lengths), kind="stable")
    out = np.zeros((len(texts), model.config.vocab_size), dtype=np.float32)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = order[start : start + batch_size]
            enc = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(device)
            logits = model(**enc).logits
            weights = torch.log1p(torch.relu(logits)) * enc["attention_mask"].unsqueeze(-1)
            out[batch] = weights.amax(dim=1).float().cpu().numpy()
    return out


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared/data/beir/nfcorpus"))
    parser.add_argument("--model", default=str(ROOT.parent / "shared/models/splade-tiny"))
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (then lsr fp16 is measured too)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    texts = [d.contents for _, d in zip(range(args.docs), read_corpus(args.corpus))]
    rows = []
    naive_dense = None
    systems = (("naive loop (fp32)", None, False), ("naive, length-sorted", None, True),
               ("lsr fp32", "fp32", True), ("lsr bf16", "bf16", True))
    if args.device.startswith("cuda"):
        systems += (("lsr fp16", "fp16", True),)
    for name, dtype, sort in systems:
        encoder = load_encoder(args.model, kind="splade", device=args.device, dtype=dtype or "fp32",
                               max_document_length=args.max_length)
        if dtype is None:
            def run(items, encoder=encoder, sort=sort):
                return naive_encode(encoder.model, encoder.tokenizer, items, args.batch_size, args.max_length, sort)
        else:
            def run(items, encoder=encoder):
                return encoder.encode_documents(items, batch_size=args.batch_size)
        run(texts[: args.batch_size])  # warm-up: first-call costs (allocator, oneDNN kernels) out of the timing
        synchronize(args.device)
        started = time.perf_counter()
        result = run(texts)
        synchronize(args.device)
        seconds = time.perf_counter() - started
        if dtype is None:
            dense = result
            dense[:, encoder.special_ids] = 0
        else:
            dense = np.zeros((len(texts), encoder.vocab_size), dtype=np.float32)
            for i in range(len(result)):
                ids, w = result.row(i)
                dense[i, ids] = w
        row = {"system": name, "docs": len(texts), "seconds": round(seconds, 2),
               "docs_per_s": round(len(texts) / seconds, 2)}
        if naive_dense is None:
            naive_dense = dense
        else:
            row["max_abs_diff_vs_naive"] = float(np.abs(dense - naive_dense).max())
        rows.append(row)
    base = rows[0]["docs_per_s"]
    print(f"{'system':<22} {'docs/s':>8} {'speed-up':>9} {'max |diff|':>11}")
    for row in rows:
        row["speedup_vs_naive"] = round(row["docs_per_s"] / base, 2)
        diff = row.get("max_abs_diff_vs_naive")
        print(f"{row['system']:<22} {row['docs_per_s']:>8.2f} {row['speedup_vs_naive']:>8.2f}x "
              f"{'' if diff is None else f'{diff:.2e}':>11}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"threads": torch.get_num_threads(), "device": args.device,
                                                 "batch_size": args.batch_size, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
