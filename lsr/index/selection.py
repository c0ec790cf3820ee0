"""What a filter leaves of a segment: the live documents it keeps, in the forms the kernels read.

:func:`select` compiles a parsed filter (:mod:`lsr.filters`) against one segment view and combines it with the
view's deletes. The result is cached on the segment, by filter and deletes file, so a filter that requests repeat
is compiled once per segment (as Lucene's query cache keeps a filter's bitset per segment).

A selection that keeps few documents (under 1/256 of the segment) is held as sorted row numbers, which the native
kernel scores directly (:func:`lsr.index.kernel.score_segments_rows`); a larger one as a per-row flag array and a
per-block flag array, which the block-max kernel reads to skip deleted and filtered rows and every block that holds
none of them.
"""

from __future__ import annotations

import numpy as np

SPARSE_BELOW = 256  # kept rows under 1/256 of a segment's rows: scored directly, as a list (1M synthetic: the
# direct kernel 0.56 ms at 0.1 %, 1.33 ms at 1 %; the block-max kernel over kept rows 0.97 and 0.81 ms)
BLOCKS_WORTH_SKIPPING = 0.25  # the kernel skips empty blocks when at most this share of blocks holds a kept row
_EMPTY = np.zeros(0, dtype=np.uint8)


class Selection:
    """The live documents of one segment view that a filter keeps."""

    def __init__(self, view, doc_mask: np.ndarray | None, doc_rows: np.ndarray | None) -> None:
        segment = view.segment
        self.rows_total = segment.info.rows
        self._row_doc = None if segment.row_doc is None else np.asarray(segment.row_doc)
        self._block_size = segment.block_size
        self._documents = segment.info.documents
        self._doc_mask, self._doc_rows = doc_mask, doc_rows
        self.documents = int(np.count_nonzero(doc_mask)) if doc_rows is None else len(doc_rows)
        self._live_rows = self._block_live = self._kept_rows = self._kernel_blocks = None
        if self.sparse:
            self.kept_rows()
            self.live_rows()
        else:
            self.live_rows()
            self.block_live()

    @property
    def sparse(self) -> bool:
        """Few rows kept: score them directly rather than walk blocks."""
        rows = self.documents if self._row_doc is None else int(np.count_nonzero(self.live_rows()))
        return rows * SPARSE_BELOW < self.rows_total

    def doc_mask(self) -> np.ndarray:
        """bool (documents,): the documents kept."""
        if self._doc_mask is None:
            mask = np.zeros(self._documents, dtype=bool)
            mask[self._doc_rows] = True
            self._doc_mask = mask
        return self._doc_mask

    def doc_rows(self) -> np.ndarray:
        """int64: the documents kept, increasing."""
        if self._doc_rows is None:
            self._doc_rows = np.flatnonzero(self._doc_mask)
        return self._doc_rows

    def live_rows(self) -> np.ndarray:
        """uint8 (rows,): 1 for a row of a kept document (the kernels' ``live``)."""
        if self._live_rows is None:
            mask = self.doc_mask()
            self._live_rows = (mask if self._row_doc is None else mask[self._row_doc]).astype(np.uint8)
        return self._live_rows

    def block_live(self) -> np.ndarray:
        """uint8 (blocks,): 1 for a block that holds a kept row."""
        if self._block_live is None:
            live = self.live_rows()
            n_blocks = -(-len(live) // self._block_size)
            padded = np.zeros(n_blocks * self._block_size, dtype=np.uint8)
            padded[: len(live)] = live
            self._block_live = padded.reshape(n_blocks, self._block_size).max(axis=1)
        return self._block_live

    def kernel_live(self) -> np.ndarray:
        """:meth:`live_rows`, or an empty array when every row is kept (the kernels' fast path: no check a row)."""
        return _EMPTY if self.documents == self._documents and self._row_doc is None else self.live_rows()

    def kernel_blocks(self) -> np.ndarray:
        """:meth:`block_live`, or an empty array when most blocks hold a kept row: then zeroing the few others costs
        the kernel a pass over every bound and saves it almost nothing (1M synthetic, 50 % kept: 0.72 ms with the
        pass, 0.57 without; 1 % kept: 0.55 with, 0.81 without)."""
        if self._kernel_blocks is None:
            blocks = self.block_live()
            self._kernel_blocks = _EMPTY if np.count_nonzero(blocks) > len(blocks) * BLOCKS_WORTH_SKIPPING else blocks
        return self._kernel_blocks

    def kept_rows(self) -> np.ndarray:
        """int64: the rows of kept documents, increasing."""
        if self._kept_rows is None:
            if self._row_doc is None:
                self._kept_rows = np.asarray(self.doc_rows(), dtype=np.int64)
            else:
                self._kept_rows = np.flatnonzero(self.live_rows()).astype(np.int64)
        return self._kept_rows


def select(view, clause) -> Selection:
    """The selection of ``clause`` (a parsed filter) in ``view``, cached on its segment."""
    segment = view.segment

    def compute() -> Selection:
        mask = clause.mask(segment.metadata, segment.info.documents)
        deleted = view.deleted
        if mask.rows is not None:
            rows = mask.rows if deleted is None else mask.rows[~deleted[mask.rows]]
            return Selection(view, None, rows)
        dense = mask.dense if deleted is None else mask.dense & ~deleted
        return Selection(view, dense, None)

    return segment.cache.get(("filter", clause.key, view.deletes), compute)
