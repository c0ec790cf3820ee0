"""Forward + backward of SPLADE max pooling: plain autograd through the vocabulary projection vs forward_train.

python benchmarks/train_backward.py [--model ../shared/models/splade-tiny] [--docs 32] [--length 256]
"""

from __future__ import annotations

import argparse
import time

import torch

from lsr.encoders import load_encoder
from lsr.encoders.batching import pad_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="../shared/models/splade-tiny")
    parser.add_argument("--docs", type=int, default=32)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    encoder = load_encoder(args.model, kind="splade", max_document_length=args.length)
    pooler = encoder.pooler.eval()
    text = " ".join(["dietary fiber intake and colon cancer risk in a prospective cohort of women"] * 40)
    ids, mask = pad_batch(encoder.tokenize([text] * args.docs, args.length), encoder.tokenizer.pad_token_id, "cpu")
    systems = {
        "autograd": lambda: torch.log1p(torch.relu(pooler.max_logits(ids, mask))),
        "forward_train fp32": lambda: pooler.forward_train(ids, mask, "fp32"),
        "forward_train bf16": lambda: pooler.forward_train(ids, mask, "bf16"),
    }
    print(f"{args.docs} documents x {mask.sum(1).max().item()} tokens, {torch.get_num_threads()} threads")
    baseline = None
    for name, forward in systems.items():
        best = float("inf")
        for _ in range(args.repeats + 1):  # first run is a warm-up
            encoder.model.zero_grad()
            started = time.perf_counter()
            weights = forward()
            (weights * 0.01).sum().backward()
            best = min(best, time.perf_counter() - started)
        rate = args.docs / best
        baseline = baseline or rate
        print(f"{name:20s} {rate:7.1f} docs/s  {rate / baseline:4.1f}x")


if __name__ == "__main__":
    main()
