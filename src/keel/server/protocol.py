"""uvicorn's HTTP/1.1 protocol with Nagle's algorithm off on every connection.

asyncio turns Nagle off only on sockets whose Python object says they are
TCP; uvicorn's multi-worker mode creates its listening socket without saying
so, and then every keep-alive response waits ~40 ms for a delayed ACK
between its headers and its body (uvicorn issue #3149). Setting
``TCP_NODELAY`` per connection works whichever way the socket was made.
``keel server`` passes the class to uvicorn by import string
(:func:`http_protocol`): the httptools parser when it is installed (the
``server`` extra installs it; ~12% more small requests per second than h11),
else h11. The event loop is uvicorn's choice, ``auto``: uvloop, which the
extra also installs, where the platform has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


def http_protocol() -> str:
    """The import string of the protocol class ``keel server`` gives uvicorn.

    >>> http_protocol().startswith("keel.server.protocol")
    True
    """
    if importlib.util.find_spec("httptools") is not None:
        return "keel.server.protocol_httptools:NoDelayHttpToolsProtocol"
    return "keel.server.protocol:NoDelayH11Protocol"


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on the transport's socket when it is TCP."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # not TCP after all: nothing to tune
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    """:class:`H11Protocol` that sets ``TCP_NODELAY`` on the connection's socket."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        no_delay(transport)
        super().connection_made(transport)  # type: ignore[arg-type]
