"""``keel demo``: run :func:`keel.demo.run_demo` and explain what it left behind."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from keel.cli import TrackingUri
from keel.cli.output import add_row, console, format_number
from keel.demo import SHIFTED_COLUMNS

SHIFTED_COLUMN_NAMES = sorted(SHIFTED_COLUMNS)

if TYPE_CHECKING:
    from rich.console import Console

    from keel.demo import DemoResult, Verification

_SHOWN_METRICS = ("accuracy", "f1", "roc_auc", "cv_accuracy_mean")


def demo(
    tracking_uri: TrackingUri = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Train 3 models instead of 8 (a few seconds).")
    ] = False,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify",
            help="Skip `keel models verify` of the best model (building its environment "
            "with uv takes seconds when cached, longer on first use).",
        ),
    ] = False,
) -> None:
    """Train and track a few models: a tour of Keel.

    Trains a small grid of scikit-learn models on a data set bundled with
    scikit-learn (no download) and tracks them in experiment "keel-demo" in the
    tracking URI (./keel.db and ./keel-artifacts by default). The best model is
    saved as a package with an ONNX twin, checked with `keel models doctor`,
    and verified with `keel models verify` against its own requirements.txt: a
    fresh uv environment with only the locked packages plus Keel (cached in
    $KEEL_ENV_CACHE, else ~/.cache/keel/envs). If that environment cannot be
    built, the demo says why and carries on.
    """
    from keel.demo import run_demo

    result = run_demo(tracking_uri, quick=quick, verify=not no_verify, console=console(stderr=True))
    render_summary(result, console())


def render_summary(result: DemoResult, out: Console) -> None:
    """The best run, a table of all runs, where they are stored and what to try next."""
    best = result.best_run
    out.print(
        f"[bold]Trained {len(result.runs)} models in {result.seconds:.1f}s.[/bold] "
        f"Best: [bold]{escape(best.info.run_name)}[/bold] "
        f"(accuracy {format_number(best.data.metrics.get('accuracy'))}, "
        f"run {best.info.run_id})",
        soft_wrap=True,
    )
    table = Table()
    table.add_column("run id", no_wrap=True)
    table.add_column("name", no_wrap=True)
    for key in _SHOWN_METRICS:
        table.add_column(key, justify="right")
    for run in result.runs:
        marker = " *" if run.info.run_id == best.info.run_id else ""
        row = [run.info.run_id, run.info.run_name + marker]
        row += [format_number(run.data.metrics.get(key)) for key in _SHOWN_METRICS]
        add_row(table, *row)
    out.print(table)
    where = str(result.database) if result.database is not None else result.tracking_uri
    uri_flag = "" if _is_default(result) else f" --tracking-uri {where}"
    # Under `uv run` the keel script lives in the project's .venv, not on PATH.
    keel_cmd = "python3 -m uv run keel" if os.environ.get("UV_RUN_RECURSION_DEPTH") else "keel"
    # The package's own requirements.txt: the lock the demo verifies against.
    target = result.package / "requirements.txt" if result.package else None
    verify_cmd = f"{keel_cmd} models verify {result.model_uri} --target {target}{uri_flag}"
    # Paths and commands are printed verbatim: no rich markup inside them.
    for line in (
        f"Database:  {where}",
        f"Artifacts: {best.info.artifact_uri} ({', '.join(result.artifacts)})",
        *_package_lines(result),
        *_registry_lines(result),
        *_data_lines(result),
        *_serving_lines(result),
        *_verify_lines(result.verification, verify_cmd if target else None),
        "",
        "Next:",
        f"  {keel_cmd} runs list --experiment keel-demo "
        f'--order-by "metrics.accuracy DESC"{uri_flag}',
        f"  {keel_cmd} runs show {best.info.run_id}{uri_flag}",
        *(
            [
                f"  {keel_cmd} serve {result.serving.model_uri}{uri_flag}",
                f"  {keel_cmd} monitor report {result.serving.model_uri} --log-dir "
                f"{result.serving.log_dir}{uri_flag}",
            ]
            if result.serving is not None
            else []
        ),
        f"  {keel_cmd} runs list --filter \"params.model = 'random_forest'\"{uri_flag}",
        *(
            [
                f"  {keel_cmd} models doctor {result.model_uri}{uri_flag}",
                f"  {keel_cmd} models verify {result.model_uri} --target "
                f"<your server's pip freeze>{uri_flag}",
            ]
            if result.model_uri
            else []
        ),
        "",
        "See the runs, models, datasets and reports in the web UI (then open "
        "http://127.0.0.1:5000/):",
        f"  {keel_cmd} ui" + ("" if _is_default(result) else f" --backend-store-uri {where}"),
    ):
        out.print(line, markup=False, soft_wrap=True)


def _package_lines(result: DemoResult) -> list[str]:
    """Where the best model's package is and what `keel models doctor` says of it."""
    if not result.model_uri or result.diagnosis is None:
        return []
    checks = ", ".join(f"{c.name} {'ok' if c.ok else 'FAILED'}" for c in result.diagnosis.checks)
    verdict = "would load here" if result.diagnosis.ok else "would be refused here"
    return [f"Model:     {result.model_uri} ({verdict}: {checks})"]


