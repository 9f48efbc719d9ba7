"""How commands print: rich tables for people, strict JSON for scripts.

JSON is always valid JSON. Metric values that are not finite become the strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, as in the proto3 JSON mapping
MLflow's REST API uses, because ``json.dumps`` would otherwise emit the bare
``NaN`` token that strict parsers (``jq``, JavaScript) reject.

>>> json_number(float("nan")), json_number(0.5)
('NaN', 0.5)
>>> format_duration(0, 83_000)
'1m 23s'
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from keel import formatting
from keel.entities import DatasetInput, Experiment, FileInfo, Run

JsonOutput = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of a table (for scripts).")
]

# Piped output has no terminal width; a wide virtual one keeps run ids and
# URIs on one line instead of folding them.
_PIPE_WIDTH = 200


def console(*, stderr: bool = False) -> Console:
    """A console for this invocation (made per call: tests swap ``sys.stdout``)."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else _PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def note(message: str) -> None:
    """A remark for the person at the terminal; on stderr so it never pollutes stdout."""
    typer.echo(message, err=True)


def print_json(data: Any) -> None:
    """Print ``data`` as indented, strictly valid JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False))


def json_number(value: float) -> float | str:
    """A metric value as JSON can carry it: non-finite numbers become strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


# -- values as text ----------------------------------------------------------


def format_time(ms: int | None, *, seconds: bool = True) -> str:
    """Milliseconds since the epoch as local time, to the second (or minute)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""))


def format_duration(start_ms: int, end_ms: int | None) -> str:
    """``350ms``, ``1.2s``, ``4m 05s``, ``2h 03m``; ``-`` while the run has no end time."""
    if end_ms is None:
        return "-"
    elapsed_ms = max(end_ms - start_ms, 0)
    if elapsed_ms < 1000:
        return f"{elapsed_ms}ms"
    seconds = elapsed_ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_number(value: float | None) -> str:
    """Four significant digits are enough to compare runs at a glance."""
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    return f"{value:.4g}"


def format_size(size: int | None) -> str:
    return "" if size is None else formatting.size(size)


# -- entities as JSON-ready dicts ----------------------------------------------


def experiment_to_dict(exp: Experiment) -> dict[str, Any]:
    return {
        "experiment_id": exp.experiment_id,
        "name": exp.name,
        "artifact_location": exp.artifact_location,
        "lifecycle_stage": exp.lifecycle_stage.value,
        "tags": dict(exp.tags),
        "creation_time": exp.creation_time,
        "last_update_time": exp.last_update_time,
    }


def dataset_input_to_dict(item: DatasetInput) -> dict[str, Any]:
    return {
        "dataset": dataclasses.asdict(item.dataset),
        "tags": {tag.key: tag.value for tag in item.tags},
    }


def run_to_dict(run: Run) -> dict[str, Any]:
    """A run with everything logged to it; metrics are the latest value per key."""
    info = run.info
    return {
        "info": {
            "run_id": info.run_id,
            "run_name": info.run_name,
            "experiment_id": info.experiment_id,
            "user_id": info.user_id,
            "status": info.status.value,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "artifact_uri": info.artifact_uri,
            "lifecycle_stage": info.lifecycle_stage.value,
        },
        "params": dict(sorted(run.data.params.items())),
        "metrics": {k: json_number(v) for k, v in sorted(run.data.metrics.items())},
        "tags": dict(sorted(run.data.tags.items())),
        "inputs": [dataset_input_to_dict(item) for item in run.inputs],
    }


def file_info_to_dict(info: FileInfo) -> dict[str, Any]:
    return {"path": info.path, "is_dir": info.is_dir, "file_size": info.file_size}


# -- tables ----------------------------------------------------------------------


def add_row(table: Table, *cells: str) -> None:
    """Add logged values as they are: a tag value "[red]" is text, not rich markup."""
    table.add_row(*(Text(cell) for cell in cells))


def key_value_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column table (params, metrics, tags of one run)."""
    table = Table(title=title, title_justify="left", title_style="bold")
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in rows:
        add_row(table, key, value)
    return table


def save_report(report: Any, html: Any = None, json_out: Any = None) -> None:
    """Write a report's ``--html`` and ``--json-out`` files, when asked, and say where."""
    if html is not None:
        report.to_html(html)
        note(f"HTML report written to {html}")
    if json_out is not None:
        report.to_json(json_out)
        note(f"JSON report written to {json_out}")
