"""``keel data``: store dataset versions by content digest, fetch, list and diff them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from keel.cli import data_checks
from keel.cli.output import JsonOutput, add_row, console, format_size, note, print_json

if TYPE_CHECKING:
    from keel.data.diff import DatasetDiff

app = typer.Typer(
    help="Version datasets by content (like `dvc add`), fetch, list and diff them.",
    no_args_is_help=True,
)

Root = Annotated[
    str | None,
    typer.Option(
        "--root",
        metavar="URI",
        help="Where versions are stored: a directory or s3://bucket/prefix. Default: "
        "$KEEL_DATA_ROOT, else the artifact root beside the tracking database "
        "(./keel-artifacts).",
        show_default=False,
    ),
]


@app.command("add")
def add(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="PATH", help="A .csv, .tsv, .csv.gz or .parquet file.", show_default=False
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            metavar="NAME",
            help="Dataset name. Default: the file name without its extension.",
            show_default=False,
        ),
    ] = None,
    root: Root = None,
) -> None:
    """Store a data file under its content digest (once per distinct content)."""
    from keel.data import versions

    added = versions.add_file(path, name=name, root=root)
    ds, info = added.dataset, added.info
    typer.echo(f"digest   {ds.digest}")
    typer.echo(f"name     {ds.name}")
    typer.echo(f"rows     {ds.rows}")
    typer.echo(f"columns  {len(ds.schema)}")
    if added.already_stored:
        typer.echo(f"already stored at {info.location}")
    else:
        typer.echo(f"stored at {info.location}")


@app.command("get")
def get(
    digest: Annotated[
        str,
        typer.Argument(
            metavar="DIGEST",
            help="A stored digest, or a unique prefix of at least 6 characters.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="PATH",
            help="Where to write the file (a file path, or a directory to keep its stored name).",
            show_default=False,
        ),
    ],
    root: Root = None,
) -> None:
    """Copy a stored dataset version's file out of the store."""
    from keel.data import versions

    dest = versions.get(digest, out, root=root)
    typer.echo(str(dest))


@app.command("list")
def list_versions(root: Root = None, json_output: JsonOutput = False) -> None:
    """List stored dataset versions, newest first."""
    from keel.data import versions

    found = versions.list_versions(root)
    if json_output:
        print_json([v.to_dict() for v in found])
        return
    if not found:
        note("No dataset versions are stored there yet; add one with `keel data add PATH`.")
        return
    table = Table()
    for column in ("digest", "name", "rows", "columns", "size", "added"):
        table.add_column(column, no_wrap=True)
    for v in found:
        add_row(
            table,
            v.digest[:12],
            v.name,
            str(v.rows),
            str(len(v.schema)),
            format_size(v.size_bytes),
            _local_time(v.added_at),
        )
    console().print(table)


@app.command("diff")
def diff(
    a: Annotated[
        str,
        typer.Argument(
            metavar="A",
            help="The old version: a data file or a stored digest (prefix).",
            show_default=False,
        ),
    ],
    b: Annotated[
        str,
        typer.Argument(
            metavar="B",
            help="The new version: a data file or a stored digest (prefix).",
            show_default=False,
        ),
    ],
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key",
            metavar="COL",
            help="Column identifying a row, so edited rows count as changed; repeat the option "
            "for a composite key.",
            show_default=False,
        ),
    ] = None,
    root: Root = None,
    json_output: JsonOutput = False,
) -> None:
    """Compare two dataset versions: schema, rows added/removed/changed, column statistics."""
    from keel.data.diff import diff as compare

    result = compare(_resolve(a, root), _resolve(b, root), key=key or None)
    if json_output:
        print_json(result.to_dict())
        return
    _print_diff(result)


def _resolve(ref: str, root: str | None) -> Path:
    """A file path as given, else the stored version a digest (prefix) names."""
    from keel.data import versions
    from keel.data.frames import DataError

    path = Path(ref).expanduser()
    if path.is_file():
        return path
    hexdigits = set("0123456789abcdef")
    if len(ref) >= versions.MIN_PREFIX and set(ref.lower()) <= hexdigits:
        return versions.load(ref, root=root)[0]
    raise DataError(
        f"{ref!r} is neither a data file nor a stored dataset digest. Pass a path to a .csv or "
        ".parquet file, or a digest (prefix) from `keel data list`."
    )


def _print_diff(d: DatasetDiff) -> None:
    out: list[str] = []
    if d.identical:
        out.append(f"identical: {d.rows_a} rows, columns {', '.join(d.compared_columns)}")
    out.append(f"rows      {d.rows_a} -> {d.rows_b}")
    out.append(f"added     {d.rows_added}")
    out.append(f"removed   {d.rows_removed}")
    if d.key is not None:
        out.append(f"changed   {d.rows_changed} (key: {', '.join(d.key)})")
    for name in d.columns_added:
        out.append(f"column added    {name}")
    for name in d.columns_removed:
        out.append(f"column removed  {name}")
    for name, old, new in d.type_changes:
        out.append(f"column type     {name}: {old} -> {new}")
    for name, count in d.changed_cells.items():
        out.append(f"changed cells   {name}: {count}")
    for example in d.examples:
        key = ", ".join(f"{k}={v!r}" for k, v in example["key"].items())
        changes = "; ".join(
            f"{c}: {v['old']!r} -> {v['new']!r}" for c, v in example["changes"].items()
        )
        out.append(f"  e.g. {key}: {changes}")
    for line in out:
        typer.echo(line)
    table = Table(title="columns")
    for column in ("column", "stat", "a", "b"):
        table.add_column(column, no_wrap=True)
    for delta in d.columns:
        for stat, before in delta.a.items():
            after = delta.b.get(stat)
            if before != after:
                add_row(table, delta.column, stat, _cell(before), _cell(after))
        if delta.new_categories:
            add_row(table, delta.column, "new categories", "", _cell(delta.new_categories))
        if delta.vanished_categories:
            add_row(
                table, delta.column, "vanished categories", _cell(delta.vanished_categories), ""
            )
    if table.row_count:
        console().print(table)


def _cell(value: Any) -> str:
    if isinstance(value, list):
        shown = ", ".join(str(v) for v in value[:10])
        return shown + (f" (+{len(value) - 10} more)" if len(value) > 10 else "")
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


# The checks on data (profile, suite, validate, drift) live in their own module.
app.command("profile")(data_checks.profile)
app.command("suite")(data_checks.suite)
app.command("validate")(data_checks.validate)
app.command("drift")(data_checks.drift)
