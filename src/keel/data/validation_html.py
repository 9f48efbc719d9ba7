"""A validation report as one self-contained HTML page (no scripts, no external assets).

Every piece of text from the data or the suite is HTML-escaped, so a column
named ``<script>`` shows as text. Colours follow the reader's light or dark
preference (``prefers-color-scheme``).

>>> page = render({"suite": "s", "passed": True, "rows": 3, "summary": {}, "results": []})
>>> page.startswith("<!DOCTYPE html>") and "passed" in page
True
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

_STYLE = """
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1f2328; --muted: #59636e;
  --line: #d1d9e0; --head: #f6f8fa; --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e;
  --bad-bg: #ffebe9; --skip: #6e7781; --skip-bg: #eaeef2; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --line: #3d444d; --head: #151b23;
    --ok: #3fb950; --ok-bg: #12261e; --bad: #f85149; --bad-bg: #2d1214; --skip: #9198a1;
    --skip-bg: #212830; }
}
body { background: var(--bg); color: var(--fg); margin: 2rem;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; }
p.meta { color: var(--muted); margin: 0 0 1.2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: .45rem .6rem; text-align: left;
  vertical-align: top; }
th { background: var(--head); font-weight: 600; }
td.msg { max-width: 32rem; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; max-width: 24rem; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 1rem; font-weight: 600;
  font-size: 12px; }
.passed { color: var(--ok); background: var(--ok-bg); }
.failed { color: var(--bad); background: var(--bad-bg); }
.skipped { color: var(--skip); background: var(--skip-bg); }
"""

_ORDER = {"failed": 0, "passed": 1, "skipped": 2}


def render(report: dict[str, Any]) -> str:
    """The HTML page for ``report`` (a :meth:`ValidationReport.to_dict` result).

    Failed checks come first; each row shows observed against expected values,
    counts and up to five failing examples.

    >>> "&lt;b&gt;" in render({"suite": "<b>", "passed": False, "rows": 0, "results": []})
    True
    """
    summary = report.get("summary") or {}
    verdict = "passed" if report.get("passed") else "failed"
    results = sorted(report.get("results", []), key=lambda r: _ORDER.get(r.get("status"), 3))
    rows = "\n".join(_row(r) for r in results)
    counts = ", ".join(f"{v} {escape(str(k))}" for k, v in summary.items())
    title = f"Validation: {report.get('suite', '')}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{escape(title)} <span class="badge {verdict}">{verdict}</span></h1>
<p class="meta">{escape(str(report.get("rows", 0)))} rows checked · {counts}</p>
<table>
<thead><tr><th>Status</th><th>Check</th><th>Column</th><th>Message</th><th>Observed</th>
<th>Expected</th><th>Unexpected</th><th>Examples</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def _row(result: dict[str, Any]) -> str:
    status = str(result.get("status", ""))
    unexpected = result.get("unexpected_count")
    fraction = result.get("unexpected_fraction")
    counted = ""
    if unexpected is not None:
        counted = f"{unexpected} of {result.get('rows_checked', 0)}"
        if fraction is not None:
            counted += f" ({fraction:.2%})"
    examples = "\n".join(
        f"row {e.get('row')}: {_text(e.get('value'))}" for e in result.get("examples") or []
    )
    column = result.get("column")
    cells = [
        f'<span class="badge {escape(status)}">{escape(status)}</span>',
        f"<code>{escape(str(result.get('expectation', '')))}</code>",
        "" if column is None else f"<code>{escape(str(column))}</code>",
        escape(str(result.get("message", ""))),
        _pre(result.get("observed")),
        _pre(result.get("expected")),
        escape(counted),
        f"<pre>{escape(examples)}</pre>" if examples else "",
    ]
    classes = ["", "", "", ' class="msg"', "", "", "", ""]
    tds = "".join(f"<td{c}>{cell}</td>" for c, cell in zip(classes, cells, strict=True))
    return f"<tr>{tds}</tr>"


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)


def _pre(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"<pre>{escape(text)}</pre>"
