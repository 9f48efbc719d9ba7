"""Self-contained HTML pages for profiles and drift reports: inline CSS and SVG, no scripts.

Every piece of user text (column names, category values, file names) goes
through :func:`html.escape`; the pages load nothing from the network, so they
can be mailed, attached to a run, or opened offline.

>>> import pandas as pd
>>> from keel.data.profiles import profile
>>> "<svg" in profile_page(profile(pd.DataFrame({"x": [1.0, 2.0, 2.5]})))
True
>>> esc("<script>")
'&lt;script&gt;'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keel.formatting import esc, number

_STATUS_CLASS = {"failed": "bad", "passed": "ok", "skipped": "muted"}

if TYPE_CHECKING:
    from keel.data.drift_report import ColumnDrift, DriftReport
    from keel.data.profiles import ColumnProfile, Profile

REFERENCE_COLOUR = "#4c78a8"
CURRENT_COLOUR = "#f58518"
WIDTH, HEIGHT = 320, 110

STYLE = """
:root { color-scheme: light dark; --fg: #1d2330; --muted: #5d6778; --bg: #ffffff;
  --line: #d8dde6; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --card: #f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ef; --muted: #9aa4b5; --bg: #0f1218;
  --line: #2b313c; --ok: #3fb950; --bad: #f85149; --warn: #d29922; --card: #161b22; } }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  background: var(--bg); margin: 2rem auto; max-width: 1180px; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; } h2 { font-size: 1.1rem; margin: 2rem 0 .5rem; }
.muted { color: var(--muted); } .verdict { font-size: 1.15rem; font-weight: 600; margin: 1rem 0; }
.bad { color: var(--bad); } .ok { color: var(--ok); } .warn { color: var(--warn); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-weight: 600; color: var(--muted); } td.num { text-align: right;
  font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 999px; font-size: .8rem;
  font-weight: 600; border: 1px solid currentColor; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 1rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: .75rem; } .card h3 { font-size: 1rem; margin: 0 0 .25rem; word-break: break-all; }
.legend span { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px;
  margin: 0 .25rem -.1rem .75rem; }
svg text { fill: var(--muted); font-size: 10px; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; max-width: 24rem; }
td.msg { max-width: 32rem; }
"""


def page(title: str, body: str) -> str:
    """A complete HTML document around ``body`` (already escaped markup)."""
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def legend() -> str:
    return (
        f"<p class='legend muted'><span style='background:{REFERENCE_COLOUR}'></span>reference"
        f"<span style='background:{CURRENT_COLOUR}'></span>current</p>"
    )


def histogram_svg(edges: Sequence[float], series: Sequence[tuple[Sequence[float], str]]) -> str:
    """Overlaid step outlines (one per series) of shares over shared bins."""
    top = max((max(s) for s, _ in series if len(s)), default=0.0) or 1.0
    bins = len(edges) - 1
    paths = []
    for shares, colour in series:
        points = []
        for i, share in enumerate(shares):
            y = HEIGHT - 14 - (HEIGHT - 20) * share / top
            x0, x1 = WIDTH * i / bins, WIDTH * (i + 1) / bins
            points.append(f"{x0:.1f},{y:.1f} {x1:.1f},{y:.1f}")
        base = HEIGHT - 14
        paths.append(
            f"<polyline points='0,{base} {' '.join(points)} {WIDTH},{base}' fill='{colour}' "
            f"fill-opacity='0.25' stroke='{colour}' stroke-width='1.5'/>"
        )
    axis = (
        f"<text x='0' y='{HEIGHT - 2}'>{esc(number(edges[0]))}</text>"
        f"<text x='{WIDTH}' y='{HEIGHT - 2}' text-anchor='end'>{esc(number(edges[-1]))}</text>"
    )
    return _svg("".join(paths) + axis)


def bars_svg(labels: Sequence[str], series: Sequence[tuple[Sequence[float], str]]) -> str:
    """Grouped horizontal bars: one row per label, one bar per series."""
    rows = len(labels)
    row_h = 16
    height = rows * row_h + 4
    top = max((max(s) for s, _ in series if len(s)), default=0.0) or 1.0
    parts = []
    label_w = 110
    for i, label in enumerate(labels):
        y = i * row_h + 2
        text = label if len(label) <= 16 else label[:15] + "…"
        parts.append(f"<text x='0' y='{y + 11}'>{esc(text)}</text>")
        for j, (shares, colour) in enumerate(series):
            w = (WIDTH - label_w - 40) * shares[i] / top
            parts.append(
                f"<rect x='{label_w}' y='{y + j * 7}' width='{w:.1f}' height='6' fill='{colour}'/>"
            )
        share = series[-1][0][i] if series else 0.0
        parts.append(f"<text x='{WIDTH}' y='{y + 11}' text-anchor='end'>{share:.1%}</text>")
    return _svg("".join(parts), height)


def _svg(inner: str, height: int = HEIGHT) -> str:
    return (
        f"<svg viewBox='0 0 {WIDTH} {height}' width='100%' role='img' "
        f"xmlns='http://www.w3.org/2000/svg'>{inner}</svg>"
    )


# -- profiles ---------------------------------------------------------------------


def profile_page(prof: Profile, *, title: str = "Data profile") -> str:
    """The HTML page of a profile: a summary table and a card per column."""
    rows = "".join(_profile_row(c) for c in prof)
    cards = "".join(_profile_card(c) for c in prof)
    source = f" of {esc(prof.source)}" if prof.source else ""
    body = (
        f"<h1>{esc(title)}</h1><p class='muted'>{prof.rows:,} rows, {len(prof.columns)} "
        f"columns{source}</p>"
        "<table><thead><tr><th>column</th><th>kind</th><th>type</th><th>nulls</th>"
        "<th>distinct</th><th>min</th><th>mean</th><th>max</th></tr></thead>"
        f"<tbody>{rows}</tbody></table><h2>Distributions</h2><div class='cards'>{cards}</div>"
    )
    return page(title, body)


def _profile_row(col: ColumnProfile) -> str:
    s = col.summary()
    return (
        f"<tr><td>{esc(col.name)}</td><td>{esc(col.kind.value)}</td><td>{esc(col.dtype)}</td>"
        f"<td class='num'>{number(col.nulls)} ({col.null_fraction:.1%})</td>"
        f"<td class='num'>{number(col.distinct)}</td><td class='num'>{number(s.get('min'))}</td>"
        f"<td class='num'>{number(s.get('mean'))}</td><td class='num'>{number(s.get('max'))}</td>"
        "</tr>"
    )


def _profile_card(col: ColumnProfile) -> str:
    if col.is_numeric and col.n and col.minimum is not None and col.maximum is not None:
        lo, hi = col.quantiles([0.005, 0.995])
        if hi <= lo:
            lo, hi = col.minimum, col.maximum + (1.0 if col.maximum == col.minimum else 0.0)
        edges = [lo + (hi - lo) * i / 30 for i in range(31)]
        counts = col.histogram(edges)
        total = counts.sum() or 1.0
        chart = histogram_svg(edges, [((counts / total).tolist(), REFERENCE_COLOUR)])
    else:
        top = col.top(12)
        present = col.present or 1
        chart = (
            bars_svg([v for v, _ in top], [([n / present for _, n in top], REFERENCE_COLOUR)])
            if top
            else "<p class='muted'>no values</p>"
        )
    return f"<div class='card'><h3>{esc(col.name)}</h3>{chart}</div>"


# -- drift ------------------------------------------------------------------------


def drift_page(report: DriftReport, *, title: str = "Drift report") -> str:
    """The HTML page of a drift report: verdict, a table row and a chart per column."""
    return page(title, drift_section(report, title=title, heading="h1"))


def drift_section(report: DriftReport, *, title: str, heading: str = "h2") -> str:
    """A drift report's markup, to stand alone or inside a larger page."""
    verdict_class = "bad" if report.drifted else "ok"
    new = report.new_categories
    names = " vs ".join(esc(n) for n in (report.reference, report.current) if n)
    body = [
        f"<{heading}>{esc(title)}</{heading}><p class='muted'>{names}"
        f"{' — ' if names else ''}reference {report.n_reference:,} rows, current "
        f"{report.n_current:,} rows; false-discovery rate {report.fdr:g} "
        "(Benjamini–Hochberg across all columns)</p>",
        f"<p class='verdict {verdict_class}'>{esc(report.summary())}</p>",
    ]
    if new:
        listed = "".join(
            f"<li><b>{esc(col)}</b>: "
            + ", ".join(f"{esc(v)} ({n:,})" for v, n in cats[:20])
            + "</li>"
            for col, cats in new.items()
        )
        body.append(f"<p class='warn'>Categories the reference never had:</p><ul>{listed}</ul>")
    body.append(
        "<table><thead><tr><th>column</th><th>verdict</th><th>test</th><th>statistic</th>"
        "<th>p (adjusted)</th><th>size of change</th><th>threshold</th><th>nulls ref → cur</th>"
        "<th>why this test</th></tr></thead><tbody>"
    )
    body.extend(_drift_row(c) for c in report.columns)
    body.append("</tbody></table><h3>Distributions</h3>" + legend() + "<div class='cards'>")
    body.extend(_drift_card(c) for c in report.columns if c.plot)
    body.append("</div>")
    return "".join(body)


def _drift_row(c: ColumnDrift) -> str:
    if c.skipped:
        verdict = "<span class='badge muted'>skipped</span>"
    elif c.drifted:
        verdict = "<span class='badge bad'>drift</span>"
    else:
        verdict = "<span class='badge ok'>ok</span>"
    p = f"{number(c.p_value)} ({number(c.p_adjusted)})" if c.p_value is not None else "–"
    effect = f"{number(c.effect)} <span class='muted'>{esc(c.effect_name)}</span>"
    nulls = f"{c.null_reference:.1%} → {c.null_current:.1%}"
    if c.null_drifted:
        nulls = f"<span class='bad'>{nulls}</span>"
    return (
        f"<tr><td>{esc(c.column)}</td><td>{verdict}</td><td>{esc(c.method)}</td>"
        f"<td class='num'>{number(c.statistic)}</td><td class='num'>{p}</td>"
        f"<td>{effect if c.effect is not None else '–'}</td>"
        f"<td class='num'>{number(c.threshold)}</td><td>{nulls}</td>"
        f"<td class='muted'>{esc(c.reason)}</td></tr>"
    )


def _drift_card(c: ColumnDrift) -> str:
    plot = c.plot
    series_keys = ("reference", "current")
    colours = (REFERENCE_COLOUR, CURRENT_COLOUR)
    if plot.get("type") == "histogram":
        chart = histogram_svg(
            plot["edges"], [(plot[k], col) for k, col in zip(series_keys, colours, strict=True)]
        )
    else:
        chart = bars_svg(
            plot["labels"], [(plot[k], col) for k, col in zip(series_keys, colours, strict=True)]
        )
    state = "bad" if c.drifted else "ok"
    return (
        f"<div class='card'><h3>{esc(c.column)} <span class='badge {state}'>"
        f"{'drift' if c.drifted else 'ok'}</span></h3>{chart}</div>"
    )


# -- validation -------------------------------------------------------------------


def validation_page(report: dict[str, Any]) -> str:
    """The HTML page of a validation report (:meth:`ValidationReport.to_dict`'s output).

    Failed checks come first; each row shows observed against expected values,
    counts and up to five failing examples.

    >>> "&lt;b&gt;" in validation_page({"suite": "<b>", "passed": False, "rows": 0, "results": []})
    True
    """
    summary = report.get("summary") or {}
    verdict = "passed" if report.get("passed") else "failed"
    order = {"failed": 0, "passed": 1, "skipped": 2}
    results = sorted(report.get("results", []), key=lambda r: order.get(r.get("status"), 3))
    counts = ", ".join(f"{v} {esc(k)}" for k, v in summary.items())
    title = f"Validation: {report.get('suite', '')}"
    body = (
        f"<h1>{esc(title)} {_badge(verdict)}</h1>"
        f"<p class='muted'>{number(report.get('rows', 0))} rows checked · {counts}</p>"
        "<table><thead><tr><th>status</th><th>check</th><th>column</th><th>message</th>"
        "<th>observed</th><th>expected</th><th>unexpected</th><th>examples</th></tr></thead>"
        f"<tbody>{''.join(_validation_row(r) for r in results)}</tbody></table>"
    )
    return page(title, body)


def _badge(status: str) -> str:
    return f"<span class='badge {_STATUS_CLASS.get(status, 'muted')}'>{esc(status)}</span>"


def _validation_row(result: dict[str, Any]) -> str:
    unexpected = result.get("unexpected_count")
    fraction = result.get("unexpected_fraction")
    counted = ""
    if unexpected is not None:
        counted = f"{unexpected:,} of {result.get('rows_checked', 0):,}"
        if fraction is not None:
            counted += f" ({fraction:.2%})"
    examples = "\n".join(
        f"row {e.get('row')}: {_example(e.get('value'))}" for e in result.get("examples") or []
    )
    column = result.get("column")
    return (
        f"<tr><td>{_badge(str(result.get('status', '')))}</td>"
        f"<td><code>{esc(result.get('expectation', ''))}</code></td>"
        f"<td>{'' if column is None else f'<code>{esc(column)}</code>'}</td>"
        f"<td class='msg'>{esc(result.get('message', ''))}</td>"
        f"<td>{_pre(result.get('observed'))}</td><td>{_pre(result.get('expected'))}</td>"
        f"<td>{esc(counted)}</td><td>{f'<pre>{esc(examples)}</pre>' if examples else ''}</td></tr>"
    )


def _example(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _pre(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"<pre>{esc(text)}</pre>"


# -- monitoring -------------------------------------------------------------------


def monitor_page(report: Any) -> str:
    """The HTML page of a :class:`keel.serving.monitor.MonitorReport`."""
    title = f"Monitoring: {report.model_uri}" if report.model_uri else "Monitoring"
    period = f"{report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC"
    verdict = "bad" if report.drifted else "ok"
    body = [
        f"<h1>{esc(title)}</h1><p class='muted'>{esc(period)}</p>",
        f"<p class='verdict {verdict}'>{esc(report.summary())}</p>",
        "<table><tbody>",
        f"<tr><th>requests</th><td class='num'>{number(report.requests)}</td></tr>",
        f"<tr><th>rows scored</th><td class='num'>{number(report.rows)}</td></tr>",
    ]
    for outcome, count in report.validation.items():
        body.append(
            f"<tr><th>validation: {esc(outcome)}</th><td class='num'>{number(count)}</td></tr>"
        )
    for name, value in report.latency_ms.items():
        body.append(f"<tr><th>latency {esc(name)}</th><td class='num'>{value:.2f} ms</td></tr>")
    for name, value in report.performance.items():
        body.append(f"<tr><th>realised {esc(name)}</th><td class='num'>{number(value)}</td></tr>")
    body.append("</tbody></table>")
    if report.problems:
        body.append(
            "<h2>Input problems</h2><table><thead><tr><th>column</th><th>code</th>"
            "<th>requests</th></tr></thead><tbody>"
        )
        for key, count in report.problems.items():
            column, _, code = key.rpartition(":")
            body.append(
                f"<tr><td>{esc(column)}</td><td><code>{esc(code)}</code></td>"
                f"<td class='num'>{number(count)}</td></tr>"
            )
        body.append("</tbody></table>")
    if report.input_drift is not None:
        body.append(drift_section(report.input_drift, title="Inputs vs training data"))
    if report.output_drift is not None:
        body.append(drift_section(report.output_drift, title="Predictions: last hour vs before"))
    if report.notes:
        body.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in report.notes) + "</ul>"
        )
    return page(title, "".join(body))
