"""Where an index's bytes go, and what a compressed layout would take: measured on the index's own arrays, before
changing the format (the performance round's index-size goal).

For every segment: the bytes of each array on disk today, and for a candidate layout (for several dense ratios):

- dense terms (df >= documents / ratio) keep their dense rows and block maxima, and lose their CSR postings (today
  they are stored twice);
- every other term stores, per block it occurs in, the block id as a gap from the previous one, bit-packed in chunks
  of 128 entries (each chunk: its bit width, first block id and impact offset uncompressed, 9 bytes, so a cursor can
  gallop over chunk heads), a presence mask of block-size bits (which of the block's documents hold the term: the
  document id is the block id plus the position), the block maximum (1 byte), and one impact byte per posting;
- a term directory (three 8-byte offsets a term), ids and hashes as today.

It reads a segment in round 1's layout (index format 2: offsets.npy, uint32 doc_ids.npy, blocks/); the layout that
replaced it (format 3, lsr.index.segment) is measured by ``benchmarks/blockmax_profile.py``, which prints the bytes of
each file. This measures what the candidate would hold, exactly (gaps, widths and counts come from the arrays), not
how fast a kernel would read it.

    python research/index_size.py var/bench/live-index/segments-16 [--ratios 16,8,4]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from the repository root

CHUNK = 128
CHUNK_HEADER = 9  # bit width (1 byte), first block id (4), offset of the chunk's impacts (4)


def current_bytes(segment: Path) -> dict[str, int]:
    sizes = {}
    for path in sorted(segment.rglob("*.npy")):
        key = str(path.relative_to(segment))
        if key.startswith("del-"):
            continue
        sizes[key] = path.stat().st_size
    return sizes


def candidate_bytes(segment: Path, ratio: int) -> dict[str, int]:
    info = json.loads((segment / "info.json").read_text())
    block_size, docs = int(info["block_size"]), int(info["rows"])
    offsets = np.load(segment / "offsets.npy", mmap_mode="r")
    doc_ids = np.load(segment / "doc_ids.npy", mmap_mode="r")
    df = np.diff(np.asarray(offsets)).astype(np.int64)
    vocab = len(df)
    dense = df >= max(1, docs / ratio)
    n_blocks = (docs + block_size - 1) // block_size
    term_of = np.repeat(np.arange(vocab, dtype=np.int32), df)
    rare = ~dense[term_of]
    terms = term_of[rare]
    blocks = (np.asarray(doc_ids)[rare] // block_size).astype(np.int64)
    new_entry = np.ones(len(blocks), dtype=bool)
    new_entry[1:] = (terms[1:] != terms[:-1]) | (blocks[1:] != blocks[:-1])
    entry_block = blocks[new_entry]
    entry_term = terms[new_entry]
    n_entries = len(entry_block)
    first_of_term = np.ones(n_entries, dtype=bool)
    first_of_term[1:] = entry_term[1:] != entry_term[:-1]
    gaps = np.empty(n_entries, dtype=np.int64)
    gaps[0:1] = entry_block[0:1]
    gaps[1:] = entry_block[1:] - entry_block[:-1]
    gaps[first_of_term] = entry_block[first_of_term]  # a term's first entry: its block id (chunk head)
    bits = np.ones(n_entries, dtype=np.int64)
    positive = gaps > 0
    bits[positive] = np.floor(np.log2(gaps[positive])).astype(np.int64) + 1
    term_starts = np.flatnonzero(first_of_term)
    index_in_term = np.arange(n_entries) - np.repeat(term_starts, np.diff(np.append(term_starts, n_entries)))
    chunk_starts = np.flatnonzero(index_in_term % CHUNK == 0)
    widths = np.maximum.reduceat(bits, chunk_starts)
    counts = np.diff(np.append(chunk_starts, n_entries))
    return {
        "block_id_gaps": int(np.sum((counts * widths + 7) // 8)),
        "chunk_heads": int(len(chunk_starts) * CHUNK_HEADER),
        "presence_masks": int((n_entries * block_size + 7) // 8),
        "block_max": int(n_entries),
        "impacts_rare": int(rare.sum()),
        "dense_rows": int(dense.sum() * n_blocks * block_size),
        "dense_max": int(dense.sum() * n_blocks),
        "term_directory": int(vocab * 3 * 8),
        "ids_hashes": int((segment / "ids.npy").stat().st_size + (segment / "hashes.npy").stat().st_size),
        "_entries": n_entries, "_rare_postings": int(rare.sum()), "_dense_terms": int(dense.sum()),
        "_mean_gap_bits": float(np.mean(widths)) if len(widths) else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", help="an index directory (format 2)")
    parser.add_argument("--ratios", default="16,8,4", help="dense ratios of the candidate layout")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    index = Path(args.index)
    generation = json.loads((index / "generations" / (index / "CURRENT").read_text().strip()).read_text())
    segments = [index / "segments" / entry["name"] for entry in generation["segments"]]  # the published ones
    ratios = [int(r) for r in args.ratios.split(",")]
    today: dict[str, int] = {}
    candidates = {r: {} for r in ratios}
    for segment in segments:
        for key, value in current_bytes(segment).items():
            today[key] = today.get(key, 0) + value
        for r in ratios:
            for key, value in candidate_bytes(segment, r).items():
                candidates[r][key] = candidates[r].get(key, 0) + value
    mb = 1e6
    print(f"{args.index}: {len(segments)} segments")
    print("today:", ", ".join(f"{k} {v / mb:.1f}" for k, v in sorted(today.items(), key=lambda kv: -kv[1])),
          f"| total {sum(today.values()) / mb:.1f} MB")
    for r in ratios:
        c = candidates[r]
        total = sum(v for k, v in c.items() if not k.startswith("_"))
        parts = ", ".join(f"{k} {v / mb:.1f}" for k, v in c.items() if not k.startswith("_"))
        print(f"candidate, dense ratio 1/{r}: {parts} | total {total / mb:.1f} MB ({c['_dense_terms']} dense terms "
              f"over all segments, {c['_entries']:,} block entries, {c['_rare_postings']:,} rare postings, mean gap "
              f"width {c['_mean_gap_bits'] / len(segments):.1f} bits)")
    if args.output:
        Path(args.output).write_text(json.dumps({"today": today, "candidates": candidates}, indent=2) + "\n")


if __name__ == "__main__":
    main()
