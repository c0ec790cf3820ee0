"""Where the block-max kernel's time goes, and how block size / dense ratio move it (a diagnostic).

Reads the lsr index and queries that ``benchmarks/engines.py`` left in its work directory, recomputes the pruning
structures for every ``BLOCK:DENSE_RATIO`` given, and prints per query: mean and p99 latency of
``score_query_blockmax``, blocks scored, the time of the bound pass alone (every block bounded, nothing scored), and
the size of the structures.

    python benchmarks/engines.py --collection synthetic --docs 1000000 --systems lsr --output var/bench/x.json
    python benchmarks/blockmax_profile.py 4:16 8:16 16:16 4:64
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numba
import numpy as np

from lsr.index import Index, kernel
from lsr.index.segment import block_metadata, kernel_arrays


@numba.njit(cache=False)
def _bounds(ix, terms, weights, ub):  # pragma: no cover - numba
    """The kernel's bound pass alone (same loops), then the scratch reset."""
    offsets, doc_ids, impacts, b_offsets, b_ids, b_max, b_starts, dense_slot, dense_rows, dense_max = ix
    for j in range(len(terms)):
        weight = np.float32(weights[j])
        slot = dense_slot[terms[j]]
        if slot >= 0:
            row = dense_max[slot]
            for b in range(len(ub)):
                ub[b] += weight * np.float32(row[b])
        else:
            for e in range(b_offsets[terms[j]], b_offsets[terms[j] + 1]):
                ub[b_ids[e]] += weight * np.float32(b_max[e])
    ub[:] = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layouts", nargs="+", metavar="BLOCK:DENSE_RATIO")
    parser.add_argument("--work", default="var/bench/engines-synthetic")
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    work = Path(args.work)
    data = np.load(work / "collection.npz")
    qi, qt, qw = data["q_indptr"], data["q_terms"], data["q_weights"]
    nq = min(args.queries, len(qi) - 1)
    segment = Index.open(work / "lsr-index", load_encoder=False).segments[0]
    n = segment.info.rows
    out_docs, out_scores = np.empty(10, np.int64), np.empty(10, np.float32)
    for layout in args.layouts:
        block_size, dense_ratio = (int(x) for x in layout.split(":"))
        blocks = block_metadata(segment.offsets, segment.doc_ids, segment.impacts, n, block_size, dense_ratio)
        size_mb = sum(a.nbytes for a in blocks.values()) / 1e6
        ix = kernel_arrays(segment.offsets, segment.doc_ids, segment.impacts, blocks)
        scratch = kernel.blockmax_scratch(n, block_size, int(np.diff(qi).max()))
        live = np.zeros(0, np.uint8)
        for _ in range(2):  # the first pass compiles and warms the page cache
            latencies, scored, bounds = [], 0, []
            for q in range(nq):
                terms, weights = qt[qi[q]:qi[q + 1]], qw[qi[q]:qi[q + 1]]
                started = time.perf_counter()
                scored += kernel.score_query_blockmax(ix, live, block_size, n, terms, weights, 10, 1.0, 0, *scratch,
                                                      out_docs, out_scores)[1]
                latencies.append(time.perf_counter() - started)
                started = time.perf_counter()
                _bounds(ix, terms, weights, scratch[0])
                bounds.append(time.perf_counter() - started)
        lat = np.asarray(latencies) * 1e3
        print(f"block {block_size}, dense >= 1/{dense_ratio}: mean {lat.mean():.3f} ms, p99 "
              f"{np.percentile(lat, 99):.3f} ms, {scored / nq:.0f} blocks scored, bound pass "
              f"{np.mean(bounds) * 1e3:.3f} ms, structures {size_mb:,.0f} MB", flush=True)
        del ix, blocks


if __name__ == "__main__":
    main()
