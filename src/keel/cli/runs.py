"""``keel runs``: list, show, delete and restore runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table

from keel.cli import ShowAll, ShowDeleted, TrackingUri, open_client, view_type
from keel.cli.experiments import resolve_experiment
from keel.cli.output import (
    JsonOutput,
    add_row,
    console,
    file_info_to_dict,
    format_duration,
    format_number,
    format_size,
    format_time,
    key_value_table,
    note,
    print_json,
    run_to_dict,
)
from keel.entities import PARENT_RUN_ID_TAG, FileInfo, Run, ViewType
from keel.errors import KeelError
from keel.store.base import MAX_RESULTS_RUNS
from keel.store.paging import collect_pages

if TYPE_CHECKING:
    from keel.search.filter import Expr
    from keel.search.order import OrderKey
    from keel.tracking.client import Client

app = typer.Typer(help="List, show, delete and restore runs.", no_args_is_help=True)

# Beyond the metrics and params a filter or sort names, the table offers a
# few more; --json has everything.
_MAX_OTHER_METRICS = 3
_MAX_OTHER_PARAMS = 2
_MAX_NAME_WIDTH = 30
_MAX_PARAM_WIDTH = 20
# What a narrow terminal keeps first: who the run is, then what the user asked
# about, then other results, then bookkeeping.
_PRIORITY = {
    "id": 0,
    "status": 1,
    "named": 2,
    "exp": 3,
    "metric": 4,
    "start": 5,
    "duration": 6,
    "param": 7,
}


def _experiment_ids(client: Client, refs: Sequence[str]) -> list[str]:
    """Ids of the named experiments; without names, every active experiment."""
    if refs:
        return list(dict.fromkeys(resolve_experiment(client, ref).experiment_id for ref in refs))
    found, _ = collect_pages(
        lambda n, token: client.search_experiments(ViewType.ACTIVE_ONLY, n, page_token=token)
    )
    return [exp.experiment_id for exp in found]


def _keys_in(expr: Expr | None, entity: str) -> list[str]:
    from keel.search.filter import Comparison

    if expr is None:
        return []
    if isinstance(expr, Comparison):
        return [expr.key] if expr.entity == entity else []
    return [key for clause in expr.clauses for key in _keys_in(clause, entity)]


@dataclass
class _Column:
    header: str
    cells: list[str]
    priority: int  # lower is kept first when the terminal is narrow (see _PRIORITY)
    justify: Literal["left", "right"] = "left"
    max_width: int | None = None

    @property
    def width(self) -> int:
        natural = max(cell_len(line) for line in [*self.header.split("\n"), *self.cells])
        return min(natural, self.max_width) if self.max_width else natural


def _candidate_columns(
    runs: Sequence[Run], expr: Expr | None, order: Sequence[OrderKey]
) -> list[_Column]:
    """Every column the table could show, in display order, with its priority."""
    infos = [r.info for r in runs]
    statuses = [
        i.status.value + (" (deleted)" if i.lifecycle_stage.value != "active" else "")
        for i in infos
    ]
    columns = [
        _Column("run id", [i.run_id for i in infos], _PRIORITY["id"]),
        _Column("name", [i.run_name for i in infos], _PRIORITY["id"], max_width=_MAX_NAME_WIDTH),
    ]
    if len({i.experiment_id for i in infos}) > 1:
        columns.append(_Column("exp", [i.experiment_id for i in infos], _PRIORITY["exp"]))
    columns += [
        _Column("status", statuses, _PRIORITY["status"]),
        _Column(
            "start time",
            [format_time(i.start_time, seconds=False) for i in infos],
            _PRIORITY["start"],
        ),
        _Column(
            "duration",
            [format_duration(i.start_time, i.end_time) for i in infos],
            _PRIORITY["duration"],
        ),
    ]
    for entity, limit in (("metric", _MAX_OTHER_METRICS), ("param", _MAX_OTHER_PARAMS)):
        named = [k.key for k in order if k.entity == entity] + _keys_in(expr, entity)
        keys = list(dict.fromkeys(named))
        present = Counter(
            k for r in runs for k in (r.data.metrics if entity == "metric" else r.data.params)
        )
        others = [k for k, _n in sorted(present.items(), key=lambda kv: (-kv[1], kv[0]))]
        keys += [k for k in others if k not in keys][:limit]
        for key in keys:
            priority = _PRIORITY["named" if key in named else entity]
            # Two-line headers ("metric" over the key) keep columns as narrow as their values.
            if entity == "metric":
                cells = [format_number(r.data.metrics.get(key)) for r in runs]
                columns.append(_Column(f"metric\n{key}", cells, priority, "right"))
            else:
                cells = [r.data.params.get(key, "") for r in runs]
                columns.append(
                    _Column(f"param\n{key}", cells, priority, max_width=_MAX_PARAM_WIDTH)
                )
    return columns


def _runs_table(columns: Sequence[_Column], width: int) -> Table:
    """The columns that fit ``width``, most important first, shown in their order."""
    budget = width - 1  # the table's left border
    kept: set[int] = set()
    for index in sorted(range(len(columns)), key=lambda i: columns[i].priority):
        cost = columns[index].width + 3  # padding and border
        if columns[index].priority == _PRIORITY["id"] or cost <= budget:
            kept.add(index)
            budget -= cost
    table = Table()
    shown = [c for i, c in enumerate(columns) if i in kept]
    for column in shown:
        table.add_column(
            column.header,
            justify=column.justify,
            # Ids and numbers are never cut (ids are copied into other commands).
            no_wrap=column.max_width is None,
            max_width=column.max_width,
        )
    for row in range(len(shown[0].cells) if shown else 0):
        add_row(table, *(column.cells[row] for column in shown))
    return table


@app.command("list")
def list_runs(
    experiment: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment",
            "-e",
            metavar="ID_OR_NAME",
            help="Experiment name or id; repeat for several. Default: every active experiment.",
            show_default=False,
        ),
    ] = None,
    filter_string: Annotated[
        str | None,
        typer.Option(
            "--filter",
            metavar="FILTER",
            help="Search filter, e.g. \"metrics.accuracy > 0.9 AND params.model = 'rf'\".",
            show_default=False,
        ),
    ] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option(
            "--order-by",
            metavar="CLAUSE",
            help='Sort clause, e.g. "metrics.accuracy DESC"; repeat for ties. '
            "Default: newest first.",
            show_default=False,
        ),
    ] = None,
    max_results: Annotated[
        int,
        typer.Option(
            "--max-results",
            min=1,
            max=MAX_RESULTS_RUNS,
            metavar="N",
            help="Show at most this many runs.",
        ),
    ] = 50,
    show_all: ShowAll = False,
    deleted: ShowDeleted = False,
    json_output: JsonOutput = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """List runs, newest first. The table shows the metrics and params that --filter and
    --order-by name, then a few more; --json prints every field of every run."""
    from keel.search.filter import parse_filter
    from keel.search.order import parse_order_by

    view = view_type(show_all, deleted)
    clauses = order_by or []
    # Parsed here as well as in the store: bad syntax is reported even when no
    # experiment is searched, and the table needs the keys they name.
    expr = parse_filter(filter_string, "runs")
    order = parse_order_by(clauses, "runs")
    client = open_client(tracking_uri)
    ids = _experiment_ids(client, experiment or [])
    runs: list[Run] = []
    token: str | None = None
    if ids:
        runs, token = collect_pages(
            lambda n, tok: client.search_runs(ids, filter_string or "", view, n, clauses, tok),
            max_results,
            MAX_RESULTS_RUNS,
        )
    if json_output:
        print_json([run_to_dict(run) for run in runs])
        return
    if not runs:
        note("No runs match.")
        return
    out = console()
    out.print(_runs_table(_candidate_columns(runs, expr, order), out.width))
    if token:
        note(f"Showing the first {len(runs)} runs; raise --max-results to see more.")


def _artifacts(client: Client, run_id: str) -> tuple[list[FileInfo] | None, str | None]:
    # A run is still worth showing when its artifact store cannot be listed.
    try:
        return client.list_artifacts(run_id), None
    except KeelError as exc:
        return None, exc.message


@app.command("show")
def show_run(
    run_id: Annotated[
        str, typer.Argument(metavar="RUN_ID", help="The run's id (see `keel runs list`).")
    ],
    json_output: JsonOutput = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Show one run: its info, params, latest metrics, tags, dataset inputs and artifacts."""
    client = open_client(tracking_uri)
    run = client.get_run(run_id)
    files, problem = _artifacts(client, run_id)
    if json_output:
        as_dict = run_to_dict(run)
        as_dict["artifacts"] = None if files is None else [file_info_to_dict(f) for f in files]
        print_json(as_dict)
        return
    info = run.info
    experiment = client.get_experiment(info.experiment_id)
    out = console()
    for label, value in (
        ("run id", info.run_id),
        ("name", info.run_name),
        ("experiment", f"{experiment.name} (id {experiment.experiment_id})"),
        ("status", info.status.value),
        ("lifecycle", info.lifecycle_stage.value),
        ("user", info.user_id),
        ("start time", format_time(info.start_time)),
        ("end time", format_time(info.end_time)),
        ("duration", format_duration(info.start_time, info.end_time)),
        ("parent run", run.data.tags.get(PARENT_RUN_ID_TAG, "-")),
        ("artifact uri", info.artifact_uri),
    ):
        out.print(f"[bold]{label:<13}[/bold]{escape(value)}", soft_wrap=True)
    out.print()
    data = run.data
    if data.params:
        out.print(key_value_table("Params", sorted(data.params.items())))
    if data.metrics:
        rows = [(k, format_number(v)) for k, v in sorted(data.metrics.items())]
        out.print(key_value_table("Metrics (latest)", rows))
    if data.tags:
        out.print(key_value_table("Tags", sorted(data.tags.items())))
    if run.inputs:
        inputs = Table(title="Dataset inputs", title_justify="left", title_style="bold")
        for column in ("name", "digest", "context", "source"):
            inputs.add_column(column, overflow="fold")
        for item in run.inputs:
            ds = item.dataset
            add_row(inputs, ds.name, ds.digest[:12], item.context or "", ds.source)
        out.print(inputs)
    if problem is not None:
        note(f"Cannot list artifacts: {problem}")
    elif files:
        listing = Table(title="Artifacts", title_justify="left", title_style="bold")
        listing.add_column("path", overflow="fold")
        listing.add_column("size", justify="right")
        for f in files:
            add_row(listing, f.path + ("/" if f.is_dir else ""), format_size(f.file_size))
        out.print(listing)


@app.command("delete")
def delete_run(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run's id.")],
    tracking_uri: TrackingUri = None,
) -> None:
    """Delete a run (soft delete: `keel runs restore` undoes it)."""
    open_client(tracking_uri).delete_run(run_id)
    typer.echo(f"Deleted run {run_id}. Undo with: keel runs restore {run_id}")


@app.command("restore")
def restore_run(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run's id.")],
    tracking_uri: TrackingUri = None,
) -> None:
    """Restore a deleted run."""
    open_client(tracking_uri).restore_run(run_id)
    typer.echo(f"Restored run {run_id}.")
