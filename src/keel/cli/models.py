"""``keel models``: look inside a package, check it would load, print its lock."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keel.cli.output import JsonOutput, console, key_value_table, print_json

if TYPE_CHECKING:
    from keel.models.doctor import Diagnosis
    from keel.models.targets import VerifyResult

app = typer.Typer(
    help="Inspect model packages and check, before deployment, that they would load.",
    no_args_is_help=True,
)

ModelUri = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="A package directory or archive (.keel), or runs:/<run_id>/<path>.",
        show_default=False,
    ),
]


Policy = Annotated[
    str,
    typer.Option(
        "--policy",
        help="How strictly versions must match: strict, compatible (the default) or warn.",
    ),
]


def _check_policy(policy: str) -> None:
    # Before any work: a typo should not cost an environment build.
    from keel.errors import InvalidParameter
    from keel.models.environment import POLICIES

    if policy not in POLICIES:
        raise InvalidParameter(f"Unknown policy {policy!r}: use one of {', '.join(POLICIES)}.")


def _resolve(uri: str) -> Path:
    """The package directory MODEL names; an archive is extracted into the cache first."""
    from keel.models import resolve_model_uri
    from keel.models.archive import package_root

    return package_root(resolve_model_uri(uri))


def _label(model: str, root: Path) -> str:
    """How output names the package: an archive by its own path and where it was extracted."""
    return f"{model} (extracted to {root})" if Path(model).is_file() else str(root)


@app.command("inspect")
def inspect_package(model: ModelUri, json_output: JsonOutput = False) -> None:
    """Show what is inside a package: flavor, environment lock, provenance, files, globals."""
    from keel.models.package import read_meta

    root = _resolve(model)
    meta = read_meta(root)
    summary: dict[str, Any] = {
        "path": str(root),
        # Only for an archive, so a directory's JSON is unchanged.
        **({"archive": model} if Path(model).is_file() else {}),
        "flavor": meta.get("flavor"),
        "model_class": meta.get("model_class"),
        "serializer": meta.get("serializer"),
        "created": meta.get("created"),
        "keel_version": meta.get("keel_version"),
        "environment": meta.get("environment"),
        "provenance": meta.get("provenance"),
        "files": meta.get("files"),
        "pickle_globals": (meta.get("pickle") or {}).get("globals", []),
        "skops_types": (meta.get("skops") or {}).get("types", []),
        "golden_outputs": sorted((meta.get("golden") or {}).get("outputs", {})),
    }
    if json_output:
        print_json(summary)
        return
    out = console()
    env = summary["environment"] or {}
    out.print(
        key_value_table(
            f"Package {_label(model, root)}",
            [
                ("flavor", str(summary["flavor"])),
                ("model", str(summary["model_class"])),
                ("serializer", str(summary["serializer"])),
                ("created", str(summary["created"])),
                ("python", f"{env.get('implementation')} {env.get('python')}"),
                ("platform", str(env.get("platform"))),
                ("golden sample", ", ".join(summary["golden_outputs"]) or "none"),
            ],
        )
    )
    out.print(key_value_table("Environment lock", sorted((env.get("packages") or {}).items())))
    provenance = summary["provenance"] or {}
    if provenance:
        out.print(key_value_table("Provenance", [(k, str(v)) for k, v in provenance.items()]))
    out.print(key_value_table("Files (sha256)", sorted((summary["files"] or {}).items())))
    if summary["skops_types"]:
        out.print(key_value_table("skops types", [(t, "") for t in summary["skops_types"]]))
    else:
        out.print(key_value_table("Pickle globals", [(g, "") for g in summary["pickle_globals"]]))


@app.command()
def doctor(
    model: ModelUri,
    target: Annotated[
        Path | None,
        typer.Option(
            "--target",
            metavar="REQUIREMENTS",
            help="Check against this pinned requirements file (e.g. from `pip freeze` on "
            "the server) instead of this environment.",
            show_default=False,
        ),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option("--python", metavar="X.Y", help="The target's Python version."),
    ] = None,
    policy: Policy = "compatible",
    json_output: JsonOutput = False,
) -> None:
    """Would the package load here (or in --target)? Every check with its fix; nothing unpickled.

    Exit code 0 when it would load, 1 when it would be refused.
    """
    from keel.models.doctor import diagnose
    from keel.models.targets import read_pins

    _check_policy(policy)
    installed = read_pins(target) if target is not None else None
    result = diagnose(_resolve(model), policy=policy, target=installed, target_python=python)
    if json_output:
        print_json(result.to_dict())
    else:
        _print_checks(result)
        verdict = "would load" if result.ok else "would be refused"
        console().print(f"\n{_label(model, result.path)}: {verdict}", markup=False)
    if not result.ok:
        raise typer.Exit(1)


def _print_checks(result: Diagnosis) -> None:
    out = console()
    for check in result.checks:
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        out.print(f"{mark} {check.name}", highlight=False)
        for line in check.detail.splitlines():
            out.print(f"       {line}", markup=False, highlight=False)


@app.command()
def verify(
    model: ModelUri,
    target: Annotated[
        Path,
        typer.Option(
            "--target",
            metavar="REQUIREMENTS",
            help="The server's pinned requirements (e.g. `pip freeze` output) to build.",
            show_default=False,
        ),
    ],
    python: Annotated[
        str | None,
        typer.Option("--python", metavar="X.Y", help="The target's Python (default: this one)."),
    ] = None,
    policy: Policy = "compatible",
    json_output: JsonOutput = False,
) -> None:
    """Build the --target environment with uv (cached) and load the package there.

    Prints doctor's prediction first (nothing unpickled here), then what loading
    in the target did: loads, onnx (the ONNX twin answered), refused or error.
    Exit code 0 when it loads or falls back to ONNX, 1 when refused or failed.
    """
    from keel.models.doctor import diagnose
    from keel.models.package import read_meta
    from keel.models.targets import (
        build_environment,
        current_python,
        expected_outcome,
        read_pins,
        verify_in,
    )

    _check_policy(policy)
    root = _resolve(model)
    pins = read_pins(target)
    version = python or current_python()
    diagnosis = diagnose(root, policy=policy, target=pins, target_python=version)
    checks = {c.name: c.ok for c in diagnosis.checks}
    expected = expected_outcome(checks, read_meta(root), "onnxruntime" in pins)
    if not json_output:
        _print_checks(diagnosis)
        console().print(f"\nPredicted: {expected}. Now loading it in the target...", markup=False)
    with console(stderr=True).status(f"Building the target environment (Python {version})") as st:
        env_python = build_environment(pins, version, status=st.update)
        st.update("Loading the package in the target environment")
        result = verify_in(env_python, root, policy)
    if json_output:
        print_json(
            {
                "path": str(root),
                "target": {"requirements": str(target), "python": version},
                "prediction": diagnosis.to_dict() | {"expected": expected},
                "result": result.to_dict(),
            }
        )
    else:
        _print_result(result, expected)
    if not result.ok:
        raise typer.Exit(1)


def _print_result(result: VerifyResult, expected: str) -> None:
    out = console()
    colour = "green" if result.ok else "red"
    out.print(f"[{colour}]{result.outcome}[/{colour}] in the target (Python {result.python})")
    for line in result.message.splitlines():
        out.print(f"       {line}", markup=False, highlight=False)
    if result.predictions_match:
        out.print("       the golden sample was reproduced", highlight=False)
    if result.outcome != expected:
        out.print(
            f"Note: doctor predicted {expected}; the target did {result.outcome}.", markup=False
        )


@app.command()
def lock(model: ModelUri) -> None:
    """Print the package's exact requirements (pip install -r ready)."""
    from keel.models.environment import EnvironmentLock
    from keel.models.package import read_meta

    meta = read_meta(_resolve(model))
    env = EnvironmentLock.from_dict(meta["environment"])
    typer.echo(f"# python {env.python} ({env.implementation}, {env.platform})")
    typer.echo(env.requirements_txt(), nl=False)


@app.command("pack")
def pack_package(
    directory: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="The package directory to pack.", show_default=False),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Where to write the archive. Default: DIR.keel, beside the directory.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
) -> None:
    """Pack a package directory into one archive file, after checking its integrity.

    The same package always packs to the same bytes. keel.models.load and the
    other `keel models` commands read the archive as they read the directory.
    """
    import zipfile

    from keel.models.archive import pack
    from keel.models.package import sha256_file

    archive = pack(directory, output, overwrite=force)
    with zipfile.ZipFile(archive) as zf:
        count = len(zf.infolist())
    size = archive.stat().st_size
    typer.echo(
        f"Packed {directory} into {archive} ({count} files, {size:,} bytes, "
        f"sha256 {sha256_file(archive)})."
    )
