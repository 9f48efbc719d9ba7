"""The UI shell in real Chromium: it loads without errors, follows the system theme, and escapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.server.app import create_app
from keel.store import open_store
from live_server import serve


def test_experiments_page_in_chromium(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    store = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "a"))
    store.create_experiment("<script>alert(1)</script>")
    with serve(create_app(store)) as url:
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.emulate_media(color_scheme="dark")
        page.goto(url + "/")
        expect(page.get_by_role("table", name="Experiments")).to_be_visible()
        expect(page.get_by_role("link", name="<script>alert(1)</script>")).to_be_visible()
        assert dialogs == []
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 18, 24)"  # the dark palette, from the system setting
        page.get_by_role("button", name="Colour theme").click()  # system -> light
        assert page.evaluate("document.documentElement.dataset.theme") == "light"
        page.reload()
        assert (
            page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
        )
