"""Registry pages in real Chromium: model → version → lineage, and moving an alias in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.entities import Dataset, DatasetInput, InputTag, Param, RunTag
from keel.server.app import create_app
from keel.store import open_store
from keel.store.base import now_ms
from keel.store.sql.registry import SqlRegistryStore
from live_server import serve

COMMIT = "c0ffee0123456789c0ffee0123456789c0ffee01"


def test_open_a_version_see_lineage_and_move_an_alias(page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    store = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "a"))
    exp = store.create_experiment("churn-exp")
    run_id = store.create_run(exp, "ann", now_ms(), [], "forest-1").info.run_id
    store.log_batch(
        run_id, params=[Param("depth", "4")], tags=[RunTag("mlflow.source.git.commit", COMMIT)]
    )
    data = Dataset(name="customers", digest="ab" * 32, source="customers.csv")
    store.log_inputs(run_id, [DatasetInput(data, (InputTag("mlflow.data.context", "training"),))])
    registry = SqlRegistryStore.from_tracking_store(store)
    registry.create_registered_model("churn")
    registry.create_model_version("churn", f"runs:/{run_id}/model", run_id=run_id)
    registry.create_model_version("churn", "runs:/x/model")
    registry.set_registered_model_alias("churn", "champion", 2)

    with serve(create_app(store)) as url:
        page.goto(url + "/models")
        page.get_by_role("link", name="churn", exact=True).click()
        expect(page.get_by_role("table", name="Versions")).to_be_visible()
        page.get_by_role("link", name="v1", exact=True).click()
        expect(page).to_have_url(url + "/models/churn/versions/1")

        lineage = page.get_by_role("list", name="Lineage")
        expect(lineage.get_by_role("listitem", name="Run")).to_contain_text("forest-1")
        expect(lineage.get_by_role("listitem", name="Run")).to_contain_text("depth=4")
        expect(lineage.get_by_role("link", name="customers")).to_be_visible()
        expect(lineage.get_by_role("listitem", name="Code")).to_contain_text(COMMIT)
        copy = page.get_by_role("button", name="Copy keel serve models:/churn/1")
        expect(copy).to_have_attribute("data-copy", "keel serve models:/churn/1")

        # Moving an alias re-renders the page in place: no navigation, no reload.
        page.evaluate("window.keelNoReload = true")
        page.get_by_role("combobox", name="Set alias").fill("champion")
        page.get_by_role("button", name="to v1").click()
        expect(page.get_by_role("status")).to_contain_text("@champion now points at this version")
        aliases = page.get_by_label("Aliases of this version")
        expect(aliases).to_contain_text("@champion")
        assert page.evaluate("window.keelNoReload") is True
        assert registry.get_registered_model("churn").aliases == {"champion": 1}
        expect(
            page.get_by_role("button", name="Copy keel serve models:/churn@champion")
        ).to_be_visible()

        # (Refusals answer 4xx, which Chromium logs as a console error and the page
        # fixture counts as a failure; test_ui_registry covers their messages.)
        page.get_by_role("button", name="Remove alias champion").click()
        expect(page.get_by_role("status")).to_contain_text("@champion removed")
        expect(aliases).to_contain_text("No alias points at this version")
        assert page.evaluate("window.keelNoReload") is True
        assert registry.get_registered_model("churn").aliases == {}
