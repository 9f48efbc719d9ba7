"""The compare page: differing rows, best values, chart markup, server-rendered SVG, escaping."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from keel.entities import Metric, Param
from keel.server.ui import svg_charts
from keel.store import open_store
from keel.store.base import TrackingStore
from ui_support import fragment, ui_client

EVIL = "<script>alert(1)</script>"
EVIL_VALUE = '<img src=x onerror="alert(2)">'
ODD_KEY = "val loss/top 1"
SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class Compared:
    store: TrackingStore
    a: str
    b: str
    c: str
    experiments: tuple[str, str]

    @property
    def ids(self) -> list[str]:
        return [self.a, self.b, self.c]


def _run(
    store: TrackingStore,
    experiment: str,
    name: str,
    params: dict[str, str],
    metrics: dict[str, list[float]],
) -> str:
    run_id = store.create_run(experiment, "ann", 1_700_000_000_000, [], name).info.run_id
    points = [
        Metric(key, value, 1_700_000_000_000 + step, step)
        for key, values in metrics.items()
        for step, value in enumerate(values)
    ]
    store.log_batch(run_id, metrics=points, params=[Param(k, v) for k, v in params.items()])
    return str(run_id)


@pytest.fixture
def compared(tmp_path: Path) -> Compared:
    store = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "artifacts"))
    vision, text = store.create_experiment("vision"), store.create_experiment("text")
    same = {"seed": "42", "epochs": "10"}
    a = _run(
        store,
        vision,
        "alpha",
        {**same, "lr": "0.1", "optimizer": "sgd", "batch": "32", "l2": "0.00001"},
        {"loss": [0.9, 0.5], "accuracy": [0.95], ODD_KEY: [0.2], "const": [1.0]},
    )
    b = _run(
        store,
        vision,
        "beta",
        {**same, "lr": "0.01", "optimizer": "adam", "batch": "32", "l2": "0.001"},
        {"loss": [0.8, 0.3, 0.4], "accuracy": [0.9], "const": [1.0]},
    )
    c = _run(
        store,
        text,
        "gamma",
        {**same, "lr": "0.001", "optimizer": "sgd", "l2": "0.1"},
        {"loss": [0.7, 0.6], "accuracy": [0.85], ODD_KEY: [0.3], "const": [1.0]},
    )
    return Compared(store, a, b, c, (vision, text))


@pytest.fixture
def client(compared: Compared) -> Iterator[httpx.Client]:
    with ui_client(compared.store) as c:
        yield c


# -- a small HTML reader: tables by aria-label, SVG by class ---------------------------


@dataclass
class Cell:
    tag: str
    attrs: dict[str, str]
    text: str = ""


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[dict[str, str], list[Cell]]]] = {}
        self._table: str | None = None
        self._cell: Cell | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table":
            self._table = a.get("aria-label", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append((a, []))
        elif tag in ("td", "th") and self._table is not None:
            self._cell = Cell(tag, a)
            self.tables[self._table][-1][1].append(self._cell)
        elif self._cell is not None and tag == "strong":
            self._cell.attrs["strong"] = "1"

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.text += data


def tables(page: str) -> dict[str, list[tuple[dict[str, str], list[Cell]]]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def body_rows(page: str, label: str) -> dict[str, list[Cell]]:
    """``{row key: value cells}`` of a table's body rows."""
    rows = tables(page)[label]
    return {attrs["data-key"]: cells[1:] for attrs, cells in rows if "data-key" in attrs}


def svg(page: str, kind: str) -> ET.Element:
    match = re.search(rf'<svg [^>]*class="compare-svg {kind}".*?</svg>', page, re.S)
    assert match, f"no {kind} SVG on the page"
    return ET.fromstring(match.group(0))  # well-formed XML, or this raises


def circles(page: str) -> dict[str, tuple[float, float]]:
    return {
        c.get("data-run", ""): (float(c.get("cx", "nan")), float(c.get("cy", "nan")))
        for c in svg(page, "scatter").iter(f"{SVG}circle")
    }


def texts(chart: ET.Element) -> set[str]:
    """What each SVG <text> shows (its own text, after any <title> tooltip)."""
    out = set()
    for t in chart.iter(f"{SVG}text"):
        title = t.find(f"{SVG}title")
        out.add((t.text or "") + (title.tail or "" if title is not None else ""))
    return out


def compare(client: httpx.Client, ids: list[str], **params: Any) -> httpx.Response:
    response = client.get("/compare", params={"runs": ids, **params})
    assert response.status_code == 200, response.text
    return response


# -- tables ------------------------------------------------------------------------


