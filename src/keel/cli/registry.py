"""``keel models list|show|register|alias|stage|delete|gates|promote|lineage``: the registry.

The commands join ``keel models`` (next to inspect/doctor/verify): a
registered model is a model too, and every model command accepts its
``models:/`` URI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from keel.cli import TrackingUri, open_client
from keel.cli.output import JsonOutput, console, format_time, key_value_table, note, print_json

if TYPE_CHECKING:
    from keel.entities import ModelVersion, RegisteredModel
    from keel.registry.gates import PromotionReport

Name = Annotated[str, typer.Argument(help="The registered model's name.", show_default=False)]
Version = Annotated[int, typer.Argument(help="The version number.", show_default=False, min=1)]
Force = Annotated[
    str | None,
    typer.Option(
        "--force",
        metavar="REASON",
        help="Set the alias even if gates fail; the reason is recorded on the version.",
    ),
]


def _version_dict(v: ModelVersion) -> dict[str, Any]:
    return {
        "name": v.name,
        "version": v.version,
        "stage": v.current_stage.value,
        "aliases": list(v.aliases),
        "source": v.source,
        "run_id": v.run_id,
        "description": v.description,
        "user_id": v.user_id,
        "status": v.status.value,
        "created": v.creation_timestamp,
        "updated": v.last_updated_timestamp,
        "tags": dict(v.tags),
    }


def _model_dict(m: RegisteredModel) -> dict[str, Any]:
    return {
        "name": m.name,
        "description": m.description,
        "created": m.creation_timestamp,
        "updated": m.last_updated_timestamp,
        "aliases": dict(m.aliases),
        "tags": dict(m.tags),
        "latest_versions": [_version_dict(v) for v in m.latest_versions],
    }


def list_models(
    filter_string: Annotated[
        str | None,
        typer.Option("--filter", help="e.g. \"name LIKE 'churn%' OR tags.team = 'risk'\"."),
    ] = None,
    max_results: Annotated[int, typer.Option("--max", help="At most this many.", min=1)] = 100,
    json_output: JsonOutput = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """List registered models with their aliases and newest version per stage."""
    client = open_client(tracking_uri)
    models = list(client.search_registered_models(filter_string, max_results=max_results))
    if json_output:
        print_json([_model_dict(m) for m in models])
        return
    from rich.table import Table

    table = Table(title=f"{len(models)} registered model(s)", title_justify="left")
    for column in ("name", "versions by stage", "aliases", "updated"):
        table.add_column(column)
    for m in models:
        stages = ", ".join(f"{v.current_stage.value}: v{v.version}" for v in m.latest_versions)
        aliases = ", ".join(f"{a} -> v{v}" for a, v in sorted(m.aliases.items()))
        table.add_row(m.name, stages or "-", aliases or "-", format_time(m.last_updated_timestamp))
    console().print(table)


def show(
    name: Name,
    version: Annotated[
        int | None, typer.Option("--version", help="Show this version instead.", min=1)
    ] = None,
    json_output: JsonOutput = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Show a registered model and its versions, or one version."""
    client = open_client(tracking_uri)
    if version is not None:
        v = client.get_model_version(name, version)
        if json_output:
            print_json(_version_dict(v))
            return
        rows = [(k, str(val)) for k, val in _version_dict(v).items() if k != "tags"]
        console().print(key_value_table(f"{name} v{version}", rows))
        if v.tags:
            console().print(key_value_table("tags", sorted(v.tags.items())))
        return
    model = client.get_registered_model(name)
    versions = list(client.search_model_versions(f"name = '{_quote(name)}'"))
    if json_output:
        print_json(_model_dict(model) | {"versions": [_version_dict(v) for v in versions]})
        return
    from rich.table import Table

    out = console()
    out.print(f"[bold]{name}[/bold] {model.description}".rstrip())
    table = Table(title=f"{len(versions)} version(s)", title_justify="left")
    for column in ("version", "stage", "aliases", "run", "created"):
        table.add_column(column)
    for v in versions:
        table.add_row(
            str(v.version),
            v.current_stage.value,
            ", ".join(v.aliases) or "-",
            v.run_id or "-",
            format_time(v.creation_timestamp),
        )
    out.print(table)


def register(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL",
            help="runs:/<run_id>/<path>, models:/<name>/<version> or a package directory.",
            show_default=False,
        ),
    ],
    name: Name,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="KEY=VALUE on the new version; repeatable.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="The version's description.")] = None,
    json_output: JsonOutput = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Register a model as the next version of NAME (created when new)."""
    from keel.errors import InvalidParameter

    tags = {}
    for item in tag or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InvalidParameter(f"Invalid --tag {item!r}: write KEY=VALUE.")
        tags[key] = value
    v = open_client(tracking_uri).register_model(model, name, tags=tags, description=description)
    if json_output:
        print_json(_version_dict(v))
        return
    typer.echo(f"Registered {name} version {v.version} ({v.uri}) from {v.source}")


def alias(
    name: Name,
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. champion.")],
    version: Annotated[
        int | None,
        typer.Argument(help="The version to point at (omit with --delete).", min=1),
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    force: Force = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Point ALIAS at VERSION (running the alias's gates first), or --delete it."""
    from keel.errors import InvalidParameter

    client = open_client(tracking_uri)
    if delete:
        if version is not None:
            raise InvalidParameter("--delete takes no VERSION: it removes the alias.")
        client.delete_registered_model_alias(name, alias_name)
        typer.echo(f"Removed alias {alias_name!r} of {name}")
        return
    if version is None:
        raise InvalidParameter(f"Give the VERSION alias {alias_name!r} should point at.")
    _print_report(client.promote(name, version, alias_name, force_reason=force))


