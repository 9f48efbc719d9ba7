"""Real servers on 127.0.0.1: an ASGI app in a thread (``serve``), or a ``keel`` command
in its own process (``keel_process``).

With the HTTP protocol ``keel server`` runs, so tests see what users get.

>>> from keel.server import create_app  # doctest: +SKIP
>>> with serve(create_app(store)) as url:  # doctest: +SKIP
...     httpx.get(f"{url}/health")
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from keel.server.background import serve_in_background as serve

__all__ = ["keel_process", "serve"]


KEEL_MAIN = "from keel.cli.main import main; main()"


@contextlib.contextmanager
def keel_process(args: list[str], cwd: Path) -> Iterator[tuple[str, int]]:
    """``keel <args> --port <free port>`` in its own process until healthy; SIGTERM at the end."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-c", KEEL_MAIN, *args, "--port", str(port)]
    proc = subprocess.Popen(command, cwd=cwd, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                said = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"keel {args[0]} did not become healthy: {said}")
            time.sleep(0.2)
        yield base, port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
