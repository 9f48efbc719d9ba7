"""The ``keel`` command line on real SQLite files (``tracking`` fixture: a fresh tmp_path)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import keel
from cli_runner import fails, ok, runner
from keel.cli.main import app
from keel.entities import Dataset, Metric

ROOT = Path(__file__).resolve().parent.parent
CLI_DOC = ROOT / "docs" / "cli.md"


@pytest.fixture
def client(tracking: Path) -> keel.Client:
    """A client on ./keel.db, the database the CLI uses by default in tmp_path."""
    return keel.Client(str(tracking / "keel.db"))


@pytest.fixture
def seeded(client: keel.Client) -> dict[str, str]:
    """Experiment "churn" with three finished runs and one in "other"; returns run ids."""
    exp = client.create_experiment("churn")
    ids: dict[str, str] = {}
    for name, acc, model in (("rf", 0.91, "rf"), ("lr", 0.85, "lr"), ("bad", 0.2, "lr")):
        run = client.create_run(exp, run_name=name)
        rid = run.info.run_id
        client.log_batch(
            rid,
            metrics=[Metric("acc", acc, 0, 0), Metric("loss", 1 - acc, 0, 0)],
        )
        client.log_param(rid, "model", model)
        client.set_terminated(rid)
        ids[name] = rid
    client.log_metric(ids["bad"], "weird", float("nan"))
    other = client.create_experiment("other")
    ids["other"] = client.create_run(other, run_name="elsewhere").info.run_id
    return ids


def test_version() -> None:
    assert ok("--version").strip() == f"keel {keel.__version__}"


def test_help_lists_every_command() -> None:
    out = ok("--help")
    for command in ("experiments", "runs", "db", "demo"):
        assert command in out


def test_experiments_round_trip(tracking: Path) -> None:
    exp_id = ok("experiments", "create", "churn", "--tag", "team=risk", "--tag", "x=a=b").strip()
    assert exp_id.isdigit()
    listed = json.loads(ok("experiments", "list", "--json"))
    churn = next(e for e in listed if e["name"] == "churn")
    assert churn == churn | {"experiment_id": exp_id, "lifecycle_stage": "active"}
    assert churn["tags"] == {"team": "risk", "x": "a=b"}
    assert "churn" in ok("experiments", "list")

    assert "Deleted experiment 'churn'" in ok("experiments", "delete", "churn")
    assert "churn" not in ok("experiments", "list")
    deleted = json.loads(ok("experiments", "list", "--deleted", "--json"))
    assert [e["name"] for e in deleted] == ["churn"]
    assert {e["name"] for e in json.loads(ok("experiments", "list", "--all", "--json"))} == {
        "Default",
        "churn",
    }

    ok("experiments", "restore", exp_id)  # by id this time
    assert "churn" in ok("experiments", "list")


def test_experiments_list_filter_and_order(tracking: Path) -> None:
    for name in ("b-exp", "a-exp", "c-other"):
        ok("experiments", "create", name)
    listed = json.loads(
        ok("experiments", "list", "--filter", "name LIKE '%-exp'", "--order-by", "name", "--json")
    )
    assert [e["name"] for e in listed] == ["a-exp", "b-exp"]
    one = json.loads(ok("experiments", "list", "--max-results", "1", "--json"))
    assert len(one) == 1


def test_experiment_errors_are_one_line(tracking: Path) -> None:
    ok("experiments", "create", "churn")
    err = fails("experiments", "create", "churn")
    assert err.strip() == "Error: Experiment 'churn' already exists."
    assert "KEY=VALUE" in fails("experiments", "create", "x", "--tag", "novalue")
    assert "Experiment 'nope' does not exist" in fails("experiments", "delete", "nope")
    assert "at most one of --all and --deleted" in fails(
        "experiments", "list", "--all", "--deleted"
    )


def test_runs_list_filter_order_and_json(seeded: dict[str, str]) -> None:
    out = ok(
        "runs", "list", "-e", "churn", "--filter", "metrics.acc > 0.5", "--order-by", "metrics.acc"
    )
    assert out.index(seeded["lr"]) < out.index(seeded["rf"])
    assert seeded["bad"] not in out
    assert "acc" in out and "0.91" in out and "FINISHED" in out

    runs = json.loads(
        ok("runs", "list", "--experiment", "churn", "--order-by", "metrics.acc DESC", "--json")
    )
    assert [r["info"]["run_id"] for r in runs] == [seeded["rf"], seeded["lr"], seeded["bad"]]
    first = runs[0]
    assert set(first) == {"info", "params", "metrics", "tags", "inputs"}
    assert first["metrics"]["acc"] == 0.91
    assert first["params"] == {"model": "rf"}
    assert first["info"]["status"] == "FINISHED"
    # NaN is not valid JSON: it is written as a string (documented in docs/cli.md).
    assert runs[2]["metrics"]["weird"] == "NaN"

    assert len(json.loads(ok("runs", "list", "-e", "churn", "--max-results", "2", "--json"))) == 2


def test_runs_list_defaults_to_every_active_experiment(
    seeded: dict[str, str], client: keel.Client
) -> None:
    ids = {r["info"]["run_id"] for r in json.loads(ok("runs", "list", "--json"))}
    assert ids == set(seeded.values())
    other = client.get_experiment_by_name("other")
    assert other is not None
    client.delete_experiment(other.experiment_id)
    ids = {r["info"]["run_id"] for r in json.loads(ok("runs", "list", "--json"))}
    assert seeded["other"] not in ids
    # Several experiments in one table get an experiment column.
    assert "exp" in ok("runs", "list", "-e", "churn", "-e", "other", "--all")


def test_tracking_uri_on_the_root_or_the_subcommand(tracking: Path) -> None:
    elsewhere = str(tracking / "elsewhere.db")
    ok("experiments", "create", "far", "--tracking-uri", elsewhere)
    assert "far" in ok("--tracking-uri", elsewhere, "experiments", "list")
    assert "far" in ok("experiments", "list", "--tracking-uri", elsewhere)
    assert "far" not in ok("experiments", "list")  # ./keel.db is another database


def test_tracking_uri_from_the_environment(tracking: Path) -> None:
    db = str(tracking / "env.db")
    result = runner.invoke(
        app, ["experiments", "create", "from-env"], env={"KEEL_TRACKING_URI": db}
    )
    assert result.exit_code == 0, result.output
    exps = keel.Client(db).search_experiments()
    assert "from-env" in [e.name for e in exps]


def test_runs_show(client: keel.Client, seeded: dict[str, str], tracking: Path) -> None:
    rid = seeded["rf"]
    client.log_input(rid, Dataset("iris", "abc123def4567890", source="s3://x"), context="training")
    (tracking / "model.txt").write_text("weights")
    client.log_artifact(rid, tracking / "model.txt")
    client.set_tag(rid, "team", "risk")
    client.set_tag(rid, "note", "[red]not markup[/red]")

    out = ok("runs", "show", rid)
    assert "[red]not markup[/red]" in out
    for text in (rid, "churn", "FINISHED", "model", "rf", "acc", "0.91", "team", "risk"):
        assert text in out
    assert "iris" in out and "abc123def456" in out and "training" in out
    assert "model.txt" in out

    data = json.loads(ok("runs", "show", rid, "--json"))
    assert data["info"]["run_id"] == rid
    assert data["tags"]["team"] == "risk"
    assert data["inputs"][0]["dataset"]["digest"] == "abc123def4567890"
    assert data["inputs"][0]["tags"] == {"mlflow.data.context": "training"}
    assert data["artifacts"] == [{"path": "model.txt", "is_dir": False, "file_size": 7}]

    assert "Run 'nope' does not exist" in fails("runs", "show", "nope")


def test_runs_delete_and_restore(seeded: dict[str, str]) -> None:
    rid = seeded["lr"]
    assert f"keel runs restore {rid}" in ok("runs", "delete", rid)
    assert rid not in ok("runs", "list", "-e", "churn")
    deleted = json.loads(ok("runs", "list", "-e", "churn", "--deleted", "--json"))
    assert [r["info"]["run_id"] for r in deleted] == [rid]
    assert "(deleted)" in ok("runs", "list", "-e", "churn", "--all")
    ok("runs", "restore", rid)
    assert rid in ok("runs", "list", "-e", "churn")


def test_bad_filter_names_the_position(seeded: dict[str, str]) -> None:
    err = fails("runs", "list", "--filter", "metrics.acc >> 0.5")
    assert err.count("\n") == 1  # one line
    assert err.startswith("Error: Invalid filter")
    assert "position 13" in err
    assert "position" in fails("runs", "list", "--order-by", "metrics.acc DESCENDING")
    assert "position" in fails("experiments", "list", "--filter", "name = ")


def test_unknown_experiment(tracking: Path) -> None:
    err = fails("runs", "list", "--experiment", "nope")
    assert err.startswith("Error: Experiment 'nope' does not exist")
    assert "keel experiments list" in err


def test_bad_database_is_one_line(tracking: Path) -> None:
    (tracking / "junk.db").write_text("not a database")
    err = fails("runs", "list", "--tracking-uri", str(tracking / "junk.db"))
    assert err.startswith("Error: Cannot open the tracking database") and err.count("\n") == 1
    missing_dir = str(tracking / "no" / "such" / "keel.db")
    assert "does not exist" in fails("runs", "list", "--tracking-uri", missing_dir)


def test_db_upgrade_and_current(tracking: Path) -> None:
    db = str(tracking / "fresh.db")
    from keel.store.sql.migrate import head_revision

    head = head_revision()
    assert "No database at" in fails("db", "current", db)
    assert ok("db", "upgrade", db).strip().endswith(f"empty -> {head}")
    assert "already at head" in ok("db", "upgrade", db)
    assert ok("db", "current", db).strip() == f"{head} (head)"
    # The database works for tracking afterwards, and --tracking-uri names it too.
    assert keel.Client(db).get_experiment("0").name == "Default"
    assert ok("db", "current", "--tracking-uri", db).startswith(head)


def _keel_executable() -> str:
    sibling = Path(sys.executable).with_name("keel")
    found = str(sibling) if sibling.exists() else shutil.which("keel")
    if found is None:
        pytest.skip("the keel console script is not installed")
    return found


def test_console_script_in_a_subprocess(tmp_path: Path) -> None:
    exe = _keel_executable()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "MLFLOW_"))}
    env["KEEL_TRACKING_URI"] = str(tmp_path / "sub.db")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    version = run("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"keel {keel.__version__}")
    created = run("experiments", "create", "sub")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().isdigit()
    assert "sub" in run("experiments", "list").stdout
    bad = run("runs", "list", "--filter", "metrics.acc >> 1")
    assert bad.returncode == 2
    assert "position 13" in bad.stderr and "Traceback" not in bad.stderr
    assert bad.stdout == ""
    usage = run("runs", "list", "--no-such-option")
    assert usage.returncode == 2 and "No such option" in usage.stderr
    assert (tmp_path / "sub.db").exists() and not (tmp_path / "keel.db").exists()


# -- docs/cli.md stays in step with --help -------------------------------------

HELP_MARKER = re.compile(r"<!-- help: (?P<cmd>keel[a-z ]*?) -->\n```text\n(?P<body>.*?)```", re.S)


def _leaf_commands() -> list[str]:
    """Every command the app has, found by walking it: a new one cannot go undocumented."""
    import typer

    def walk(cmd: object, path: str) -> list[str]:
        subcommands: dict[str, object] | None = getattr(cmd, "commands", None)
        if subcommands:
            return [c for name, sub in subcommands.items() for c in walk(sub, f"{path} {name}")]
        return [path]

    return ["keel", *walk(typer.main.get_command(app), "keel")]


COMMANDS = _leaf_commands()


def help_text(command: str) -> str:
    """``command --help`` as click formats it in an 80-column terminal (78 wide)."""
    args = command.split()[1:]
    result = CliRunner().invoke(app, [*args, "--help"], prog_name="keel", terminal_width=78)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_reference_matches_help() -> None:
    """HOW TO FIX: KEEL_UPDATE_DOCS=1 pytest tests/test_cli.py -k cli_reference"""
    doc = CLI_DOC.read_text()
    documented = {m["cmd"]: m["body"] for m in HELP_MARKER.finditer(doc)}
    assert sorted(documented) == sorted(COMMANDS), "docs/cli.md: one help block per command"
    if os.environ.get("KEEL_UPDATE_DOCS"):
        updated = HELP_MARKER.sub(
            lambda m: f"<!-- help: {m['cmd']} -->\n```text\n{help_text(m['cmd'])}```", doc
        )
        CLI_DOC.write_text(updated)
        return
    for command in COMMANDS:
        assert documented[command] == help_text(command), (
            f"docs/cli.md is out of date for `{command}`. "
            "Fix: KEEL_UPDATE_DOCS=1 pytest tests/test_cli.py -k cli_reference"
        )
