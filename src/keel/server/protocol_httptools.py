"""uvicorn's httptools protocol with Nagle's algorithm off (see :mod:`keel.server.protocol`).

It also keeps a ``#`` in the request target as part of the path, as h11
does: httptools drops everything from ``#`` on, so ``DELETE a#/../x`` would
reach the app as ``DELETE a``, a different artifact than the client named.
With the ``#`` kept, the app's path checks see what was sent and refuse it.

Its own module because importing it needs httptools, which is optional.
"""

from __future__ import annotations

import asyncio
import urllib.parse

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from keel.server.protocol import no_delay


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that sets ``TCP_NODELAY`` on the connection's socket."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        no_delay(transport)
        super().connection_made(transport)  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if b"#" in self.url and "path" in self.scope:
            raw_path, _, query = self.url.partition(b"?")
            root = self.root_path
            self.scope["raw_path"] = root.encode("ascii") + raw_path
            self.scope["path"] = root + urllib.parse.unquote(raw_path.decode("ascii"))
            self.scope["query_string"] = query
