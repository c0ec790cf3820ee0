"""Training data: examples from BEIR train qrels, self-supervised title -> body pairs, hard-negative mining, and
the JSONL format of prepared examples (one example per line, so a run is reproducible from its file).

Example line::

    {"query_id": "PLAIN-3", "query": "...", "positive": "MED-2436", "negatives": ["MED-10", "MED-77"]}

Document ids point into a :class:`TrainingTexts`. A self-supervised pair uses a document's title as the query and
its body (without the title) as the positive, under the derived id ``<doc id>#body``; its negatives are bodies too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lsr.corpus import read_corpus, read_qrels, read_queries
from lsr.errors import CorpusError, MissingFile

BODY_SUFFIX = "#body"


@dataclass
class Example:
    query_id: str
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)

    def candidates(self) -> list[str]:
        return [self.positive, *self.negatives]


class TrainingTexts:
    """Document id -> text: full documents (title + " " + text) and, under ``<id>#body``, bodies alone."""

    def __init__(self, full: dict[str, str], bodies: dict[str, str]) -> None:
        self.full = full
        self.bodies = bodies

    @classmethod
    def from_corpus(cls, corpus: str | Path, skip_malformed: bool = False) -> TrainingTexts:
        full, bodies = {}, {}
        for doc in read_corpus(corpus, skip_malformed=skip_malformed):
            full[doc.id] = doc.contents
            bodies[doc.id] = doc.text
        return cls(full, bodies)

    def __getitem__(self, doc_id: str) -> str:
        if doc_id.endswith(BODY_SUFFIX) and doc_id[: -len(BODY_SUFFIX)] in self.bodies:
            return self.bodies[doc_id[: -len(BODY_SUFFIX)]]
        return self.full[doc_id]

    def __contains__(self, doc_id: str) -> bool:
        try:
            self[doc_id]
        except KeyError:
            return False
        return True

    def ids(self) -> list[str]:
        return list(self.full)


def examples_from_qrels(beir_dir: str | Path, split: str = "train", documents: TrainingTexts | None = None,
                        min_relevance: int = 1) -> list[Example]:
    """One example per judged (query, relevant document) pair of ``qrels/<split>.tsv``; negatives come later."""
    queries = read_queries(beir_dir)
    qrels = read_qrels(beir_dir, split)
    if not qrels:
        raise CorpusError(f"{beir_dir}/qrels/{split}.tsv has no judgments; nothing to train on")
    examples = []
    for qid in sorted(qrels):
        if qid not in queries:
            raise CorpusError(f"{beir_dir}/qrels/{split}.tsv: query {qid} is not in queries.jsonl")
        for doc_id, label in sorted(qrels[qid].items()):
            if label >= min_relevance and (documents is None or doc_id in documents):
                examples.append(Example(qid, queries[qid], doc_id))
    return examples


def self_supervised_examples(documents: TrainingTexts, titles: dict[str, str], min_title_words: int = 3,
                             limit: int | None = None, seed: int = 0) -> list[Example]:
    """Title -> body pairs: the pre-training signal of the inference-free paper's models, from any corpus."""
    ids = [doc_id for doc_id, title in titles.items()
           if len(title.split()) >= min_title_words and documents.bodies.get(doc_id, "").strip()]
    if limit is not None and limit < len(ids):
        ids = sorted(np.random.default_rng(seed).choice(ids, size=limit, replace=False).tolist())
    return [Example(f"title:{doc_id}", titles[doc_id], doc_id + BODY_SUFFIX) for doc_id in ids]


def read_titles(corpus: str | Path) -> dict[str, str]:
    return {doc.id: doc.title for doc in read_corpus(corpus) if doc.title}


Retriever = Callable[[str, int], list[str]]  # query text, depth -> ranked document ids


def mine_negatives(examples: Sequence[Example], retrieve: Retriever, count: int, depth: int = 100,
                   relevant: dict[str, set[str]] | None = None, seed: int = 0) -> list[Example]:
    """Give each example ``count`` hard negatives sampled from the top ``depth`` of ``retrieve`` (BM25 or an lsr
    index), never one of the query's judged documents. Retrieval runs once per distinct query."""
    rng = np.random.default_rng(seed)
    ranked: dict[str, list[str]] = {}
    mined = []
    for example in examples:
        if example.query_id not in ranked:
            ranked[example.query_id] = retrieve(example.query, depth)
        positives = (relevant or {}).get(example.query_id, set()) | {example.positive}
        body = example.positive.endswith(BODY_SUFFIX)
        pool = [doc for doc in ranked[example.query_id]
                if doc not in positives and (doc + BODY_SUFFIX if body else doc) not in positives]
        if not pool:
            continue
        chosen = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
        negatives = [pool[i] + (BODY_SUFFIX if body else "") for i in sorted(chosen)]
        mined.append(Example(example.query_id, example.query, example.positive, negatives))
    return mined


def relevant_sets(beir_dir: str | Path, split: str) -> dict[str, set[str]]:
    return {qid: {doc for doc, label in docs.items() if label > 0} for qid, docs in read_qrels(beir_dir, split).items()}


def write_examples(examples: Iterable[Example], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(asdict(example), ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)
    return count


def read_examples(path: str | Path, documents: TrainingTexts | None = None) -> list[Example]:
    """Read prepared examples; a malformed line or an unknown document id is an error naming file:line."""
    path = Path(path)
    if not path.exists():
        raise MissingFile(f"training examples {path} do not exist; leave `examples` unset and `lsr train` prepares them")
    examples = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(raw)
                example = Example(query_id=str(data["query_id"]), query=str(data["query"]),
                                  positive=str(data["positive"]), negatives=[str(n) for n in data.get("negatives", [])])
            except (ValueError, KeyError, TypeError) as exc:
                raise CorpusError(f"{where}: not a training example ({exc.__class__.__name__}: {exc}); expected "
                                  '{"query_id", "query", "positive", "negatives": [...]}') from None
            if not example.query.strip():
                raise CorpusError(f"{where}: empty query text")
            if documents is not None:
                for doc_id in example.candidates():
                    if doc_id not in documents:
                        raise CorpusError(f"{where}: document {doc_id!r} is not in the corpus; wrong --corpus?")
            examples.append(example)
    if not examples:
        raise CorpusError(f"{path} has no training examples")
    return examples
