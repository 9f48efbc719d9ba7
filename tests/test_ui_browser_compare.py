"""The compare page in real Chromium: differences-only by default, URL state, SVG charts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from keel.entities import Metric, Param
from keel.server.app import create_app
from keel.store import open_store
from live_server import serve


def test_compare_three_runs_in_chromium(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    store = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "a"))
    experiments = [store.create_experiment("vision"), store.create_experiment("text")]
    ids = []
    for i, (lr, optimizer) in enumerate([("0.1", "sgd"), ("0.01", "adam"), ("0.001", "sgd")]):
        run = store.create_run(experiments[i // 2], "ann", 1_700_000_000_000, [], f"run-{i}")
        store.log_batch(
            run.info.run_id,
            metrics=[Metric("acc", 0.6 + i / 10, 1_700_000_000_000, 0)],
            params=[Param("lr", lr), Param("optimizer", optimizer), Param("seed", "7")],
        )
        ids.append(run.info.run_id)
    dialogs: list[str] = []

    def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    with serve(create_app(store)) as url:
        page.goto(url + "/compare?" + "&".join(f"runs={i}" for i in ids))
        params = page.get_by_role("table", name="Params")
        expect(params).to_be_visible()
        expect(params.locator("tbody tr")).to_have_count(2)  # lr and optimizer; seed is hidden
        expect(page.get_by_text("1 identical param hidden")).to_be_visible()

        page.get_by_role("link", name="Show all params").click()
        expect(page).to_have_url(re.compile(r"[?&]all=1"))
        expect(params.locator("tbody tr")).to_have_count(3)
        expect(params.locator("tbody tr[data-key=seed]")).to_be_visible()

        page.go_back()
        expect(page).not_to_have_url(re.compile(r"all=1"))
        expect(page.get_by_role("table", name="Params").locator("tbody tr")).to_have_count(2)

        parallel = page.locator("svg.compare-svg.parallel")
        expect(parallel).to_be_visible()
        expect(parallel.locator("polyline.run-line")).to_have_count(3)
        scatter = page.locator("svg.compare-svg.scatter")
        expect(scatter).to_be_visible()
        expect(scatter.locator("circle.point")).to_have_count(3)
        box = scatter.locator("circle.point").first.bounding_box()
        assert box is not None and box["width"] > 4  # drawn, not collapsed

        page.locator("select[name=sx]").select_option("params.optimizer")
        page.get_by_role("button", name="Plot").click()
        expect(page).to_have_url(re.compile(r"sx=params\.optimizer"))
        expect(page.locator("svg.compare-svg.scatter text", has_text="adam")).to_be_visible()
        assert dialogs == []
