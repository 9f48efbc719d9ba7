"""``keel monitor report``: what a served model's traffic looked like, against its training data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from keel.cli import ModelArgument, TrackingUri
from keel.cli.output import JsonOutput, note, save_report

app = typer.Typer(
    help="Watch a served model: drift of its inputs and predictions, validation, latency.",
    no_args_is_help=True,
)


@app.command("report")
def report(
    model_uri: ModelArgument,
    log_dir: Annotated[
        Path,
        typer.Option("--log-dir", help="The prediction log keel serve wrote.", metavar="DIR"),
    ] = Path("keel-predictions"),
    since: Annotated[
        str,
        typer.Option(help="How far back to look: 30m, 24h, 7d, 2w.", metavar="DURATION"),
    ] = "24h",
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML report here.", metavar="FILE")
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json-out", help="Also write the report as JSON here.", metavar="FILE"),
    ] = None,
    as_json: JsonOutput = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Input drift against the training profile, output drift, validation failures, latency.

    Reads the prediction log's hourly profiles (not its rows) for drift, and a
    few columns of its rows for counts and latency, so a long period costs little.
    """
    from keel.serving.monitor import monitor_report, parse_duration

    if tracking_uri:
        import keel

        keel.set_tracking_uri(tracking_uri)
    result = monitor_report(
        log_dir,
        training_profile=_training_profile(model_uri),
        since=parse_duration(since),
        model_uri=model_uri,
    )
    save_report(result, html, json_out)
    if as_json:
        typer.echo(result.to_json())
        return
    typer.echo(result.summary())
    for line in result.notes:
        note(f"note: {line}")


def _training_profile(model_uri: str) -> Any:
    from keel.data.profiles import Profile
    from keel.models import load, resolve_model_uri
    from keel.models.package import PROFILE_FILE

    path = resolve_model_uri(model_uri)
    if path.is_dir():  # the profile alone: no need to load (and unpickle) the model
        file = path / PROFILE_FILE
        return Profile.from_json(file) if file.is_file() else None
    return load(path).training_profile()