def test_header_lists_runs_with_their_experiments(client: httpx.Client, compared: Compared) -> None:
    page = compare(client, compared.ids).text
    rows = tables(page)["Compared runs"][1:]
    assert [cells[0].text for _, cells in rows] == ["alpha", "beta", "gamma"]
    assert [cells[1].text for _, cells in rows] == ["vision", "vision", "text"]
    assert f'href="/runs/{compared.b}"' in page
    assert f'href="/experiments/{compared.experiments[1]}"' in page
    assert [cells[2].text for _, cells in rows] == ["running"] * 3


def test_params_show_only_differences_until_asked(client: httpx.Client, compared: Compared) -> None:
    page = compare(client, compared.ids).text
    rows = body_rows(page, "Params")
    assert list(rows) == ["batch", "l2", "lr", "optimizer"]  # missing batch counts as different
    assert [c.text for c in rows["lr"]] == ["0.1", "0.01", "0.001"]
    assert [c.text for c in rows["batch"]] == ["32", "32", "–"]
    assert "2 identical params hidden" in page
    toggle = re.search(r'href="([^"]*all=1[^"]*)"', page)
    assert toggle, "no link to show every param"
    assert parse_qs(urlsplit(html.unescape(toggle.group(1))).query)["runs"] == compared.ids

    everything = compare(client, compared.ids, all=1).text
    all_rows = tables(everything)["Params"]
    keys = [attrs["data-key"] for attrs, _ in all_rows if "data-key" in attrs]
    assert keys == ["batch", "epochs", "l2", "lr", "optimizer", "seed"]
    assert "identical params hidden" not in everything
    assert "Show only differences" in everything
    differs = {a["data-key"] for a, _ in all_rows if "differs" in a.get("class", "")}
    assert differs == {"batch", "l2", "lr", "optimizer"}


def _best(row: list[Cell], ids: list[str]) -> list[str]:
    return [
        run for run, cell in zip(ids, row, strict=True) if "best" in cell.attrs.get("class", "")
    ]


@pytest.mark.parametrize(
    ("value", "best_loss"),
    [("latest", "b"), ("min", "b"), ("max", "c")],
)
def test_best_metric_respects_direction(
    client: httpx.Client, compared: Compared, value: str, best_loss: str
) -> None:
    page = compare(client, compared.ids, value=value).text
    rows = body_rows(page, "Metrics")
    assert "const" not in rows  # the same in every run: hidden
    assert _best(rows["loss"], compared.ids) == [getattr(compared, best_loss)]
    assert _best(rows["accuracy"], compared.ids) == [compared.a]  # higher is better
    assert all(c.attrs.get("strong") for c in rows["loss"] if "best" in c.attrs.get("class", ""))
    heads = {
        attrs["data-key"]: cells[0].attrs["title"]
        for attrs, cells in tables(page)["Metrics"]
        if "data-key" in attrs
    }
    assert heads["loss"].startswith("Lower is better")
    assert heads["accuracy"].startswith("Higher is better")
    if value == "min":
        assert [c.text for c in rows["loss"]] == ["0.5", "0.3", "0.6"]
    if value == "latest":
        assert [c.text for c in rows["loss"]] == ["0.5", "0.4", "0.6"]
    assert "1 identical metric hidden" in page


# -- charts --------------------------------------------------------------------------


def _chart_sources(page: str) -> list[dict[str, list[str]]]:
    sources = re.findall(r'data-chart-src="([^"]*)"', page)
    out = []
    for src in sources:
        parts = urlsplit(html.unescape(src))
        assert parts.path == "/charts/metric"
        out.append(parse_qs(parts.query))
    return out


def test_chart_markup_encodes_runs_and_odd_keys(client: httpx.Client, compared: Compared) -> None:
    charts = _chart_sources(compare(client, compared.ids).text)
    assert [c["key"] for c in charts] == [["accuracy"], ["const"], ["loss"], [ODD_KEY]]
    by_key = {c["key"][0]: c for c in charts}
    assert by_key[ODD_KEY]["run"] == [compared.a, compared.c]  # beta never logged it
    assert by_key["loss"]["run"] == compared.ids
    assert all(c["x"] == ["step"] for c in charts)

    chosen = _chart_sources(compare(client, compared.ids, chart=[ODD_KEY, "nope"]).text)
    assert [c["key"] for c in chosen] == [[ODD_KEY]]


# -- scatter ---------------------------------------------------------------------------


