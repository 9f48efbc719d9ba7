"""The run page, its chart data endpoint and its artifact browser, over a live server and SQLite."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from keel.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from keel.server.ui import artifact_view
from keel.store import open_store
from keel.store.sql.metric_history import metric_points, ranked_points_for_tests
from keel.store.sql.registry import SqlRegistryStore
from keel.store.sql.store import SqlTrackingStore
from ui_support import fragment, ui_client

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def png_bytes() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture
def store(tmp_path: Path) -> SqlTrackingStore:
    opened = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "artifacts"))
    assert isinstance(opened, SqlTrackingStore)
    return opened


def make_run(store: SqlTrackingStore, name: str = "train", **tags: str) -> str:
    exp = store.get_experiment_by_name("churn")
    exp_id = exp.experiment_id if exp else store.create_experiment("churn")
    run = store.create_run(exp_id, "ana", 1_000_000, [RunTag(k, v) for k, v in tags.items()], name)
    return run.info.run_id


def artifact_dir(store: SqlTrackingStore, run_id: str) -> Path:
    root = Path(store.get_run(run_id).info.artifact_uri)
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_run_page_shows_everything_about_the_run(store: SqlTrackingStore) -> None:
    parent = make_run(store, "sweep")
    run_id = make_run(
        store,
        "trial-1",
        **{
            "mlflow.parentRunId": parent,
            "mlflow.source.name": "train.py",
            "mlflow.source.git.commit": "abc1234",
            "mlflow.note.content": "first <b>try</b>",
            "team": "risk",
        },
    )
    store.log_batch(
        run_id,
        metrics=[Metric("loss", v, 1_000_000 + i, i) for i, v in enumerate([0.9, 0.25, 0.5])],
        params=[Param("lr", "0.01"), Param("depth", "7")],
    )
    store.update_run_info(run_id, end_time=1_093_500)
    dataset = Dataset(
        "customers",
        "d1g35t",
        "local",
        "/data/c.parquet",
        '{"mlflow_colspec": [{"name": "a"}, {"name": "b"}]}',
        '{"num_rows": 1200, "num_elements": 2400}',
    )
    store.log_inputs(
        run_id, [DatasetInput(dataset, (InputTag("mlflow.data.context", "training"),))]
    )
    registry = SqlRegistryStore.from_tracking_store(store)
    registry.create_registered_model("churn model")
    registry.create_model_version("churn model", "runs:/x/model", run_id=run_id)
    exp_id = store.get_run(run_id).info.experiment_id

    with ui_client(store) as client:
        page = client.get(f"/runs/{run_id}")
        assert page.status_code == 200 and page.text.startswith("<!doctype html>")
        html = page.text
        assert "<title>trial-1 · Keel</title>" in html
        assert f'href="/experiments/{exp_id}"' in html
        assert f'href="/runs/{parent}"' in html and ">sweep</a>" in html
        assert "train.py" in html and "abc1234" in html and "1 min 34 s" in html
        assert "first &lt;b&gt;try&lt;/b&gt;" in html  # the note, escaped
        assert "<td>lr</td>" in html and "0.01" in html and "<td>depth</td>" in html
        # loss: latest 0.5 (highest step), min 0.25, max 0.9, 3 points
        row = html[html.index("<td>loss</td>") : html.index("</tr>", html.index("<td>loss</td>"))]
        assert [c.split("<")[0] for c in row.split('class="num">')[1:]] == [
            "0.5",
            "0.25",
            "0.9",
            "3",
        ]
        assert "<td>team</td>" in html
        assert html.index("mlflow.source.name") > html.index("<details>")  # system tags folded
        assert (
            f'href="/data/dataset?experiment_id={exp_id}&amp;name=customers&amp;digest=d1g35t"'
            in html
        )
        assert "training" in html and "num_rows=1,200" in html
        assert 'href="/models/churn%20model/versions/1"' in html

        child_page = client.get(f"/runs/{parent}").text
        assert f'href="/runs/{run_id}"' in child_page and ">trial-1</a>" in child_page

        twin = client.get(f"/runs/{run_id}", params={"format": "json"}).json()
        assert twin["run"]["run_name"] == "trial-1" and twin["run"]["duration_ms"] == 93_500
        assert twin["run"]["parent_run_id"] == parent and twin["run"]["git_commit"] == "abc1234"
        assert twin["params"] == [{"key": "depth", "value": "7"}, {"key": "lr", "value": "0.01"}]
        loss = twin["metrics"][0]
        assert (loss["key"], loss["latest"], loss["min"], loss["max"], loss["points"]) == (
            "loss",
            0.5,
            0.25,
            0.9,
            3,
        )
        assert [t["key"] for t in twin["tags"]] == ["team"]
        assert twin["datasets"][0]["columns"] == 2 and twin["datasets"][0]["context"] == "training"
        assert twin["models"][0]["href"] == "/models/churn%20model/versions/1"
        assert "artifacts" not in twin and "chart_sections" not in twin

        parent_twin = client.get(f"/runs/{parent}", params={"format": "json"}).json()
        assert [c["run_id"] for c in parent_twin["children"]] == [run_id]


def test_fragment_tabs_and_missing_run(store: SqlTrackingStore) -> None:
    run_id = make_run(store)
    store.log_batch(
        run_id, metrics=[Metric("train/loss", 1.0, 1, 0), Metric("val/loss", 2.0, 1, 0)]
    )
    with ui_client(store) as client:
        part = fragment(client, f"/runs/{run_id}", tab="charts", x="time", smooth="0.5", log="1")
        assert part.text.startswith("<title>train · Keel</title>") and "<header" not in part.text
        assert 'aria-current="page">Charts</a>' in part.text
        assert part.text.count("data-chart-src=") == 2
        assert "/charts/metric?run=" + run_id + "&amp;key=train%2Floss&amp;x=time" in part.text
        assert 'data-smooth="0.5"' in part.text and 'data-log="1"' in part.text
        assert "<h2>train</h2>" in part.text and "<h2>val</h2>" in part.text
        twin = client.get(f"/runs/{run_id}", params={"format": "json", "tab": "charts"}).json()
        assert twin["chart_options"] == {"x": "step", "smooth": 0.0, "log": False}
        assert [s["name"] for s in twin["chart_sections"]] == ["train", "val"]

        missing = client.get("/runs/0123456789abcdef0123456789abcdef")
        assert missing.status_code == 404
        assert client.get("/runs/nope", params={"format": "json"}).json()["error"]["status"] == 404


def test_user_text_is_escaped(store: SqlTrackingStore) -> None:
    run_id = make_run(store, EVIL, owner=EVIL)
    store.log_batch(run_id, params=[Param("p", EVIL)], metrics=[Metric("loss", 1.0, 1, 0)])
    (artifact_dir(store, run_id) / "x.txt").write_text(EVIL)
    with ui_client(store) as client:
        for tab in ("overview", "charts"):
            for text in (
                client.get(f"/runs/{run_id}", params={"tab": tab}).text,
                fragment(client, f"/runs/{run_id}", tab=tab).text,
            ):
                assert EVIL not in text and ESCAPED in text
        text = client.get(f"/runs/{run_id}", params={"tab": "artifacts", "path": "x.txt"}).text
        assert EVIL not in text and f'<pre class="artifact-text">{ESCAPED}</pre>' in text


# -- chart data ----------------------------------------------------------------


def chart(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get("/charts/metric", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()  # type: ignore[no-any-return]


def test_chart_endpoint_downsamples_keeping_ends_and_extremes(store: SqlTrackingStore) -> None:
    run_id = make_run(store)
    n = 20_000
    values = [math.sin(i / 300) for i in range(n)]
    values[7_777] = -50.0  # one spike each way, mid-bucket: downsampling must keep both
    values[12_345] = 80.0
    for start in range(0, n, 1000):
        batch = [
            Metric("loss", values[i], 1_000_000 + i * 10, i) for i in range(start, start + 1000)
        ]
        store.log_batch(run_id, metrics=batch)
    with ui_client(store) as client:
        body = chart(client, run=run_id, key="loss", points=500)
        (series,) = body["series"]
        assert body["key"] == "loss" and body["x"] == "step"
        assert series["total_points"] == n and series["run_name"] == "train"
        assert 100 < len(series["x"]) <= 500
        assert series["x"][0] == 0 and series["y"][0] == values[0]
        assert series["x"][-1] == n - 1 and series["y"][-1] == values[-1]
        assert series["x"] == sorted(series["x"])
        points = dict(zip(series["x"], series["y"], strict=True))
        assert points[7_777] == -50.0 and points[12_345] == 80.0
        assert min(series["y"]) == -50.0 and max(series["y"]) == 80.0
        assert all(values[x] == y for x, y in points.items())  # real points, not averages

        default = chart(client, run=run_id, key="loss")["series"][0]
        assert len(default["x"]) <= 2000
        capped = chart(client, run=run_id, key="loss", points=10**9)["series"][0]
        assert 2000 < len(capped["x"]) <= 10_000

        times = chart(client, run=run_id, key="loss", x="time", points=500)["series"][0]
        assert times["x"][0] == 1_000_000 and times["x"][-1] == 1_000_000 + (n - 1) * 10
        relative = chart(client, run=run_id, key="loss", x="relative", points=500)["series"][0]
        assert relative["x"][0] == 0.0 and relative["x"][-1] == pytest.approx((n - 1) / 100)

    # The portable windowed query (PostgreSQL's path) keeps the same extremes.
    ranked = ranked_points_for_tests(store, run_id, "loss", 500)
    assert (7_777, 1_000_000 + 77_770, -50.0) in ranked and (12_345, 1_123_450, 80.0) in ranked
    assert len(ranked) <= 500


def test_chart_nan_inf_multi_run_and_errors(store: SqlTrackingStore) -> None:
    a = make_run(store, "a")
    b = make_run(store, "b")
    store.log_batch(
        a,
        metrics=[
            Metric("loss", 1.0, 1_000_000, 0),
            Metric("loss", float("nan"), 1_000_001, 1),
            Metric("loss", float("inf"), 1_000_002, 2),
            Metric("loss", 0.5, 1_000_003, 3),
        ],
    )
    store.log_batch(
        b, metrics=[Metric("loss", 3.0, 1_000_000, 0), Metric("loss", 2.0, 1_000_005, 5)]
    )
    with ui_client(store) as client:
        body = chart(client, run=[a, b, "f" * 32], key="loss")
        assert [s["run_name"] for s in body["series"]] == ["a", "b"]
        assert body["series"][0]["y"] == [1.0, None, None, 0.5]
        assert body["series"][1]["x"] == [0, 5] and body["series"][1]["y"] == [3.0, 2.0]
        assert chart(client, run=a, key="nope")["series"][0]["x"] == []

        for params, status in [
            ({"key": "loss"}, 400),
            ({"run": a}, 400),
            ({"run": a, "key": "loss", "x": "wall"}, 400),
            ({"run": a, "key": "loss", "points": "many"}, 400),
            ({"run": [f"{i:032x}" for i in range(101)], "key": "loss"}, 400),
            ({"run": "f" * 32, "key": "loss"}, 404),
        ]:
            response = client.get("/charts/metric", params=params)
            assert response.status_code == status, params
            assert response.json()["error"]["status"] == status


def test_downsampled_nan_buckets_leave_gaps(store: SqlTrackingStore) -> None:
    run_id = make_run(store)
    points = [Metric("m", float("nan") if 400 <= i < 600 else float(i), i, i) for i in range(1000)]
    store.log_batch(run_id, metrics=points)
    series = metric_points(store, run_id, "m", max_points=100)
    assert series.total_points == 1000 and len(series.points) <= 100
    gaps = [p for p in series.points if p[2] is None]
    assert gaps and all(400 <= p[0] < 600 for p in gaps)
    assert max(p[2] for p in series.points if p[2] is not None) == 999.0


def test_points_all_at_one_step_fall_back_to_time_buckets(store: SqlTrackingStore) -> None:
    run_id = make_run(store)
    store.log_batch(run_id, metrics=[Metric("m", float(i % 50), 1000 + i, 0) for i in range(1000)])
    series = metric_points(store, run_id, "m", max_points=100, by_time=True)
    assert series.total_points == 1000 and len(series.points) <= 100
    values = [p[2] for p in series.points]
    assert min(v for v in values if v is not None) == 0.0 and max(values) == 49.0  # type: ignore[type-var]
    assert series.points[0][1] == 1000 and series.points[-1][1] == 1999


# -- artifacts -----------------------------------------------------------------


@pytest.fixture
def artifact_run(store: SqlTrackingStore) -> str:
    run_id = make_run(store)
    root = artifact_dir(store, run_id)
    (root / "plots").mkdir()
    (root / "plots" / "loss.png").write_bytes(png_bytes())
    (root / "plots" / "pic.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    (root / "model").mkdir()
    (root / "model" / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (root / "eval.csv").write_text("label,score\n" + "".join(f"{i},{i / 10}\n" for i in range(300)))
    (root / "notes.csv").write_text("just one column\nof text\n")
    (root / "report.html").write_text(f"<h1>report</h1>{EVIL}")
    (root / "weights.bin").write_bytes(b"\x00\x01\x02")
    return run_id


def test_artifact_listing_and_previews(store: SqlTrackingStore, artifact_run: str) -> None:
    run_id = artifact_run
    base = f"/runs/{run_id}"
    with ui_client(store) as client:
        twin = client.get(base, params={"tab": "artifacts", "format": "json"}).json()["artifacts"]
        names = [(e["name"], e["is_dir"], e["kind"]) for e in twin["entries"]]
        assert names[:2] == [("model", True, "folder"), ("plots", True, "folder")]
        assert ("eval.csv", False, "table") in names and twin["preview"] is None
        page = client.get(base, params={"tab": "artifacts"}).text
        assert 'href="/runs/' + run_id + '?tab=artifacts&amp;path=plots"' in page

        folder = client.get(base, params={"tab": "artifacts", "path": "plots", "format": "json"})
        assert [e["path"] for e in folder.json()["artifacts"]["entries"]] == [
            "plots/loss.png",
            "plots/pic.svg",
        ]

        image = client.get(base, params={"tab": "artifacts", "path": "plots/loss.png"}).text
        raw = f"/runs/{run_id}/artifacts/raw?path=plots%2Floss.png"
        assert f'<img class="artifact" src="{raw}"' in image
        got = client.get(raw)
        assert got.content == png_bytes() and got.headers["content-type"] == "image/png"
        assert "content-disposition" not in got.headers
        assert got.headers["x-content-type-options"] == "nosniff"
        svg = client.get(f"/runs/{run_id}/artifacts/raw", params={"path": "plots/pic.svg"})
        assert svg.headers["content-security-policy"] == "sandbox"
        assert svg.headers["content-type"] == "image/svg+xml"

        text = client.get(base, params={"tab": "artifacts", "path": "model/MLmodel"}).text
        assert "python_function: {}" in text and '<pre class="artifact-text">' in text

        table = client.get(
            base, params={"tab": "artifacts", "path": "eval.csv", "format": "json"}
        ).json()["artifacts"]["preview"]
        assert table["kind"] == "table" and table["header"] == ["label", "score"]
        assert len(table["rows"]) == 200 and table["rows"][0] == ["0", "0.0"] and table["truncated"]
        shown = client.get(base, params={"tab": "artifacts", "path": "eval.csv"}).text
        assert "<th>score</th>" in shown and "<td>199</td>" in shown and "<td>200</td>" not in shown
        one_column = client.get(
            base, params={"tab": "artifacts", "path": "notes.csv", "format": "json"}
        ).json()["artifacts"]["preview"]
        assert one_column["kind"] == "text" and "of text" in one_column["text"]

        report = client.get(base, params={"tab": "artifacts", "path": "report.html"}).text
        html_raw = f"/runs/{run_id}/artifacts/raw?path=report.html"
        assert f'<iframe class="artifact" sandbox="" src="{html_raw}"' in report
        served = client.get(html_raw)
        assert served.headers["content-security-policy"] == "sandbox"
        assert served.headers["content-type"].startswith("text/html")
        assert "content-disposition" not in served.headers and EVIL in served.text

        binary = client.get(
            base, params={"tab": "artifacts", "path": "weights.bin", "format": "json"}
        ).json()["artifacts"]["preview"]
        assert binary["kind"] == "download" and binary["size"] == 3
        download = client.get(f"/runs/{run_id}/artifacts/raw", params={"path": "weights.bin"})
        assert download.headers["content-disposition"] == "attachment; filename=weights.bin"
        assert download.content == b"\x00\x01\x02"

        assert client.get(base, params={"tab": "artifacts", "path": "nope.txt"}).status_code == 404
        missing = client.get(f"/runs/{run_id}/artifacts/raw", params={"path": "nope.txt"})
        assert missing.status_code == 404


def test_size_caps(store: SqlTrackingStore, tmp_path: Path) -> None:
    run_id = make_run(store)
    root = artifact_dir(store, run_id)
    # Sparse files: the sizes are real, the disk blocks are not.
    with (root / "huge.log").open("wb") as fh:
        fh.truncate(11 * artifact_view.MB)
    with (root / "huge.png").open("wb") as fh:
        fh.truncate(artifact_view.DEFAULT_LIMITS.max_preview + 1)
    (root / "long.txt").write_text("x" * (artifact_view.MB + 10))
    base = f"/runs/{run_id}"
    with ui_client(store) as client:

        def shown(path: str) -> dict[str, Any]:
            params = {"tab": "artifacts", "path": path, "format": "json"}
            return client.get(base, params=params).json()["artifacts"]["preview"]  # type: ignore[no-any-return]

        assert shown("huge.log")["kind"] == "download"
        assert shown("huge.log")["reason"] == "too large to preview"
        assert shown("huge.png")["kind"] == "download"
        page = client.get(base, params={"tab": "artifacts", "path": "huge.png"}).text
        assert "<img" not in page and "Too large to preview (50.0 MB)" in page
        long = shown("long.txt")
        assert long["truncated"] and len(long["text"]) == artifact_view.MB

    # Smaller caps, real files just above and below them.
    artifacts = artifact_view.RunArtifacts(artifact_view._storage(str(root)), "")
    small = artifact_view.Limits(max_preview=100, max_text_file=50, text_bytes=10, table_bytes=20)
    (root / "a.txt").write_text("y" * 51)
    (root / "b.txt").write_text("z" * 30)
    (root / "c.csv").write_text("a,b\n1,2\n3,4\n5,6\n7,8\n9,10\n")
    assert artifact_view.preview(artifacts, "a.txt", 51, small)["kind"] == "download"
    assert artifact_view.preview(artifacts, "b.txt", 30, small)["text"] == "z" * 10
    table = artifact_view.preview(artifacts, "c.csv", 26, small)
    assert table["rows"] == [["1", "2"], ["3", "4"], ["5", "6"], ["7", "8"]] and table["truncated"]
    assert artifact_view.preview(artifacts, "c.csv", 101, small)["kind"] == "download"


@pytest.mark.parametrize(
    "path",
    [
        "../../ui.db",
        "%2e%2e/%2e%2e/ui.db",
        "plots/../../x",
        "/etc/passwd",
        "plots\\..\\..\\x",
        "a\x00b",
        "..;/x",
        "file:///etc/passwd",
    ],
)
def test_path_traversal_is_refused(store: SqlTrackingStore, artifact_run: str, path: str) -> None:
    with ui_client(store) as client:
        raw = client.get(f"/runs/{artifact_run}/artifacts/raw", params={"path": path})
        assert raw.status_code == 400, raw.text
        page = client.get(f"/runs/{artifact_run}", params={"tab": "artifacts", "path": path})
        assert page.status_code == 400


def test_symlink_out_of_the_run_is_refused(store: SqlTrackingStore, tmp_path: Path) -> None:
    run_id = make_run(store)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (artifact_dir(store, run_id) / "link.txt").symlink_to(secret)
    with ui_client(store) as client:
        raw = client.get(f"/runs/{run_id}/artifacts/raw", params={"path": "link.txt"})
        assert raw.status_code == 400 and "top secret" not in raw.text
        listing = client.get(f"/runs/{run_id}", params={"tab": "artifacts", "format": "json"})
        assert listing.json()["artifacts"]["entries"] == []


def test_proxied_artifacts_resolve_under_the_destination(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ui.db'}", "mlflow-artifacts:/")
    exp_id = store.create_experiment("proxied")
    run = store.create_run(exp_id, "me", 1, [], "r")
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    destination = tmp_path / "dest"
    rel = run.info.artifact_uri.split(":", 1)[1].lstrip("/")
    (destination / rel).mkdir(parents=True)
    (destination / rel / "hello.txt").write_text("hi there")
    with ui_client(store, artifacts_destination=str(destination)) as client:
        twin = client.get(
            f"/runs/{run.info.run_id}",
            params={"tab": "artifacts", "path": "hello.txt", "format": "json"},
        ).json()
        assert twin["artifacts"]["preview"]["text"] == "hi there"
    with ui_client(store) as client:
        page = client.get(f"/runs/{run.info.run_id}", params={"tab": "artifacts"})
        assert page.status_code == 200 and "--artifacts-destination" in page.text
