"""The runs table: columns, filter (with OR), sort, pages, hidden constants, CSV, live refresh."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from keel.entities import Metric, Param, RunStatus, RunTag
from keel.store import open_store
from keel.store.sql.store import SqlTrackingStore
from ui_support import fragment, ui_client

EVIL = "<script>alert(1)</script>"


@pytest.fixture
def store(tmp_path: Path) -> SqlTrackingStore:
    s = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "artifacts"))
    assert isinstance(s, SqlTrackingStore)
    return s


def _runs(store: SqlTrackingStore, n: int = 12) -> str:
    exp = store.create_experiment("sweep")
    for i in range(n):
        run = store.create_run(
            exp, user_id="ana", start_time=1_000 * i, tags=[], run_name=f"trial-{i:02d}"
        )
        store.log_batch(
            run.info.run_id,
            metrics=[
                Metric("acc", 0.5 + i / 100, 0, 0),
                Metric("acc", 0.4 + i / 100, 1, 1),
                Metric("loss", 1.0 - i / 20, 0, 0),
            ],
            params=[
                Param("lr", f"{0.01 * (i + 1):.2f}"),
                Param("model", "rf" if i % 2 else "gbm"),
                Param("seed", "7"),
            ],
            tags=[RunTag("team", "vision")],
        )
        if i != 11:
            store.update_run_info(run.info.run_id, RunStatus.FINISHED, 1_000 * i + 500, None)
    return exp


def _json(client, exp: str, **params: object) -> dict:  # type: ignore[no-untyped-def]
    response = client.get(f"/experiments/{exp}", params={**params, "format": "json"})
    assert response.status_code == 200, response.text
    return response.json()


def test_default_columns_come_from_every_run_not_the_page(store: SqlTrackingStore) -> None:
    exp = _runs(store)
    late = store.create_run(exp, user_id="ana", start_time=0, tags=[], run_name="oldest")
    store.log_batch(late.info.run_id, metrics=[], params=[Param("zeta", "1")], tags=[])
    with ui_client(store) as client:
        data = _json(client, exp, per=25)
        assert [c["id"] for c in data["columns"]] == [
            "metrics.acc",
            "metrics.loss",
            "params.lr",
            "params.model",
            "params.seed",
            "params.zeta",
        ]
        assert data["available"]["tags"] == ["mlflow.runName", "team"]
        assert data["total"] == 13 and not data["total_capped"]


def test_filter_with_or_and_parentheses_sort_and_name_search(store: SqlTrackingStore) -> None:
    exp = _runs(store)
    with ui_client(store) as client:
        data = _json(
            client,
            exp,
            q="params.model = 'rf' AND (metrics.loss < 0.5 OR params.lr = '0.01')",
            sort="metrics.loss",
            dir="asc",
        )
        assert [r["run_name"] for r in data["runs"]] == ["trial-11"]
        either = _json(
            client, exp, q="params.lr = '0.01' OR params.lr = '0.12'", sort="params.lr", dir="desc"
        )
        assert [r["run_name"] for r in either["runs"]] == ["trial-11", "trial-00"]
        named = _json(client, exp, name="ial-0", sort="run_name", dir="asc", per=25)
        assert [r["run_name"] for r in named["runs"]] == [f"trial-{i:02d}" for i in range(10)]


def test_count_of_a_filter_driven_from_a_metric_range(store: SqlTrackingStore) -> None:
    exp = _runs(store)
    other = store.create_experiment("other")
    for i in range(3):  # the same metric in another experiment must not be counted
        run = store.create_run(other, user_id="u", start_time=i, tags=[], run_name=f"o{i}")
        store.log_batch(run.info.run_id, metrics=[Metric("loss", 0.01, 0, 0)], params=[], tags=[])
    with ui_client(store) as client:
        for q, n in [
            ("metrics.loss < 0.5", 1),
            ("metrics.loss <= 0.5 AND params.model = 'gbm'", 1),
            ("metrics.loss > 0.6 AND params.model = 'rf'", 4),
            ("metrics.loss >= 0", 12),
            ("metrics.loss > 0.6 OR params.lr = '0.12'", 9),
        ]:
            assert _json(client, exp, q=q)["total"] == n, q
            count = fragment(client, f"/experiments/{exp}", q=q, part="count").text
            assert f">{n} run{'' if n == 1 else 's'} match<" in count, q


def test_bad_filter_is_explained_on_the_page(store: SqlTrackingStore) -> None:
    exp = _runs(store)
    with ui_client(store) as client:
        page = client.get(f"/experiments/{exp}", params={"q": "metrics.acc >"})
        assert page.status_code == 200
        assert 'id="filter-error"' in page.text and "metrics.acc" in page.text
        assert _json(client, exp, q="metrics.acc >")["runs"] == []


def test_chosen_columns_min_max_and_hidden_constants(store: SqlTrackingStore) -> None:
    exp = _runs(store)
    with ui_client(store) as client:
        cols = ["metrics.acc", "metrics.acc.max", "metrics.acc.min", "params.seed", "tags.team"]
        data = _json(client, exp, cols=cols, cols_set=1, sort="metrics.acc", dir="desc", per=25)
        top = data["runs"][0]
        assert top["run_name"] == "trial-11"
        assert top["values"]["metrics.acc"] == pytest.approx(0.51)  # latest, step 1
        assert top["values"]["metrics.acc.max"] == pytest.approx(0.61)
        assert top["values"]["metrics.acc.min"] == pytest.approx(0.51)
        assert [c["sortable"] for c in data["columns"]] == [True, False, False, True, True]
        hidden = _json(client, exp, cols=cols, cols_set=1, hide_constant=1)
        assert hidden["hidden_constant"] == ["params.seed", "tags.team"]
        assert [c["id"] for c in hidden["columns"]] == cols[:3]
        none = _json(client, exp, cols_set=1)
        assert none["columns"] == []


def test_pages_and_capped_count(store: SqlTrackingStore) -> None:
    exp = _runs(store)
    with ui_client(store) as client:
        first = _json(client, exp, per=25, sort="run_name", dir="asc")
        assert len(first["runs"]) == 12 and not first["has_next"]
        assert 'rel="next"' not in client.get(f"/experiments/{exp}", params={"per": 25}).text
    import keel.server.ui.pages_runs as pages

    cap = pages.COUNT_CAP
    pages.COUNT_CAP = 5
    try:
        with ui_client(store) as client:
            data = _json(client, exp, per=25)
            assert data["total"] == 5 and data["total_capped"]
            page = client.get(f"/experiments/{exp}").text
            assert "counting runs" in page and "part=count" in page  # rows never wait for it
            count = fragment(client, f"/experiments/{exp}", part="count")
            assert '<span id="count">5+ runs match</span>' in count.text
    finally:
        pages.COUNT_CAP = cap


def test_paging_links_carry_the_whole_view(store: SqlTrackingStore) -> None:
    exp = store.create_experiment("many")
    for i in range(30):
        store.create_run(exp, user_id="u", start_time=i, tags=[], run_name=f"r{i:02d}")
    with ui_client(store) as client:
        page = client.get(
            f"/experiments/{exp}", params={"per": 25, "q": "attributes.status = 'RUNNING'"}
        )
        assert 'rel="next"' in page.text
        assert (
            "page=2" in page.text and "per=25" in page.text and "q=attributes.status" in page.text
        )
        second = _json(client, exp, per=25, page=2, sort="run_name", dir="asc")
        assert [r["run_name"] for r in second["runs"]] == [f"r{i:02d}" for i in range(25, 30)]


def test_live_refresh_only_while_runs_are_active(store: SqlTrackingStore) -> None:
    exp = _runs(store)
    with ui_client(store) as client:
        active = client.get(f"/experiments/{exp}").text
        assert 'hx-trigger="every 5s"' in active
        done = client.get(
            f"/experiments/{exp}", params={"q": "attributes.status = 'FINISHED'"}
        ).text
        assert "every 5s" not in done
        part = fragment(client, f"/experiments/{exp}", part="table")
        assert part.text.count('id="runs-table"') == 1 and "runs-form" not in part.text


def test_csv_export_is_the_current_view(store: SqlTrackingStore) -> None:
    exp = _runs(store)
    run = store.search_runs([exp], "attributes.run_name = 'trial-03'").items[0]
    store.log_batch(
        run.info.run_id, metrics=[], params=[Param("formula", "=cmd|' /C calc'!A0")], tags=[]
    )
    with ui_client(store) as client:
        response = client.get(
            f"/experiments/{exp}/runs.csv",
            params={
                "q": "metrics.loss > 0.7",
                "sort": "metrics.loss",
                "dir": "asc",
                "cols": ["metrics.loss", "metrics.acc.max", "params.formula"],
                "cols_set": 1,
            },
        )
        assert response.headers["content-type"].startswith("text/csv")
        assert 'filename="sweep-runs.csv"' in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["run_name"] for r in rows] == [
            "trial-05",
            "trial-04",
            "trial-03",
            "trial-02",
            "trial-01",
            "trial-00",
        ]
        assert float(rows[0]["metrics.loss"]) == pytest.approx(0.75)
        assert float(rows[0]["metrics.acc.max"]) == pytest.approx(0.55)
        assert rows[2]["params.formula"] == "'=cmd|' /C calc'!A0"
        assert rows[0]["status"] == "FINISHED" and rows[0]["duration_s"] == "0.5"


def test_run_names_and_values_are_escaped(store: SqlTrackingStore) -> None:
    exp = store.create_experiment(EVIL)
    run = store.create_run(exp, user_id="u", start_time=1, tags=[], run_name=EVIL)
    store.log_batch(
        run.info.run_id, metrics=[], params=[Param("p", EVIL)], tags=[RunTag("t", EVIL)]
    )
    with ui_client(store) as client:
        for text in (
            client.get(
                f"/experiments/{exp}", params={"cols": ["params.p", "tags.t"], "cols_set": 1}
            ).text,
            fragment(client, f"/experiments/{exp}").text,
        ):
            assert EVIL not in text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_unknown_experiment_is_a_404_page(store: SqlTrackingStore) -> None:
    with ui_client(store) as client:
        missing = client.get("/experiments/424242")
        assert missing.status_code == 404
        assert "text/html" in missing.headers["content-type"] and "424242" in missing.text
        assert (
            client.get("/experiments/424242", params={"format": "json"}).json()["error"]["status"]
            == 404
        )


def test_new_keys_reach_the_column_chooser(
    store: SqlTrackingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import keel.server.ui.pages_runs as pages

    exp = _runs(store, n=2)
    monkeypatch.setattr(pages, "COLUMNS_TTL_S", 0.0)
    with ui_client(store) as client:
        assert "extra" not in _json(client, exp)["available"]["params"]
        run = store.search_runs([exp]).items[0]
        store.log_batch(run.info.run_id, metrics=[], params=[Param("extra", "1")], tags=[])
        deadline = time.monotonic() + 10
        while "extra" not in _json(client, exp)["available"]["params"]:
            assert time.monotonic() < deadline, "the stale key list was never refreshed"
            time.sleep(0.05)


def test_concurrent_first_requests_read_the_keys_once(
    store: SqlTrackingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import keel.store.sql.overview as overview
    from keel.server.ui.pages_runs import discovered_columns

    exp = _runs(store, n=3)
    calls: list[list[str]] = []
    real = overview.run_columns

    def counted(s: SqlTrackingStore, ids: list[str]) -> overview.RunColumns:
        calls.append(ids)
        threading.Event().wait(0.3)  # a slow read, as on 100,000 runs
        return real(s, ids)

    monkeypatch.setattr(overview, "run_columns", counted)
    answers: list[overview.RunColumns] = []
    threads = [
        threading.Thread(target=lambda: answers.append(discovered_columns(store, [exp])))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [[exp]]
    assert len(answers) == 4 and all(a.params == ("lr", "model", "seed") for a in answers)
