"""The Milvus backend, all in this package (extra ``lsr[milvus]``): the client (:mod:`lsr.milvus.client`), an index's
collection (:mod:`lsr.milvus.collection`: create, check, mirror, reconcile, :func:`attach`), the commit listener
that keeps it in step with the index's writer (:mod:`lsr.milvus.listener`), filters as Milvus expressions
(:mod:`lsr.milvus.expressions`) and the ``milvus`` retriever (:mod:`lsr.milvus.retriever`)."""

from lsr.milvus.client import connect, disconnect, normalize_uri, require
from lsr.milvus.collection import ID_MAX, STATE, TOPK_MAX, Mirror, attach, check_mirrorable, default_collection

__all__ = ["ID_MAX", "STATE", "TOPK_MAX", "Mirror", "attach", "check_mirrorable", "connect", "default_collection",
           "disconnect", "normalize_uri", "require"]