def test_scatter_places_one_point_per_run(client: httpx.Client, compared: Compared) -> None:
    page = compare(client, compared.ids, sx="params.lr", sy="metrics.loss").text
    points = circles(page)
    assert set(points) == set(compared.ids)
    (xa, ya), (xb, yb), (xc, yc) = (points[i] for i in compared.ids)
    # lr 0.1, 0.01, 0.001 span two decades: a linear axis.
    assert (xa - xc) / (xb - xc) == pytest.approx((0.1 - 0.001) / (0.01 - 0.001), rel=0.02)
    # loss 0.5, 0.4, 0.6; SVG y grows downwards.
    assert yc < ya < yb and (yb - ya) == pytest.approx(ya - yc, abs=0.2)
    titles = [t.text or "" for t in svg(page, "scatter").iter(f"{SVG}title")]
    assert any(t.startswith("beta\n") and "params.lr = 0.01" in t for t in titles)
    links = [a.get("href", "") for a in svg(page, "scatter").iter(f"{SVG}a")]
    assert sorted(links) == sorted(f"/runs/{i}" for i in compared.ids)


def test_scatter_defaults_and_log_axis(client: httpx.Client, compared: Compared) -> None:
    twin = compare(client, compared.ids, format="json").json()["scatter"]
    # The first differing numeric param (batch: gamma has none) against the first metric.
    assert (twin["sx"], twin["sy"]) == ("params.batch", "metrics.accuracy")
    assert twin["left_out"] == ["gamma"] and len(twin["points"]) == 2

    page = compare(client, compared.ids, sx="params.l2", sy="metrics.accuracy").text
    assert "params.l2 (log scale)" in page
    xs = sorted(x for x, _ in circles(page).values())
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.2)  # 1e-5, 1e-3, 1e-1


def test_categorical_scatter_axis(client: httpx.Client, compared: Compared) -> None:
    page = compare(client, compared.ids, sx="params.optimizer", sy="metrics.accuracy").text
    points = circles(page)
    assert points[compared.a][0] == points[compared.c][0] != points[compared.b][0]  # sgd, sgd, adam
    labels = texts(svg(page, "scatter"))
    assert {"adam", "sgd"} <= labels
    twin = compare(client, compared.ids, sx="params.optimizer", format="json").json()
    assert twin["scatter"]["x"]["kind"] == "categorical"
    assert twin["scatter"]["x"]["categories"] == ["adam", "sgd"]


# -- parallel coordinates ------------------------------------------------------------------


def test_parallel_coordinates_axes_and_lines(client: httpx.Client, compared: Compared) -> None:
    page = compare(client, compared.ids).text
    chart = svg(page, "parallel")
    axes = [g.get("data-axis") for g in chart.iter(f"{SVG}g") if g.get("data-axis")]
    assert axes == [
        "params.batch",
        "params.l2 (log scale)",
        "params.lr",
        "params.optimizer",
        "metrics.accuracy",
    ]
    lines = {p.get("data-run"): p for p in chart.iter(f"{SVG}polyline")}
    assert set(lines) == set(compared.ids)
    assert all(len((p.get("points") or "").split()) == 5 for p in lines.values())
    # Coloured by accuracy: alpha is best, gamma worst.
    assert lines[compared.a].get("stroke") == svg_charts.colour(1.0)
    assert lines[compared.c].get("stroke") == svg_charts.colour(0.0)
    # Gamma logged no batch: it sits on the axis's "(missing)" slot, at the bottom.
    bottom = max(
        float(pt.split(",")[1]) for p in lines.values() for pt in p.get("points", "").split()
    )
    gamma_batch_y = float((lines[compared.c].get("points") or "").split()[0].split(",")[1])
    assert gamma_batch_y == bottom
    assert "(missing)" in texts(chart)

    chosen = svg(compare(client, compared.ids, pc="metrics.loss").text, "parallel")
    labels = [g.get("data-axis") for g in chosen.iter(f"{SVG}g") if g.get("data-axis")]
    assert labels[-1] == "metrics.loss"


def test_parallel_coordinates_cap_their_axes(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "artifacts"))
    params = [{f"p{i:02d}": str(i + r) for i in range(14)} for r in range(2)]
    ids = [_run(store, "0", f"r{r}", params[r], {"acc": [0.5 + r / 10]}) for r in range(2)]
    with ui_client(store) as client:
        page = compare(client, ids).text
        twin = compare(client, ids, format="json").json()["parallel"]
    chart = svg(page, "parallel")
    assert len([g for g in chart.iter(f"{SVG}g") if g.get("data-axis")]) == 12
    assert twin["left_out"] == ["params.p11", "params.p12", "params.p13"]
    assert [a["name"] for a in twin["axes"]][-1] == "metrics.acc"
    assert "left out: params.p11, params.p12, params.p13" in page


# -- edges -------------------------------------------------------------------------------


