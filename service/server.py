"""Running the app under uvicorn, with TCP_NODELAY on every connection.

With ``--workers N`` uvicorn binds the listening socket itself as ``socket.socket(family=...)``, whose protocol field
is 0 rather than ``IPPROTO_TCP``; asyncio only sets TCP_NODELAY on accepted sockets whose protocol says TCP, so with
several workers Nagle's algorithm stayed on. A response goes out in two writes (headers, then body), and on a
kept-alive connection the second write waited for the client's delayed ACK: 40-44 ms a request, where one worker
(which binds through ``loop.create_server``, protocol 6) answered in 0.5 ms. These protocol classes set TCP_NODELAY
when the connection is made, whatever the listening socket looks like.
"""

from __future__ import annotations

import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


def set_nodelay(transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - a transport that is already closing
            pass


class H11NoDelay(H11Protocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)


try:  # httptools is optional (uvicorn's faster parser)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:
    HttpToolsProtocol = None

if HttpToolsProtocol is not None:

    class HttpToolsNoDelay(HttpToolsProtocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            set_nodelay(transport)
            super().connection_made(transport)


def http_protocol() -> type:
    """The protocol class for ``uvicorn.run(http=...)``: httptools when installed, else h11; both with TCP_NODELAY."""
    return HttpToolsNoDelay if HttpToolsProtocol is not None else H11NoDelay
