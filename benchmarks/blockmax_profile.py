"""Where the block-max kernel's time goes, and how block size / dense ratio move it (a diagnostic).

Reads the lsr index and queries that ``benchmarks/engines.py`` left in its work directory, recomputes the sparse
layout for every ``BLOCK:DENSE_RATIO[:BOUND_RATIO]`` given (bound ratio default 16), and prints per query: mean and
p99 latency of ``score_query_blockmax``, blocks scored, the time of the bound pass alone (every block bounded, nothing
scored), and the size of the sparse side (postings, dense rows, block maxima); first, the index's bytes on disk by
file.

    python benchmarks/engines.py --collection synthetic --docs 1000000 --systems lsr --output var/bench/x.json
    python benchmarks/blockmax_profile.py 4:8:16 4:8:0 4:16 8:8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lsr.index import Index, kernel
from lsr.index.segment import DEFAULT_BOUND_RATIO, compact_postings, kernel_arrays


def _bound_pass(ix, block_size, terms, weights, ub) -> None:
    """The kernel's own bound pass alone (every block bounded, nothing scored), then the scratch reset."""
    use = np.arange(len(terms))
    chunk_max = np.empty((len(ub) + kernel._CHUNK - 1) // kernel._CHUNK, dtype=np.float32)
    kernel._bounds(ix, block_size, terms, weights, use, ub, chunk_max, np.zeros(0, np.uint8), np.zeros(0, np.uint8))
    ub[:] = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layouts", nargs="+", metavar="BLOCK:DENSE_RATIO[:BOUND_RATIO]")
    parser.add_argument("--work", default="var/bench/engines-synthetic")
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    work = Path(args.work)
    data = np.load(work / "collection.npz")
    qi, qt, qw = data["q_indptr"], data["q_terms"], data["q_weights"]
    nq = min(args.queries, len(qi) - 1)
    segment = Index.open(work / "lsr-index", load_encoder=False).segments[0]
    n = segment.info.rows
    files = sorted((path.stat().st_size, path.name) for path in segment.directory.iterdir() if path.is_file())
    total = sum(p.stat().st_size for p in (work / "lsr-index").rglob("*") if p.is_file())
    print(f"the index on disk: {total / 1e6:,.1f} MB; its segment's files: "
          + ", ".join(f"{name} {size / 1e6:,.1f}" for size, name in reversed(files) if size >= 1e5), flush=True)
    postings = segment.postings()
    offsets, doc_ids, impacts = postings.indptr.astype(np.int64), postings.indices.astype(np.uint32), \
        postings.data.astype(segment.impacts.dtype)
    del postings
    out_docs, out_scores = np.empty(10, np.int64), np.empty(10, np.float32)
    for layout in args.layouts:
        block_size, dense_ratio, bound_ratio = ([int(x) for x in layout.split(":")] + [DEFAULT_BOUND_RATIO])[:3]
        blocks = compact_postings(offsets, doc_ids, impacts, n, block_size, dense_ratio, bound_ratio)
        size_mb = sum(a.nbytes for a in blocks.values()) / 1e6
        ix = kernel_arrays(blocks)
        scratch = kernel.blockmax_scratch(n, block_size)
        live = np.zeros(0, np.uint8)
        for _ in range(2):  # the first pass compiles and warms the page cache
            latencies, scored, bounds = [], 0, []
            for q in range(nq):
                terms, weights = qt[qi[q]:qi[q + 1]], qw[qi[q]:qi[q + 1]]
                started = time.perf_counter()
                scored += kernel.score_query_blockmax(ix, live, block_size, n, terms, weights, 10, np.float32(1.0), 0, *scratch,
                                                      out_docs, out_scores)[1]
                latencies.append(time.perf_counter() - started)
                started = time.perf_counter()
                _bound_pass(ix, block_size, terms, weights, scratch[0])
                bounds.append(time.perf_counter() - started)
        lat = np.asarray(latencies) * 1e3
        print(f"block {block_size}, dense >= 1/{dense_ratio}, block maxima >= 1/{bound_ratio}: mean {lat.mean():.3f} ms, p99 "
              f"{np.percentile(lat, 99):.3f} ms, {scored / nq:.0f} blocks scored, bound pass "
              f"{np.mean(bounds) * 1e3:.3f} ms, sparse side {size_mb:,.0f} MB", flush=True)
        del ix, blocks


if __name__ == "__main__":
    main()