def _registry_lines(result: DemoResult) -> list[str]:
    """The registered version, the gates it passed, and the reload by alias."""
    reg = result.registration
    if reg is None:
        return []
    gates = ", ".join(r.gate for r in reg.report.results)
    indent = " " * len("Registry:  ")
    return [
        f"Registry:  {reg.name} version {reg.version}, promoted to @{reg.report.alias} "
        f"(gates {reg.report.status}: {gates})",
        f"{indent}loaded back from {reg.alias_uri}: test accuracy "
        f"{format_number(reg.reloaded_accuracy)}",
    ]


def _data_lines(result: DemoResult) -> list[str | Text]:
    """The dataset logged, the fresh batch validated, the shifted batch's drift report."""
    checks = result.data_checks
    if checks is None:
        return []
    indent = " " * len("Data:      ")
    fresh, shifted, drift = checks.fresh, checks.shifted, checks.drift
    counts = fresh.summary
    report = checks.drift_html or f"{checks.artifact_uri}/drift-shifted.html"
    first = result.runs[0].inputs[0].dataset if result.runs and result.runs[0].inputs else None
    lines: list[str | Text] = []
    if first is not None:
        lines.append(
            f"Data:      {first.name} (digest {first.digest[:12]}…) logged as every run's "
            "training input; its profile is saved in the model package"
        )
    lines += [
        Text.assemble(
            "Validate:  fresh batch ",
            ("passed", "green") if fresh.passed else ("FAILED", "red"),
            f" {counts['passed']} of {counts['evaluated']} expectations learned from the "
            f"training split ({fresh.rows} rows); the shifted batch "
            + ("failed as it should" if not shifted.passed else "passed (unexpected)")
            + f": {', '.join(sorted({r.column or '-' for r in shifted.failures}))}",
        ),
        Text.assemble(
            "Drift:     shifted batch: ",
            (drift.summary(), "red" if drift.drifted else "green"),
        ),
        f"{indent}report: {report}",
    ]
    return lines


def _serving_lines(result: DemoResult) -> list[str | Text]:
    """The production model served on loopback, its traffic, and what monitoring saw."""
    serving = result.serving
    if serving is None:
        return []
    indent = " " * len("Serve:     ")
    report = serving.report
    drift = report.input_drift
    drifted = ", ".join(serving.named(drift.drifted_columns)) if drift is not None else ""
    verdict = (
        f"input drift in {len(drift.drifted_columns)} of "
        f"{len([c for c in drift.columns if not c.skipped])} columns: {drifted}"
        if drift is not None and drift.drifted
        else "no input drift"
    )
    lines: list[str | Text] = [
        f"Serve:     {serving.model_uri} on {serving.url}: {serving.normal_rows} normal rows, "
        f"then {serving.shifted_rows} with {', '.join(SHIFTED_COLUMN_NAMES)} scaled",
        Text.assemble(f"{indent}monitoring: ", (verdict, "red" if report.drifted else "green")),
    ]
    if report.performance:
        accuracy = report.performance.get("accuracy")
        lines.append(
            f"{indent}realised accuracy {format_number(accuracy)} on "
            f"{report.performance['labelled_rows']} rows labelled through /feedback"
        )
    lines.append(f"{indent}report: {serving.html}")
    return lines


_OUTCOMES = {
    ("loads", True): "loads and matches its golden sample",
    ("loads", None): "loads (no golden sample to compare)",
    ("onnx", True): "falls back to its ONNX twin, which matches the golden sample",
    ("onnx", None): "falls back to its ONNX twin",
    ("refused", None): "refused",
    ("error", None): "failed",
}


def _verify_lines(verification: Verification | None, command: str | None) -> list[str | Text]:
    """What `keel models verify` against the package's own lock did, and how to rerun it."""
    if command is None:
        return []
    indent = " " * len("Verify:    ")
    if verification is None:
        return [f"Verify:    skipped (--no-verify); to run it: {command}"]
    result = verification.result
    if result is None:
        return [
            Text.assemble("Verify:    ", ("not run", "yellow"), f": {verification.reason}"),
            f"{indent}to run it later: {command}",
        ]
    outcome = _OUTCOMES.get((result.outcome, result.predictions_match), result.outcome)
    lines: list[str | Text] = [
        Text.assemble(
            "Verify:    ",
            (outcome, "green" if result.ok else "red"),
            f" in a fresh Python {result.python} environment holding only its lock plus Keel",
        )
    ]
    if not result.ok or result.outcome == "onnx":
        lines += [f"{indent}{line}" for line in result.message.splitlines()]
    pins = sorted(f"{name}=={version}" for name, version in verification.pins.items())
    shown = ", ".join(pins[:4]) + (f" and {len(pins) - 4} more" if len(pins) > 4 else "")
    built = (
        f"reused from the cache in {verification.build_seconds:.1f}s"
        if verification.cached
        else f"built with uv in {verification.build_seconds:.1f}s (cached for next time)"
    )
    return [
        *lines,
        f"{indent}target:      {verification.target} ({shown})",
        f"{indent}environment: {built}; loading took {verification.load_seconds:.1f}s",
        f"{indent}command:     {command}",
    ]


def _is_default(result: DemoResult) -> bool:
    # The follow-up commands only need --tracking-uri when the demo did not
    # write where a plain `keel` command would look.
    from keel.uris import resolve_tracking_uri

    return resolve_tracking_uri(None) == result.tracking_uri
