"""uvicorn's httptools protocol with Nagle's algorithm off (see :mod:`keel.server.protocol`).

Its own module because importing it needs httptools, which is optional.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from keel.server.protocol import no_delay


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that sets ``TCP_NODELAY`` on the connection's socket."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        no_delay(transport)
        super().connection_made(transport)  # type: ignore[arg-type]
