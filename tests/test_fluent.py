"""The fluent API end to end on a real SQLite file (``tracking`` fixture)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import keel
from keel.entities import RunStatus
from keel.errors import InvalidParameter, InvalidState, NotFound
from keel.tracking.writer import BackgroundWriteError


def test_example_from_the_issue(tracking: Path) -> None:
    keel.set_experiment("churn")
    (tracking / "report.txt").write_text("all good")
    with keel.start_run(run_name="rf-baseline", tags={"team": "risk"}) as run:
        keel.log_params({"n_estimators": 100, "max_depth": 10})
        for step, loss in enumerate([0.9, 0.5, 0.3]):
            keel.log_metric("loss", loss, step=step)
        keel.log_metrics({"accuracy": 0.91, "f1": 0.88})
        keel.set_tag("stage", "baseline")
        keel.log_artifact(str(tracking / "report.txt"))
        keel.log_dict({"a": 1}, "config.json")
        keel.log_text("# notes", "notes.md")
        with keel.start_run(run_name="fold-1", nested=True) as child:
            keel.log_metric("accuracy", 0.95)
    df = keel.search_runs(
        experiment_names=["churn"],
        filter_string="metrics.accuracy > 0.9 and params.max_depth = '10'",
        order_by=["metrics.accuracy DESC"],
    )
    assert list(df["run_id"]) == [run.info.run_id]
    assert df.loc[0, "metrics.accuracy"] == 0.91
    assert df.loc[0, "params.n_estimators"] == "100"
    assert df.loc[0, "tags.team"] == "risk"
    assert str(df["start_time"].dtype).startswith("datetime64")
    got = keel.get_run(run.info.run_id)
    assert got.info.status is RunStatus.FINISHED
    assert got.info.end_time is not None
    assert got.data.metrics["loss"] == 0.3
    c = keel.Client()
    assert [m.value for m in c.get_metric_history(run.info.run_id, "loss")] == [0.9, 0.5, 0.3]
    assert {f.path for f in c.list_artifacts(run.info.run_id)} == {
        "report.txt",
        "config.json",
        "notes.md",
    }
    child_run = keel.get_run(child.info.run_id)
    assert child_run.data.tags["mlflow.parentRunId"] == run.info.run_id
    children = keel.search_runs(
        filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'", output_format="list"
    )
    assert [r.info.run_name for r in children] == ["fold-1"]


def test_status_on_exception_and_interrupt(tracking: Path) -> None:
    with pytest.raises(ValueError), keel.start_run() as failed:
        raise ValueError("boom")
    assert keel.get_run(failed.info.run_id).info.status is RunStatus.FAILED
    with pytest.raises(KeyboardInterrupt), keel.start_run() as killed:
        raise KeyboardInterrupt
    assert keel.get_run(killed.info.run_id).info.status is RunStatus.KILLED
    assert keel.active_run() is None


def test_one_active_run_unless_nested(tracking: Path) -> None:
    with keel.start_run() as outer:
        with pytest.raises(InvalidState, match="nested=True"):
            keel.start_run()
        assert keel.active_run() is not None
        assert keel.active_run().info.run_id == outer.info.run_id  # type: ignore[union-attr]
    assert keel.active_run() is None
    assert keel.last_active_run().info.run_id == outer.info.run_id  # type: ignore[union-attr]


def test_ending_parent_ends_open_children(tracking: Path) -> None:
    parent = keel.start_run()
    child = keel.start_run(nested=True)
    keel.end_run()  # ends the child only
    assert keel.active_run().info.run_id == parent.info.run_id  # type: ignore[union-attr]
    grandchild = keel.start_run(nested=True)
    parent.__exit__(None, None, None)
    assert keel.active_run() is None
    for r in (child, grandchild, parent):
        assert keel.get_run(r.info.run_id).info.status is RunStatus.FINISHED


def test_resume_run(tracking: Path) -> None:
    with keel.start_run() as run:
        keel.log_param("a", 1)
    with keel.start_run(run_id=run.info.run_id):
        assert keel.get_run(run.info.run_id).info.status is RunStatus.RUNNING
        keel.log_metric("m", 2.0)
    resumed = keel.get_run(run.info.run_id)
    assert resumed.data.params == {"a": "1"} and resumed.data.metrics == {"m": 2.0}
    assert resumed.info.status is RunStatus.FINISHED


def test_logging_without_active_run_starts_one(tracking: Path) -> None:
    keel.log_metric("m", 1.0)
    run = keel.active_run()
    assert run is not None
    keel.end_run()
    assert keel.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_set_experiment(tracking: Path) -> None:
    exp = keel.set_experiment("new-exp")
    assert keel.get_experiment_by_name("new-exp") == exp
    assert keel.set_experiment("new-exp").experiment_id == exp.experiment_id
    with keel.start_run() as run:
        pass
    assert run.info.experiment_id == exp.experiment_id
    keel.delete_experiment(exp.experiment_id)
    with pytest.raises(InvalidState, match="restore"):
        keel.set_experiment("new-exp")
    keel.restore_experiment(exp.experiment_id)
    assert keel.set_experiment(experiment_id=exp.experiment_id).name == "new-exp"
    with pytest.raises(InvalidParameter):
        keel.set_experiment()


def test_create_and_search_experiments(tracking: Path) -> None:
    exp_id = keel.create_experiment(
        "e1", artifact_location=str(tracking / "elsewhere"), tags={"k": 1}
    )
    exp = keel.get_experiment(exp_id)
    assert exp.tags == {"k": "1"}
    assert exp.artifact_location == str(tracking / "elsewhere")
    names = [e.name for e in keel.search_experiments(order_by=["name"])]
    assert names == ["Default", "e1"]
    assert [e.name for e in keel.search_experiments(filter_string="tags.k = '1'")] == ["e1"]


def test_system_tags(tracking: Path) -> None:
    with keel.start_run() as run:
        pass
    tags = keel.get_run(run.info.run_id).data.tags
    assert tags["mlflow.user"]
    assert tags["keel.python.version"] == ".".join(map(str, sys.version_info[:3]))
    assert tags["mlflow.source.type"] == "LOCAL"


def test_system_tags_record_git_commit_and_dirty_flag(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    script = repo / "train.py"
    script.write_text(
        textwrap.dedent("""
        import keel
        with keel.start_run() as run:
            pass
        print(run.info.run_id)
    """)
    )

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", "train.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    commit = git("rev-parse", "HEAD")
    env = {"KEEL_TRACKING_URI": str(tmp_path / "keel.db"), "PATH": "/usr/bin:/bin"}

    def run_script() -> dict[str, str]:
        out = subprocess.run(
            [sys.executable, str(script)], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        c = keel.Client(str(tmp_path / "keel.db"))
        return c.get_run(out).data.tags

    clean = run_script()
    assert clean["mlflow.source.git.commit"] == commit
    assert clean["keel.source.git.dirty"] == "false"
    assert clean["mlflow.source.name"] == str(script.resolve())
    script.write_text(script.read_text() + "\n# edited\n")
    assert run_script()["keel.source.git.dirty"] == "true"


def test_uncaught_exception_marks_run_failed_and_keeps_metrics(tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text(
        textwrap.dedent("""
        import keel
        run = keel.start_run()
        print(run.info.run_id, flush=True)
        for i in range(3000):
            keel.log_metric("loss", 1.0 / (i + 1), step=i)
        raise RuntimeError("training diverged")
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        env={"KEEL_TRACKING_URI": str(tmp_path / "keel.db"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "training diverged" in proc.stderr
    run_id = proc.stdout.split()[0]
    c = keel.Client(str(tmp_path / "keel.db"))
    run = c.get_run(run_id)
    assert run.info.status is RunStatus.FAILED
    assert len(c.get_metric_history(run_id, "loss")) == 3000


def test_env_var_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlflow.db"))
    assert keel.Client().tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("KEEL_TRACKING_URI", str(tmp_path / "keel.db"))
    assert keel.Client().tracking_uri == f"sqlite:///{tmp_path / 'keel.db'}"


def test_default_location_is_working_directory(tracking: Path) -> None:
    keel.set_tracking_uri(None)
    assert keel.get_tracking_uri() == f"sqlite:///{tracking / 'keel.db'}"
    with keel.start_run() as run:
        keel.log_text("x", "a.txt")
    assert run.info.artifact_uri.startswith(str(tracking / "keel-artifacts"))
    assert (tracking / "keel-artifacts" / "0" / run.info.run_id / "artifacts" / "a.txt").exists()


def test_metric_errors_are_immediate(tracking: Path) -> None:
    with keel.start_run():
        with pytest.raises(InvalidParameter, match="must be numbers"):
            keel.log_metric("m", "high")  # type: ignore[arg-type]
        with pytest.raises(InvalidParameter, match="relative path"):
            keel.log_metric("../m", 1.0)
        keel.log_metric("np", __import__("numpy").float32(0.5))
        with pytest.raises(InvalidParameter, match="immutable"):
            keel.log_param("p", 1)
            keel.log_param("p", 2)


def test_background_write_error_surfaces(tracking: Path) -> None:
    run = keel.start_run()
    keel.Client().store.delete_run(run.info.run_id)  # behind the fluent API's back
    keel.log_metric("m", 1.0)
    with pytest.raises(BackgroundWriteError, match="deleted"):
        keel.flush()
    keel.Client().restore_run(run.info.run_id)
    keel.end_run()


def test_synchronous_metric(tracking: Path) -> None:
    with keel.start_run() as run:
        keel.log_metric("m", 3.0, synchronous=True)
        store = keel.Client().store
        assert store.get_run(run.info.run_id).data.metrics == {"m": 3.0}


def test_search_runs_list_and_all_experiments(tracking: Path) -> None:
    keel.set_experiment("a")
    with keel.start_run():
        keel.log_metric("x", 1)
    keel.set_experiment("b")
    with keel.start_run():
        keel.log_metric("x", 2)
    assert len(keel.search_runs()) == 1  # active experiment only
    runs = keel.search_runs(
        search_all_experiments=True, order_by=["metrics.x"], output_format="list"
    )
    assert [r.data.metrics["x"] for r in runs] == [1.0, 2.0]
    assert len(keel.search_runs(experiment_names=["a", "missing"])) == 1
    assert keel.search_runs(experiment_names=["missing"]).empty
    with pytest.raises(InvalidParameter, match="output_format"):
        keel.search_runs(output_format="csv")


def test_delete_restore_run(tracking: Path) -> None:
    with keel.start_run() as run:
        pass
    keel.delete_run(run.info.run_id)
    assert keel.search_runs().empty
    keel.restore_run(run.info.run_id)
    assert len(keel.search_runs()) == 1
    with pytest.raises(NotFound):
        keel.delete_run("f" * 32)


def test_artifact_helpers(tracking: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    src = tracking / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    with keel.start_run() as run:
        keel.log_artifacts(str(src), "data")
        keel.log_dict({"lr": 0.1, "layers": [1, 2]}, "cfg/params.yaml")
        keel.log_dict({"nan": math.nan}, "cfg/params.json")
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3])
        keel.log_figure(fig, "plots/line.png")
        plt.close(fig)
        keel.log_image(np.zeros((8, 8, 3), dtype=np.uint8), "img/black.png")
        keel.log_image(np.full((4, 4), 0.5), "img/gray.png")
        with pytest.raises(InvalidParameter, match="shape"):
            keel.log_image(np.zeros((2, 2, 2)), "img/bad.png")
        with pytest.raises(InvalidParameter, match="relative"):
            keel.log_text("x", "../../escape.txt")
        uri = keel.get_artifact_uri("plots/line.png")
    root = Path(run.info.artifact_uri)
    assert uri == f"{run.info.artifact_uri}/plots/line.png"
    assert (root / "data" / "sub" / "b.txt").read_text() == "b"
    assert "lr: 0.1" in (root / "cfg" / "params.yaml").read_text()
    assert json.loads((root / "cfg" / "params.json").read_text().replace("NaN", "null")) == {
        "nan": None
    }
    assert (root / "plots" / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (root / "img" / "gray.png").stat().st_size > 0
    c = keel.Client()
    assert [f.path for f in c.list_artifacts(run.info.run_id, "data")] == [
        "data/a.txt",
        "data/sub",
    ]
    local = c.download_artifacts(run.info.run_id, "data", tracking / "dl")
    assert (Path(local) / "sub" / "b.txt").read_text() == "b"
    assert not (tracking.parent / "escape.txt").exists()


def test_client_log_batch_splits(tracking: Path) -> None:
    c = keel.Client()
    run = c.create_run("0")
    c.log_batch(
        run.info.run_id,
        metrics=[keel.Metric("m", float(i), 0, i) for i in range(2500)],
        params=[keel.Param(f"p{i}", str(i)) for i in range(150)],
    )
    assert len(c.get_metric_history(run.info.run_id, "m")) == 2500
    page = c.get_metric_history(run.info.run_id, "m", max_results=1000)
    assert len(page) == 1000 and page.next_page_token
    assert len(c.get_run(run.info.run_id).data.params) == 150


def test_log_input(tracking: Path) -> None:
    with keel.start_run() as run:
        keel.log_input(
            keel.Dataset("train", "d1g3st", source="/data/train.csv"), context="training"
        )
    inputs = keel.get_run(run.info.run_id).inputs
    assert inputs[0].dataset.digest == "d1g3st"
    assert inputs[0].context == "training"
    with pytest.raises(InvalidParameter, match="name"), keel.start_run():
        keel.log_input(object())


def test_fluent_api_on_every_store(store_uri: str, tmp_path: Path) -> None:
    keel.set_tracking_uri(store_uri)
    keel.set_experiment("everywhere")
    with keel.start_run(run_name="parent") as parent:
        keel.log_params({"model": "rf"})
        for step in range(50):
            keel.log_metric("loss", 1 / (step + 1), step=step)
        with keel.start_run(run_name="child", nested=True):
            keel.log_metric("acc", 0.9)
    runs = keel.search_runs(
        filter_string="params.model = 'rf' OR metrics.acc > 0.5",
        order_by=["run_name"],
        output_format="list",
    )
    assert [r.info.run_name for r in runs] == ["child", "parent"]
    history = keel.Client().get_metric_history(parent.info.run_id, "loss")
    assert [m.step for m in history] == list(range(50))


def _child_logs(offset: int) -> None:
    for i in range(500):
        keel.log_metric("from_children", float(i), step=offset + i)


# Python 3.12+ warns about fork() while the metric writer's thread is alive;
# the child never touches that thread's state (see writer._after_fork_in_child).
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_forked_workers_log_into_the_parent_run(tracking: Path) -> None:
    import multiprocessing as mp

    with keel.start_run() as run:
        keel.log_metric("from_parent", 1.0)
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=_child_logs, args=(k * 1000,)) for k in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
    history = keel.Client().get_metric_history(run.info.run_id, "from_children")
    assert len(history) == 1500
    assert keel.get_run(run.info.run_id).data.metrics["from_parent"] == 1.0


def test_log_metric_to_an_explicit_run(tracking: Path) -> None:
    c = keel.Client()
    run = c.create_run("0")
    keel.log_metric("m", 1.0, 3, False, 1234, run.info.run_id)  # MLflow's positional order
    keel.log_metrics({"a": 1.0, "b": 2.0}, step=1, run_id=run.info.run_id)
    assert keel.active_run() is None
    history = c.get_metric_history(run.info.run_id, "m")
    assert [(m.step, m.timestamp) for m in history] == [(3, 1234)]
    assert c.get_run(run.info.run_id).data.metrics == {"m": 1.0, "a": 1.0, "b": 2.0}
