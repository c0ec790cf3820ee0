"""The Milvus client of this process, one a URI (Milvus Lite runs one embedded server per file and process), and
the guard that turns its failures into :class:`~lsr.errors.BackendUnavailable` naming the URI."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from lsr.errors import BackendUnavailable, InvalidInput, MissingDependency

_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def require():
    try:
        import pymilvus
    except ImportError:
        raise MissingDependency("the milvus backend needs the `milvus` extra: pip install 'lsr[milvus]' (pymilvus and "
                                "milvus-lite)") from None
    return pymilvus


def normalize_uri(uri: str) -> str:
    """A server URI as given; a Milvus Lite file as an absolute path (it must end in ``.db``; its folder must exist)."""
    uri = str(uri).strip()
    if re.match(r"^(https?|tcp|grpc|unix)://", uri):
        return uri
    path = Path(uri).expanduser().absolute()
    if path.suffix != ".db":
        raise InvalidInput(f"Milvus URI {uri!r}: a Milvus Lite file must end in .db (e.g. var/milvus/lsr.db), a "
                           "server URI starts with http:// (e.g. http://localhost:19530)")
    if not path.parent.is_dir():
        raise InvalidInput(f"Milvus URI {uri!r}: the folder {path.parent} does not exist; create it first")
    return str(path)


def connect(uri: str, timeout: float = 5.0):
    """A client for ``uri``, shared by this process (Milvus Lite runs one embedded server per file and process); a
    URI that does not answer is :class:`Unavailable` within ``timeout`` seconds."""
    pymilvus = require()
    uri = normalize_uri(uri)
    with _clients_lock:
        client = _clients.get(uri)
        if client is None:
            try:
                client = pymilvus.MilvusClient(uri=uri, timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - pymilvus raises MilvusException, grpc errors, OSError
                if uri.startswith("/"):
                    raise BackendUnavailable(f"cannot open Milvus Lite file {uri} ({str(exc).strip()[:200]}): Milvus Lite "
                                      "serves a file to one process at a time; stop the other process (serve with "
                                      "--workers 1 on Milvus Lite), or use a Milvus server (http://host:19530)"
                                      ) from None
                raise BackendUnavailable(f"cannot reach Milvus at {uri} ({str(exc).strip()[:200]}); start the server, fix "
                                  "--milvus-uri, or give a file path ending in .db for embedded Milvus Lite") from None
            _clients[uri] = client
        return client


class _Guarded:
    """A client whose failures are :class:`BackendUnavailable` naming the URI (pymilvus raises MilvusException,
    grpc errors, OSError): a Milvus that stops answering is a 503 to retry, never a traceback."""

    def __init__(self, client, uri: str) -> None:
        self._client, self._uri = client, uri

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            try:
                return attribute(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - whatever the client raised
                raise BackendUnavailable(f"Milvus at {self._uri} failed {name}: {str(exc).strip()[:300]}") from exc

        return call


def disconnect(uri: str | None = None) -> None:
    """Close this process's client of ``uri`` (every client when None): a Milvus Lite file is then free for another
    process."""
    with _clients_lock:
        for key in [k for k in _clients if uri is None or k == normalize_uri(uri)]:
            _clients.pop(key).close()
            if key.startswith("/"):  # Milvus Lite serves the file from a thread of this process until released
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(key)