def test_unknown_runs_are_reported(client: httpx.Client, compared: Compared) -> None:
    page = compare(client, [compared.a, "does-not-exist", compared.b]).text
    assert "does-not-exist" in page and "do not exist" not in page
    assert "does not exist" in page
    assert len(tables(page)["Compared runs"]) == 3
    twin = compare(client, [compared.a, "does-not-exist", compared.b], format="json").json()
    assert twin["unknown"] == ["does-not-exist"]
    assert [r["run_id"] for r in twin["runs"]] == [compared.a, compared.b]


def test_more_than_a_hundred_runs_are_refused(client: httpx.Client) -> None:
    ids = [f"{i:032x}" for i in range(101)]
    page = compare(client, ids).text
    assert "at most 100" in page and "You picked 101 runs" in page
    twin = compare(client, ids, format="json").json()
    assert twin["runs"] == [] and "at most 100" in twin["refused"]
    assert "at most 100" not in compare(client, ids[:100], format="json").text


def test_empty_and_single_run_states(client: httpx.Client, compared: Compared) -> None:
    empty = client.get("/compare").text
    assert "Pick two or more runs in the runs table" in empty
    assert 'aria-label="Params"' not in empty
    one = compare(client, [compared.a]).text
    assert "Only one run to compare" in one and "Pick two or more runs" in one
    assert len(tables(one)["Compared runs"]) == 2 and 'aria-label="Params"' not in one


def test_user_text_is_escaped_everywhere(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "artifacts"))
    ids = [
        _run(store, "0", EVIL, {"note": EVIL_VALUE, "lr": "0.1"}, {"acc": [0.5]}),
        _run(store, "0", "plain", {"note": "fine", "lr": "0.2"}, {"acc": [0.7]}),
    ]
    with ui_client(store) as client:
        for url_params in ({}, {"sx": "params.note", "sy": "metrics.acc"}):
            page = compare(client, ids, **url_params).text
            part = fragment(client, "/compare", runs=ids, **url_params).text
            for text in (page, part):
                assert EVIL not in text and "<img" not in text
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
            # Parsed as XML, the SVG gives back the names as text: they were escaped.
            for kind in ("scatter", "parallel"):
                titles = [t.text or "" for t in svg(page, kind).iter(f"{SVG}title")]
                assert any(t.startswith(EVIL) for t in titles), kind
            scatter_texts = [t.text or "" for t in svg(page, "scatter").iter(f"{SVG}title")]
            if url_params:
                assert any(EVIL_VALUE in t for t in scatter_texts)
        twin = compare(client, ids, format="json").json()
        assert twin["runs"][0]["run_name"] == EVIL
        assert twin["params"]["rows"][1]["values"][ids[0]] == EVIL_VALUE


def test_json_twin_is_what_the_page_shows(client: httpx.Client, compared: Compared) -> None:
    params = {"sx": "params.lr", "sy": "metrics.loss"}
    twin = compare(client, compared.ids, format="json", **params).json()
    page = compare(client, compared.ids, **params).text
    assert [r["run_id"] for r in twin["runs"]] == compared.ids
    assert [r["experiment_name"] for r in twin["runs"]] == ["vision", "vision", "text"]
    p_rows = {r["key"]: r for r in twin["params"]["rows"]}
    assert set(p_rows) == {"batch", "epochs", "l2", "lr", "optimizer", "seed"}
    assert [k for k, r in p_rows.items() if r["differs"]] == list(body_rows(page, "Params"))
    assert (twin["params"]["differing"], twin["params"]["identical"]) == (4, 2)
    assert p_rows["batch"]["values"][compared.c] is None
    m_rows = {r["key"]: r for r in twin["metrics"]["rows"]}
    assert [k for k, r in m_rows.items() if r["differs"]] == list(body_rows(page, "Metrics"))
    assert m_rows["loss"]["min"][compared.b] == 0.3 and m_rows["loss"]["best"] == [compared.b]
    assert m_rows["loss"]["lower_is_better"] and not m_rows["accuracy"]["lower_is_better"]
    assert m_rows["const"]["differs"] is False
    points = {p["run_id"]: p for p in twin["scatter"]["points"]}
    assert set(points) == set(circles(page))
    assert points[compared.a]["x"] == "0.1" and points[compared.a]["y"] == 0.5
    assert twin["scatter"]["x"]["kind"] == "numeric" and not twin["scatter"]["x"]["log"]
    assert [p["run_id"] for p in twin["parallel"]["lines"]] == compared.ids
    assert [a["name"] for a in twin["parallel"]["axes"]][-1] == "metrics.accuracy"
    assert [c["key"] for c in twin["charts"]["shown"]] == [
        c["key"][0] for c in _chart_sources(page)
    ]
    assert fragment(client, "/compare", runs=compared.ids).text.startswith(
        "<title>Compare 3 runs · Keel</title>"
    )