def promote(
    name: Name,
    version: Version,
    alias_name: Annotated[
        str, typer.Option("--alias", help="The alias to set if every gate passes.")
    ],
    force: Force = None,
    json_output: JsonOutput = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Run the alias's declared gates on VERSION; set the alias only if all pass.

    Exit code 1 and the report when a gate fails. The outcome is recorded on
    the version as the tag keel.gate.<alias>.
    """
    from keel.registry.gates import PromotionRefused

    client = open_client(tracking_uri)
    try:
        report = client.promote(name, version, alias_name, force_reason=force)
    except PromotionRefused as refused:
        if json_output:
            print_json(refused.report.to_dict())
        else:
            note(refused.message)
        raise typer.Exit(1) from None
    if json_output:
        print_json(report.to_dict())
    else:
        _print_report(report)


def _print_report(report: PromotionReport) -> None:
    typer.echo(report.summary())
    typer.echo(f"Alias {report.alias!r} of {report.name} now points at version {report.version}.")


def stage(
    name: Name,
    version: Version,
    stage_name: Annotated[
        str, typer.Argument(metavar="STAGE", help="None, Staging, Production or Archived.")
    ],
    archive_existing: Annotated[
        bool,
        typer.Option(
            "--archive-existing",
            help="Move the other versions in that stage to Archived (Staging/Production only).",
        ),
    ] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Move VERSION to a stage (MLflow's legacy workflow; aliases are preferred)."""
    v = open_client(tracking_uri).transition_model_version_stage(
        name, version, stage_name, archive_existing_versions=archive_existing
    )
    typer.echo(f"{name} version {v.version} is now in stage {v.current_stage.value}")


def delete(
    name: Name,
    version: Annotated[
        int | None, typer.Option("--version", help="Delete only this version.", min=1)
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Delete a registered model with all its versions, or one version (--version)."""
    what = f"version {version} of {name}" if version else f"{name} and all its versions"
    if not yes and not typer.confirm(f"Delete {what}? This cannot be undone", default=False):
        raise typer.Exit(1)
    client = open_client(tracking_uri)
    if version is not None:
        client.delete_model_version(name, version)
    else:
        client.delete_registered_model(name)
    typer.echo(f"Deleted {what}")


def gates(
    name: Name,
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. production.")],
    gate: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[GATE]...",
            help="Replace the gates: 'metrics.f1 >= 0.85', signature, loads, "
            "'verify prod-requirements.txt [--python 3.11]'. None: show them.",
            show_default=False,
        ),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every gate of ALIAS.")] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Show or declare what a version must pass before ALIAS may point at it."""
    client = open_client(tracking_uri)
    if clear or gate:
        declared = client.set_promotion_gates(name, alias_name, [] if clear else list(gate or []))
    else:
        declared = client.get_promotion_gates(name, alias_name)
    if not declared:
        typer.echo(f"{name}: no gates for alias {alias_name!r}")
        return
    typer.echo(f"{name}: gates for alias {alias_name!r}")
    for g in declared:
        typer.echo(f"  {g.text}")


def lineage(
    name: Name,
    version: Version,
    json_output: JsonOutput = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Where VERSION came from: run, params, metrics, datasets, code, environment, checks."""
    data = open_client(tracking_uri).get_model_version_lineage(name, version)
    if json_output:
        print_json(data)
        return
    out = console()
    mv = data["model_version"]
    out.print(
        f"[bold]{mv['uri']}[/bold]  stage {mv['current_stage']}, aliases: "
        f"{', '.join(mv['aliases']) or '-'}"
    )
    run = data["run"]
    if run:
        out.print(f"run        {run['run_id']} ({run['run_name']}), {run['status']}")
        out.print(key_value_table("params", sorted(run["params"].items())))
        out.print(
            key_value_table("metrics", [(k, f"{v:.6g}") for k, v in sorted(run["metrics"].items())])
        )
    for ds in data["datasets"]:
        out.print(
            f"dataset    {ds['name']} ({ds['context'] or 'no context'}) digest {ds['digest']}"
        )
    code = data["code"]
    if code:
        dirty = " (uncommitted changes)" if code["git_dirty"] else ""
        out.print(
            f"code       {code['git_commit'] or 'no git commit'}{dirty} {code['source_name'] or ''}"
        )
    env = data["environment"]
    if env:
        pins = ", ".join(f"{k}=={v}" for k, v in sorted((env.get("packages") or {}).items()))
        out.print(f"environment Python {env.get('python')}: {pins}")
    for check in data["checks"] or []:
        out.print(f"check      {check['name']}: {'ok' if check['ok'] else 'FAILED'}")
    for alias_name, report in data["gates"].items():
        status = report.get("status") if isinstance(report, dict) else report
        out.print(f"gates      {alias_name}: {status}")
    for line in data["notes"]:
        out.print(f"note       {line}")


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def register_commands(app: typer.Typer) -> None:
    """Add the registry commands to ``keel models``."""
    app.command("list")(list_models)
    app.command("show")(show)
    app.command("register")(register)
    app.command("alias")(alias)
    app.command("promote")(promote)
    app.command("gates")(gates)
    app.command("stage")(stage)
    app.command("delete")(delete)
    app.command("lineage")(lineage)
