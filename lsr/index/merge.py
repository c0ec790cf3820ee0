"""Merges: compact runs of segments into one, dropping deleted documents; searches go on over the previous
generation meanwhile (they hold their snapshot), and the merged generation is published like any commit.

:class:`TieredMergePolicy` is Lucene's log-merge idea on adjacent segments (so the documents keep their order, and
with it the tie order of equal scores): a segment's tier is log base ``merge_factor`` of its live documents over
``floor_documents``; a run of ``merge_factor`` adjacent segments of one tier is merged; a segment whose deleted
share passes ``max_deleted_ratio`` is rewritten alone. A merged segment copies stored impacts (every segment shares
the index's scale), embeddings, texts and BM25 postings of its live documents: nothing is re-encoded.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from lsr.errors import InvalidInput
from lsr.index import storage
from lsr.index.files import fault_point
from lsr.index.segment import DEFAULT_BOUND_RATIO, effective_block_size
from lsr.index.segment_writer import SegmentWriter, write_segment


@dataclass(frozen=True)
class TieredMergePolicy:
    merge_factor: int = 10
    floor_documents: int = 1000
    max_deleted_ratio: float = 0.3

    def __post_init__(self) -> None:
        if self.merge_factor < 2 or self.floor_documents < 1 or not 0 < self.max_deleted_ratio <= 1:
            raise InvalidInput("merge policy: merge_factor >= 2, floor_documents >= 1, 0 < max_deleted_ratio <= 1")

    def tier(self, live: int) -> int:
        return int(math.log(max(live, self.floor_documents) / self.floor_documents, self.merge_factor))

    def plan(self, sizes: list[tuple[int, int]]) -> list[list[int]]:
        """Runs of segment positions to merge, from (documents, deleted) per segment in generation order."""
        runs: list[list[int]] = []
        used: set[int] = set()
        start = 0
        while start < len(sizes):
            tier = self.tier(sizes[start][0] - sizes[start][1])
            end = start
            while end + 1 < len(sizes) and self.tier(sizes[end + 1][0] - sizes[end + 1][1]) == tier:
                end += 1
            for first in range(start, end + 1 - self.merge_factor + 1, self.merge_factor):
                run = list(range(first, first + self.merge_factor))
                runs.append(run)
                used.update(run)
            start = end + 1
        for position, (documents, deleted) in enumerate(sizes):
            if position not in used and deleted and deleted / documents > self.max_deleted_ratio:
                runs.append([position])
        return sorted(runs)


@dataclass
class MergeSummary:
    merged: list[list[str]] = field(default_factory=list)  # the segments each new segment replaced
    segments_before: int = 0
    segments_after: int = 0
    documents: int = 0
    dropped_deleted: int = 0
    generation: int | None = None
    seconds: float = 0.0


def merge(writer, max_segments: int | None = None, policy: TieredMergePolicy | None = None) -> MergeSummary:
    """Merge with ``writer`` (which holds the write lock and has nothing staged): down to ``max_segments``
    (adjacent runs of about equal size), or as ``policy`` asks. One generation is published for all the runs."""
    if writer.has_changes:
        raise InvalidInput("commit (or roll back) the staged writes before merging")
    started = time.perf_counter()
    base = writer.base
    summary = MergeSummary(segments_before=len(base.segments))
    segments = [writer._views[e.name][0] for e in base.segments]
    sizes = [(s.info.documents, e.deleted) for s, e in zip(segments, base.segments)]
    if max_segments is not None:
        if max_segments < 1:
            raise InvalidInput(f"max_segments must be >= 1, got {max_segments}")
        runs = _even_runs(len(sizes), max_segments)
    else:
        runs = (policy or TieredMergePolicy()).plan(sizes)
    runs = [run for run in runs if len(run) > 1 or sizes[run[0]][1] > 0]  # a lone segment only to drop deletes
    if not runs:
        summary.segments_after = len(base.segments)
        summary.generation = base.number
        return summary
    manifest = writer.manifest
    next_segment = base.next_segment
    replaced: dict[int, storage.SegmentEntry | None] = {}
    for run in runs:
        name = storage.segment_name(next_segment)
        next_segment += 1
        build = manifest.build
        out = SegmentWriter(writer.directory / storage.SEGMENTS / f".tmp-spool-{name}", manifest.vocab_size,
                            manifest.impact_dtype, effective_block_size(build["block_size"]), build["dense_ratio"],
                            (manifest.dense or {}).get("index"), bool(manifest.bm25), bool(manifest.documents),
                            chunked=bool(manifest.chunking), bound_ratio=build.get("bound_ratio", DEFAULT_BOUND_RATIO))
        out.schema = writer.schema
        for position in run:
            segment, entry = segments[position], base.segments[position]
            deleted = segment.deletes(entry.deletes, entry.deletes_crc32)
            keep = np.arange(segment.info.documents) if deleted is None else np.flatnonzero(~deleted)
            if len(keep):
                out.add_from(segment, keep)
            summary.dropped_deleted += entry.deleted
        summary.merged.append([base.segments[p].name for p in run])
        for position in run:
            replaced[position] = None
        if out.documents == 0:
            continue
        manifest.upgrade(writer.directory)
        info = write_segment(out, writer.directory, name, manifest.scale)
        fault_point("merge-segment-written")
        replaced[run[0]] = storage.SegmentEntry(name)
        summary.documents += info.documents
    entries = []
    for position, entry in enumerate(base.segments):
        if position not in replaced:
            entries.append(entry)
        elif replaced[position] is not None:
            entries.append(replaced[position])
    documents = base.documents
    generation = storage.Generation(base.number + 1, entries, next_segment, documents,
                                    "merge " + "; ".join("+".join(run) for run in summary.merged))
    writer._publish(generation, added=[e.name for e in entries if e.name not in writer._views], moved=True)
    summary.generation = generation.number
    summary.segments_after = len(entries)
    summary.seconds = time.perf_counter() - started
    return summary


def _even_runs(count: int, target: int) -> list[list[int]]:
    """Split positions 0..count-1 into at most ``target`` adjacent runs of near-equal length."""
    if count <= target:
        return [[p] for p in range(count)]
    bounds = np.linspace(0, count, target + 1).round().astype(int)
    return [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
