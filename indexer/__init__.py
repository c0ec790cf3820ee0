"""`lsr index` and `lsr idf`: command-line indexing over the core (:class:`lsr.Index`), installed as ``lsr.indexer``."""
