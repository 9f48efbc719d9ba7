"""A real uvicorn server for an ASGI app on 127.0.0.1, on an ephemeral port, in a thread.

>>> from keel.server import create_app  # doctest: +SKIP
>>> with serve(create_app(store)) as url:  # doctest: +SKIP
...     httpx.get(f"{url}/health")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def serve(app: Any, start_timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` until the block ends; yield its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the test server did not start within {start_timeout} s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
