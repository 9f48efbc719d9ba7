"""``keel predict``: score a file with a model, in chunks, checked as ``keel serve`` checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keel.cli import ModelArgument, TrackingUri
from keel.cli.output import console


def predict(
    model_uri: ModelArgument,
    input_path: Annotated[
        Path,
        typer.Option(
            "--input", "-i", help="A .csv, .tsv, .csv.gz or .parquet file.", metavar="FILE"
        ),
    ],
    output_path: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the rows plus a prediction column (.parquet or .csv).",
            metavar="FILE",
        ),
    ],
    validation: Annotated[
        str,
        typer.Option(
            help="reject: stop at the first batch with a problem (naming it); warn: score it "
            "anyway and count the problems; off: no checks.",
            metavar="POLICY",
        ),
    ] = "reject",
    batch_rows: Annotated[
        int, typer.Option(help="Rows read, checked and scored at a time.", min=1)
    ] = 50_000,
    tracking_uri: TrackingUri = None,
) -> None:
    """Score every row of a file: the output holds the input's columns and a prediction column.

    The file is read in batches, so it can be larger than memory; each batch is
    checked against the model's signature and training profile as `keel serve`
    checks requests. The output appears only when every row was scored.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import keel
    from keel.data.frames import file_suffix
    from keel.serving.batch import predict_file

    if tracking_uri:
        keel.set_tracking_uri(tracking_uri)
    total = _rows(input_path) if file_suffix(input_path) in (".parquet", ".pq") else None
    err = console(stderr=True)
    columns = [TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("scoring", total=total)
        result = predict_file(
            model_uri,
            input_path,
            output_path,
            validation=validation,
            batch_rows=batch_rows,
            progress=lambda n: bar.advance(task, n),
        )
    typer.echo(f"Scored {result.rows:,} rows into {output_path}.")
    for key, count in result.problems.items():
        typer.echo(f"  warning: {count:,} rows with {key}", err=True)


def _rows(path: Path) -> int | None:
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError):
        return None  # the scoring itself will say what is wrong with the file
