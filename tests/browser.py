"""Real headless Chromium for the UI's end-to-end tests: Debian's ``chromium`` via Playwright.

``playwright install`` cannot download its own browser on these machines,
so the tests launch the system binary through ``executable_path``. Without
it (and outside CI) they skip, saying how to get it; CI installs it.

Every page a test opens fails the test on a JavaScript error, and a failing
test leaves a screenshot under ``tests/.artifacts/`` (or
``KEEL_TEST_SCREENSHOTS``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Without the background-networking flags Chromium keeps calling Google's
# hosts, which this closed network never answers.
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    return (
        os.environ.get("KEEL_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


# Per module, not per session: Playwright's sync API keeps an asyncio loop running
# in the main thread while it is open, and later tests call asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        if os.environ.get("CI") or os.environ.get("KEEL_TEST_POSTGRES_URL"):
            pytest.fail(
                "CI runs the browser tests: install Debian's chromium (apt-get install chromium)"
            )
        pytest.skip("no chromium on PATH: apt-get install chromium (or set KEEL_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=path, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh page (own context: cookies, storage) that fails the test on a JS error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield tab
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        shots = Path(os.environ.get("KEEL_TEST_SCREENSHOTS", Path(__file__).parent / ".artifacts"))
        shots.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(shots / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def canvas_ink(page: Any, selector: str) -> int:
    """How many pixels of the first canvas under ``selector`` are drawn (non-transparent)."""
    return int(
        page.evaluate(
            """(sel) => { const c = document.querySelector(sel + ' canvas');
            if (!c) return 0;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""",
            selector,
        )
    )
