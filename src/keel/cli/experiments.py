"""``keel experiments``: list, create, delete and restore experiments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from keel.cli import ShowAll, ShowDeleted, TrackingUri, open_client, view_type
from keel.cli.output import (
    JsonOutput,
    add_row,
    console,
    experiment_to_dict,
    format_time,
    note,
    print_json,
)
from keel.errors import NotFound
from keel.store.paging import collect_pages

if TYPE_CHECKING:
    from keel.entities import Experiment
    from keel.tracking.client import Client

app = typer.Typer(
    help="List, create, delete and restore experiments.",
    no_args_is_help=True,
)

# Experiment searches page at the store's limit; the CLI asks for pages this big.
_PAGE = 1000


def resolve_experiment(client: Client, ref: str) -> Experiment:
    """The experiment named ``ref``, else the one whose id is ``ref`` (deleted ones too)."""
    found = client.get_experiment_by_name(ref)
    if found is not None:
        return found
    if ref.isdigit():
        try:
            return client.get_experiment(ref)
        except NotFound:
            pass
    raise NotFound(
        f"Experiment {ref!r} does not exist (no experiment has that name or id). "
        "List experiments with `keel experiments list --all`."
    )


def _parse_tags(pairs: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(
                f"{pair!r} is not KEY=VALUE, e.g. --tag team=fraud.", param_hint="--tag"
            )
        tags[key] = value
    return tags


@app.command("list")
def list_experiments(
    show_all: ShowAll = False,
    deleted: ShowDeleted = False,
    filter_string: Annotated[
        str | None,
        typer.Option(
            "--filter",
            metavar="FILTER",
            help="Search filter, e.g. \"name LIKE 'churn%'\" or \"tags.team = 'fraud'\".",
            show_default=False,
        ),
    ] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option(
            "--order-by",
            metavar="CLAUSE",
            help='Sort clause, e.g. "creation_time DESC"; repeat for ties.',
            show_default=False,
        ),
    ] = None,
    max_results: Annotated[
        int,
        typer.Option(
            "--max-results", min=1, metavar="N", help="Show at most this many experiments."
        ),
    ] = 1000,
    json_output: JsonOutput = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """List experiments (active ones unless --all or --deleted)."""
    client = open_client(tracking_uri)
    view = view_type(show_all, deleted)
    found, token = collect_pages(
        lambda n, tok: client.search_experiments(view, n, filter_string, order_by, tok),
        max_results,
        _PAGE,
    )
    if json_output:
        print_json([experiment_to_dict(exp) for exp in found])
        return
    if not found:
        note("No experiments match.")
        return
    table = Table()
    for column in ("id", "name", "lifecycle", "created"):
        table.add_column(column, no_wrap=True)
    table.add_column("artifact location", overflow="fold")
    for exp in found:
        add_row(
            table,
            exp.experiment_id,
            exp.name,
            exp.lifecycle_stage.value,
            format_time(exp.creation_time),
            exp.artifact_location,
        )
    console().print(table)
    if token:
        note(f"Showing the first {len(found)} experiments; raise --max-results to see more.")


@app.command("create")
def create_experiment(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Name of the new experiment.", show_default=False)
    ],
    artifact_location: Annotated[
        str | None,
        typer.Option(
            "--artifact-location",
            metavar="URI",
            help="Where its runs store artifacts. Default: a folder named after its id "
            "in the artifact root beside the database.",
            show_default=False,
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            metavar="KEY=VALUE",
            help="A KEY=VALUE tag; repeat for more.",
            show_default=False,
        ),
    ] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Create an experiment and print its id (alone, so scripts can capture it)."""
    tags = _parse_tags(tag or [])
    client = open_client(tracking_uri)
    typer.echo(client.create_experiment(name, artifact_location, tags))


@app.command("delete")
def delete_experiment(
    experiment: Annotated[str, typer.Argument(metavar="ID_OR_NAME", help="Experiment name or id.")],
    tracking_uri: TrackingUri = None,
) -> None:
    """Delete an experiment and its runs (soft delete: `keel experiments restore` undoes it)."""
    client = open_client(tracking_uri)
    exp = resolve_experiment(client, experiment)
    client.delete_experiment(exp.experiment_id)
    typer.echo(
        f"Deleted experiment {exp.name!r} (id {exp.experiment_id}). "
        f"Undo with: keel experiments restore {exp.experiment_id}"
    )


@app.command("restore")
def restore_experiment(
    experiment: Annotated[str, typer.Argument(metavar="ID_OR_NAME", help="Experiment name or id.")],
    tracking_uri: TrackingUri = None,
) -> None:
    """Restore a deleted experiment and its runs."""
    client = open_client(tracking_uri)
    exp = resolve_experiment(client, experiment)
    client.restore_experiment(exp.experiment_id)
    typer.echo(f"Restored experiment {exp.name!r} (id {exp.experiment_id}).")
