"""The Lucene backend, all in this package (extra ``lsr[lucene]``): the JVM bootstrap and index builds through
Pyserini (:mod:`lsr.lucene.java`), the ``lucene`` sparse retriever and the Pyserini BM25 baseline
(:mod:`lsr.lucene.retriever`), and the commit listener that builds an index's Lucene part (:mod:`lsr.lucene.listener`).
"""

from lsr.lucene.java import (  # noqa: F401  (the private names: tests and benchmarks)
    INSTALL_HINT,
    MIN_JAVA,
    QUERY_WEIGHT_MAX,
    VECTOR_MODULE,
    LuceneBuildFailed,
    LuceneUnavailable,
    _java_release,
    _shard,
    _version,
    build_bm25_index,
    build_impact_index,
    check_available,
    java_home,
    start_jvm,
    write_json_vector_collection,
)
