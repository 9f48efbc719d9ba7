"""The run page in real Chromium: charts draw, their controls live in the URL, artifacts preview."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from browser import canvas_ink
from keel.entities import Metric, Param
from keel.server.app import create_app
from keel.store import open_store
from live_server import serve
from test_ui_run import png_bytes


def chart_signature(page: Any) -> str:
    """What the first chart's canvas shows, as a data URL (differs when the drawing does)."""
    return str(page.evaluate("document.querySelector('.chart canvas').toDataURL()"))


def back(page: Any, arrived: Any, shown: str) -> None:
    """Browser Back, then wait until the URL is ``arrived`` and ``shown`` is on the page.

    htmx keeps no history snapshots, so the page is fetched again from its URL
    (in place, or by a reload: either works here).
    """
    page.evaluate("setTimeout(() => history.back(), 0)")
    page.wait_for_url(arrived)
    page.wait_for_selector(shown)


def wait_for_ink(page: Any) -> int:
    page.wait_for_selector(".chart canvas")
    page.wait_for_function(
        "() => { const c = document.querySelector('.chart canvas'); return c && c.width > 0; }"
    )
    return canvas_ink(page, ".chart")


def test_run_charts_and_artifacts_in_chromium(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    store = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "artifacts"))
    run = store.create_run("0", "ana", 1_000_000, [], "trial-7")
    run_id = run.info.run_id
    store.log_batch(
        run_id,
        metrics=[
            Metric("loss", 1 + math.sin(i / 8) * 0.5 + (i % 7) / 10, 1_000_000 + i * 500, i)
            for i in range(300)
        ],
        params=[Param("lr", "0.01")],
    )
    root = Path(run.info.artifact_uri)
    root.mkdir(parents=True)
    (root / "loss.png").write_bytes(png_bytes())
    (root / "eval.csv").write_text("label,score\ncat,0.91\ndog,0.72\n")
    (root / "report.html").write_text("<h1>Quarterly report</h1>")

    with serve(create_app(store)) as url:
        page.goto(f"{url}/runs/{run_id}")
        expect(page.get_by_role("table", name="Parameters")).to_contain_text("0.01")

        page.get_by_role("link", name="Charts", exact=True).click()
        page.wait_for_url("**tab=charts**")
        assert wait_for_ink(page) > 1000
        plain = chart_signature(page)
        assert page.evaluate("document.querySelector('.chart').dataset.points") == "300"

        page.get_by_label("Log scale").check()
        page.wait_for_url("**log=1**")
        page.wait_for_selector('.chart[data-log="1"] canvas')
        assert wait_for_ink(page) > 1000
        logged = chart_signature(page)
        assert logged != plain

        page.locator('input[name="smooth"]').fill("0.9")
        page.wait_for_url("**smooth=0.9**")
        page.wait_for_selector('.chart[data-smooth="0.9"] canvas')
        assert wait_for_ink(page) > 1000
        smoothed = chart_signature(page)
        assert smoothed not in (plain, logged)

        page.reload()
        assert "log=1" in page.url and "smooth=0.9" in page.url
        expect(page.get_by_label("Log scale")).to_be_checked()
        assert wait_for_ink(page) > 1000
        assert chart_signature(page) == smoothed
        # One chart per element, however often htmx swapped: nothing left behind.
        assert page.locator(".chart canvas").count() == 1

        page.get_by_role("link", name="Artifacts", exact=True).click()
        page.wait_for_url("**tab=artifacts**")
        page.get_by_role("link", name="loss.png").click()
        image = page.locator("img.artifact")
        expect(image).to_be_visible()
        page.wait_for_function("() => document.querySelector('img.artifact').naturalWidth === 1")

        page.get_by_role("link", name="eval.csv").click()
        expect(page.get_by_role("table", name="Table preview")).to_contain_text("dog")
        assert "path=eval.csv" in page.url

        page.get_by_role("link", name="report.html").click()
        frame = page.locator("iframe.artifact")
        expect(frame).to_have_attribute("sandbox", "")
        expect(page.frame_locator("iframe.artifact").locator("h1")).to_have_text("Quarterly report")

        back(page, lambda u: u.endswith("path=eval.csv"), "table.artifact-table >> text=cat")
        back(page, lambda u: u.endswith("path=loss.png"), "img.artifact")
        back(page, lambda u: u.endswith("tab=artifacts"), "table[aria-label=Artifacts]")
        assert page.locator(".artifact-preview").count() == 0
        back(page, lambda u: "tab=charts" in u and "smooth=0.9" in u, ".chart canvas")
        expect(page.get_by_label("Log scale")).to_be_checked()
        assert wait_for_ink(page) > 1000


def test_chart_shows_a_message_when_its_data_fails(page: Any, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "artifacts"))
    run = store.create_run("0", "ana", 1_000_000, [], "r")
    store.log_batch(run.info.run_id, metrics=[Metric("loss", 1.0, 1, 0)])
    with serve(create_app(store)) as url:
        page.route("**/charts/metric**", lambda route: route.fulfill(status=200, body="down"))
        page.goto(f"{url}/runs/{run.info.run_id}?tab=charts")
        page.wait_for_selector(".chart .chart-message >> text=Could not load this chart")
        assert page.locator(".chart canvas").count() == 0
