"""Long documents: overlapping chunks, a document scored by its best chunk (or the sum), hits that say which chunk."""

from __future__ import annotations

import numpy as np
import pytest

from lsr import Engine, Index, load_encoder
from tests.conftest import WORDS

LONG = [
    {"id": "long1", "title": "Statins", "text": " ".join(["statin women study"] * 12 + ["fish oil heart risk"] * 3)},
    {"id": "long2", "title": "", "text": " ".join(["coffee tea milk"] * 20 + ["breast cancer"])},
    {"id": "short", "title": "Salt", "text": "salt sugar and blood pressure"},
    {"id": "mixed", "title": "", "text": " ".join(WORDS[5:40] * 2)},
]


@pytest.fixture(scope="module")
def encoder(tiny_mlm_dir, tiny_idf_file):
    return load_encoder(tiny_mlm_dir, kind="inference-free", idf=tiny_idf_file, device="cpu", max_document_length=16)


def contents(document: dict) -> str:
    return f"{document['title']} {document['text']}".strip()


@pytest.mark.parametrize("aggregate", ["max", "sum"])
def test_a_document_scores_as_its_best_chunk_or_their_sum(encoder, aggregate):
    index = Index.build(encoder, documents=LONG, chunk_tokens=16, chunk_overlap=4, chunk_aggregate=aggregate,
                        impact_dtype="float32", store_documents=True)
    rows, row_doc, chunks = encoder.encode_chunks([contents(d) for d in LONG], 16, 4)
    assert index.segments[0].info.rows == len(rows) > len(LONG) and np.bincount(row_doc)[0] > 3
    engine = Engine(index)
    for question in ("fish oil heart", "breast cancer coffee", "statin", "salt blood"):
        q_ids, q_w = encoder.encode_queries([question]).row(0)
        q = np.zeros(encoder.vocab_size, dtype=np.float64)
        q[q_ids] = q_w
        per_row = rows.to_scipy(encoder.vocab_size) @ q
        expected = {}
        for doc, document in enumerate(LONG):
            own = per_row[row_doc == doc]
            expected[document["id"]] = own.max() if aggregate == "max" else own.sum()
        expected = {d: s for d, s in expected.items() if s > 0}
        result = engine.search(question, k=10, explain=True)
        assert result.ids == sorted(expected, key=lambda d: (-expected[d], [x["id"] for x in LONG].index(d)))
        np.testing.assert_allclose(result.scores, [expected[d] for d in result.ids], rtol=1e-5)
        for hit in result.hits:
            assert abs(sum(c.contribution for c in hit.explanation) - hit.score) < 1e-4 * max(1.0, hit.score)
            if aggregate == "max":  # the best chunk: its characters come from the document and it scores the hit
                text = contents(next(d for d in LONG if d["id"] == hit.id))
                assert 0 <= hit.chunk["start"] < hit.chunk["end"] <= len(text)
                best = [r for r in range(len(row_doc)) if LONG[row_doc[r]]["id"] == hit.id and
                        chunks[r][0] == hit.chunk["number"]]
                assert per_row[best[0]] == pytest.approx(hit.score, rel=1e-5)
            else:
                assert hit.chunk is None


def test_deleting_a_chunked_document_deletes_every_chunk(encoder):
    index = Index.build(encoder, documents=LONG, chunk_tokens=16, chunk_overlap=0)
    engine = Engine(index)
    assert "long1" in engine.search("statin women study", 10).ids
    index.delete(["long1"])
    index.commit()
    assert "long1" not in engine.search("statin women study", 10).ids
    index.add(documents=[LONG[0]])
    index.commit()
    assert engine.search("statin women study", 10).ids.count("long1") == 1


def test_without_chunking_long_documents_are_counted_as_truncated(encoder):
    index = Index.build(encoder, documents=LONG)
    assert index.manifest.build["summary"]["truncated_documents"] == 3  # all but "short" pass 16 tokens
    with pytest.raises(ValueError, match="chunk"):
        Index.build(encoder, documents=LONG, chunk_tokens=16, chunk_overlap=16)
    with pytest.raises(ValueError, match="at most 128 tokens"):
        Index.build(encoder, documents=LONG, chunk_tokens=4096)
