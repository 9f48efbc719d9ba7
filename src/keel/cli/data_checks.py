"""``keel data profile / suite / validate / drift``: the data checks, from the command line.

Inputs are data files (.csv, .tsv, .csv.gz, .parquet) read as streams; where a
profile will do (``drift``), a profile JSON written by ``keel data profile -o``
works too, so two days of traffic can be compared from their sketches alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from keel.cli.output import (
    JsonOutput,
    add_row,
    console,
    format_number,
    note,
    print_json,
    save_report,
)

if TYPE_CHECKING:
    from keel.data.profiles import Profile

EXIT_CHECK_FAILED = 1

DataFile = Annotated[
    Path,
    typer.Argument(
        metavar="PATH", help="A .csv, .tsv, .csv.gz or .parquet file.", show_default=False
    ),
]
_DATA_OR_PROFILE = (
    "a data file (.csv, .tsv, .csv.gz, .parquet) or a profile JSON from `keel data profile -o`."
)
Reference = Annotated[
    Path,
    typer.Argument(
        metavar="REFERENCE", help=f"The baseline: {_DATA_OR_PROFILE}", show_default=False
    ),
]
Current = Annotated[
    Path,
    typer.Argument(
        metavar="CURRENT", help=f"The data to check: {_DATA_OR_PROFILE}", show_default=False
    ),
]
HtmlOut = Annotated[
    Path | None,
    typer.Option("--html", help="Also write a self-contained HTML report here.", metavar="FILE"),
]
JsonOut = Annotated[
    Path | None,
    typer.Option("--json-out", help="Also write the report as JSON here.", metavar="FILE"),
]


def profile(
    path: DataFile,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Write the profile JSON (mergeable sketches) here.",
            metavar="FILE",
        ),
    ] = None,
    html: HtmlOut = None,
    as_json: JsonOutput = False,
) -> None:
    """Profile a data file: per column counts, nulls, distinct values, range, quantiles, top values.

    The file is read in batches, so its size is bounded by the disk, not memory.
    The JSON written with -o merges with other profiles and is what `keel data
    drift` accepts in place of the data.
    """
    from keel.data.profiles import profile as build

    prof = build(path)
    if output is not None:
        prof.to_json(output)
        note(f"Profile written to {output}")
    if html is not None:
        prof.to_html(html, title=f"Profile of {path.name}")
        note(f"HTML profile written to {html}")
    if as_json:
        print_json({"rows": prof.rows, "columns": {c.name: c.summary() for c in prof}})
        return
    _print_profile(prof, path)


def _print_profile(prof: Profile, path: Path) -> None:
    out = console()
    out.print(f"{prof.rows:,} rows, {len(prof.columns)} columns in {path}", markup=False)
    table = Table()
    for header in ("column", "kind", "nulls", "distinct", "min", "median", "max", "top value"):
        table.add_column(header, justify="right" if header in ("nulls", "distinct") else "left")
    for col in prof:
        s = col.summary()
        median = s.get("quantiles", {}).get("0.5")
        top = s["top"][0] if s["top"] else None
        add_row(
            table,
            col.name,
            col.kind.value,
            f"{col.nulls:,}",
            f"{col.distinct:,}",
            _shown(s.get("min")),
            _shown(median),
            _shown(s.get("max")),
            f"{top[0]} ({top[1]:,})" if top and top[1] > 1 else "-",
        )
    out.print(table)


def suite(
    references: Annotated[
        list[Path],
        typer.Argument(
            metavar="REFERENCE",
            help="One or more reference data files; several are read as separate batches, "
            "and how much they differ widens the learned tolerances.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="Where to write the suite YAML.", metavar="FILE"),
    ] = Path("suite.yaml"),
    name: Annotated[
        str | None,
        typer.Option("--name", help="The suite's name (default: the first file's stem)."),
    ] = None,
) -> None:
    """Learn a validation suite from reference data and write it as editable YAML.

    The suite expects each column's type and presence, its null rate, a range,
    quantile bands whose width is learned from the data, the set of categories,
    and a row count. Edit the YAML to tighten or loosen any of them, then check
    new data with `keel data validate`.
    """
    from keel.data.suite import suite_from

    data: Any = references[0] if len(references) == 1 else list(references)
    learned = suite_from(data, name=name or references[0].stem)
    learned.to_yaml(output)
    note(f"Suite with {len(learned.expectations)} expectations written to {output}")


def validate(
    path: DataFile,
    suite_file: Annotated[
        Path,  # required, but an option: `validate new.csv --suite suite.yaml` reads well
        typer.Option("--suite", help="The suite YAML (from `keel data suite`).", metavar="FILE"),
    ],
    html: HtmlOut = None,
    json_out: JsonOut = None,
    as_json: JsonOutput = False,
) -> None:
    """Check a data file against a suite; exit 1 when any expectation fails.

    Prints each failing expectation with what was observed, what was expected
    and example rows. Use --html for a report to share and --json-out for CI.
    """
    from keel.data.suite import load_suite

    checked = load_suite(suite_file).validate(path)
    save_report(checked, html, json_out)
    if as_json:
        print_json(checked.to_dict())
    else:
        _print_validation(checked.to_dict(), path)
    if not checked.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _print_validation(report: dict[str, Any], path: Path) -> None:
    out = console()
    counts = report["summary"]
    failed = [r for r in report["results"] if not r["passed"]]
    verdict = "[green]passed[/green]" if report["passed"] else "[red]FAILED[/red]"
    out.print(
        f"{escape(path.name)}: {verdict} — {counts['passed']} of {counts['evaluated']} "
        f"expectations met on {report['rows']:,} rows"
    )
    if not failed:
        return
    table = Table()
    for header in ("expectation", "column", "problem", "examples"):
        table.add_column(header)
    for result in failed:
        examples = result.get("examples") or []
        shown = ", ".join(f"row {e['row']}: {e['value']!r}" for e in examples[:3])
        add_row(
            table,
            result["expectation"],
            result["column"] or "-",
            result["message"],
            shown or "-",
        )
    out.print(table)


def drift(
    reference: Reference,
    current: Current,
    html: HtmlOut = None,
    json_out: JsonOut = None,
    columns: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            "-c",
            metavar="COLUMN",
            help="Compare only this column (repeat for more; includes timestamps).",
        ),
    ] = None,
    fdr: Annotated[
        float,
        typer.Option(
            metavar="RATE",
            help="False-discovery rate across all columns' tests (Benjamini–Hochberg).",
        ),
    ] = 0.01,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when the data drifted (for CI).")
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """Compare current data with a reference: which columns drifted, by which test, and why.

    Each column gets the test its type and the sample size call for; all
    p-values are corrected together, and with large samples a change must also
    be big enough to matter. Either side can be a profile JSON instead of data.
    """
    from keel.data.drift_report import drift as compare

    report = compare(
        _data_or_profile(reference), _data_or_profile(current), columns=columns, fdr=fdr
    )
    if html is not None:
        report.to_html(html, title=f"Drift: {current.name} vs {reference.name}")
        note(f"HTML report written to {html}")
    save_report(report, None, json_out)
    if as_json:
        typer.echo(report.to_json())
    else:
        _print_drift(report)
    if fail_on_drift and report.drifted:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _print_drift(report: Any) -> None:
    out = console()
    colour = "red" if report.drifted else "green"
    out.print(f"[{colour}]{report.summary()}[/{colour}]", soft_wrap=True)
    table = Table()
    for header in ("column", "verdict", "test", "size of change", "threshold", "p (adjusted)"):
        table.add_column(header)
    for c in report.columns:
        verdict = "skipped" if c.skipped else "DRIFT" if c.drifted else "ok"
        add_row(
            table,
            c.column,
            verdict,
            c.method if not c.skipped else c.reason,
            format_number(c.effect) if c.effect is not None else "-",
            format_number(c.threshold) if c.threshold is not None else "-",
            format_number(c.p_adjusted) if c.p_adjusted is not None else "-",
        )
    out.print(table)


def _data_or_profile(path: Path) -> Any:
    if path.suffix.lower() == ".json":
        from keel.data.profiles import Profile

        return Profile.from_json(path)
    return path


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def _brief(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
