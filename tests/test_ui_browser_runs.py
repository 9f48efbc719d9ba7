"""The runs table in real Chromium: filter, columns, reload, back/forward, select to compare."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from keel.entities import Metric, Param
from keel.server.app import create_app
from keel.store import open_store
from live_server import serve

EVIL = "<script>alert(1)</script>"


def test_runs_table_state_lives_in_the_url(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    store = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "a"))
    exp = store.create_experiment("sweep")
    for i in range(6):
        run = store.create_run(exp, user_id="u", start_time=i, tags=[], run_name=f"trial-{i}")
        store.log_batch(
            run.info.run_id,
            metrics=[Metric("acc", 0.5 + i / 10, 0, 0)],
            params=[Param("lr", str(i)), Param("depth", str(i % 2))],
            tags=[],
        )
    store.create_run(exp, user_id="u", start_time=99, tags=[], run_name=EVIL)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    with serve(create_app(store)) as url:
        page.goto(f"{url}/experiments/{exp}")
        table = page.get_by_role("table", name="Runs")
        expect(table.get_by_role("link", name=EVIL)).to_be_visible()  # text, not markup
        expect(page.locator("#count")).to_contain_text("7 runs match")

        # Filter (with OR): the table and the URL follow.
        search = page.get_by_role("searchbox", name="Filter runs")
        search.fill("metrics.acc > 0.75 OR params.lr = '0'")
        search.press("Enter")
        expect(page.locator("#count")).to_contain_text("4 runs match")
        expect(page).to_have_url(re.compile(r"q=metrics\.acc"))

        # Choose columns: only acc, and its max.
        page.get_by_text("Columns (").click()
        chooser = page.locator("details.columns")
        chooser.get_by_role("checkbox", name="lr", exact=True).uncheck()
        chooser.get_by_role("checkbox", name="depth", exact=True).uncheck()
        chooser.get_by_role("checkbox", name="acc (max)").check()
        chooser.get_by_role("button", name="Apply columns").click()
        expect(page).to_have_url(re.compile(r"cols=metrics\.acc\.max"))
        headers = table.locator("thead th")
        expect(headers).to_contain_text(
            ["", "Run", "Status", "Started (UTC)", "Duration", "acc", "acc (max)"]
        )

        # Sort by acc, ascending after two clicks.
        table.get_by_role("link", name="acc", exact=True).click()
        expect(page).to_have_url(re.compile(r"sort=metrics\.acc"))
        table.get_by_role("link", name=re.compile(r"^acc ▼")).click()
        expect(page).to_have_url(re.compile(r"dir=asc"))
        first = table.locator("tbody tr").first
        expect(first).to_contain_text("trial-0")

        # A reload shows the same view from the URL alone.
        view_url = page.url
        page.reload()
        expect(page.locator("#count")).to_contain_text("4 runs match")
        expect(page.get_by_role("searchbox", name="Filter runs")).to_have_value(
            "metrics.acc > 0.75 OR params.lr = '0'"
        )
        expect(table.locator("tbody tr").first).to_contain_text("trial-0")
        expect(table.locator("thead th")).to_have_count(7)

        # Back to the unsorted view, forward to the sorted one.
        page.go_back()
        expect(page).not_to_have_url(re.compile(r"dir=asc"))
        page.go_forward()
        expect(page).to_have_url(view_url)
        expect(table.locator("tbody tr").first).to_contain_text("trial-0")

        # Select three runs: the compare button counts them and goes to /compare.
        compare = page.locator("#compare-button")
        expect(compare).to_be_disabled()
        boxes = table.locator('tbody input[name="runs"]')
        for i in range(3):
            boxes.nth(i).check()
        expect(compare).to_have_text("Compare 3 selected")
        compare.click()
        expect(page).to_have_url(re.compile(r"/compare\?runs=\w+&runs=\w+&runs=\w+$"))
        expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()
        params = page.get_by_role("table", name="Params")
        expect(params).to_contain_text("lr")  # differs between the three
        expect(params).to_contain_text("depth")  # 0, 1, 0: differs too
        expect(page.get_by_role("table", name="Metrics")).to_contain_text("acc")
    assert dialogs == []
