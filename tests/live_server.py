"""A real uvicorn server for an ASGI app on 127.0.0.1, on an ephemeral port, in a thread.

With the HTTP protocol ``keel server`` runs, so tests see what users get.

>>> from keel.server import create_app  # doctest: +SKIP
>>> with serve(create_app(store)) as url:  # doctest: +SKIP
...     httpx.get(f"{url}/health")
"""

from __future__ import annotations

from keel.server.background import serve_in_background as serve

__all__ = ["serve"]
