"""Keel's embedded SQLite store vs MLflow's SQLAlchemy store on SQLite: same workloads, one process.

Run it (MLflow lives only in the benchmark environment, never in ``.venv``)::

    UV_PROJECT_ENVIRONMENT=.venv-bench uv run --group bench python benchmarks/tracking_vs_mlflow.py

``--quick`` runs smaller sizes (about a minute), ``--only W1,W4`` picks workloads,
``--repeat N`` sets the timed repetitions. See ``docs/benchmarks.md`` for the
figures and what they mean.

Workloads, the same code path for both systems (``sys.mod`` is ``keel`` or
``mlflow``, ``sys.client`` is ``keel.Client`` or ``mlflow.MlflowClient``):

- W1  fluent ``log_metric`` in one run, N calls; timed to the return of ``end_run``
      (Keel's durability point), the calls alone reported too.
- W2  ``client.log_batch`` of 1,000 metrics, 100 times, into one run.
- W3  fluent runs: ``start_run`` / ``log_params`` (10) / ``set_tags`` (5) / ``end_run``.
- W4  ``search_runs`` with ``metrics.acc > 0.5 and params.model = 'rf'`` ordered by
      ``metrics.acc DESC`` (about 10 % match), over 1,000 runs (logged through each
      client) and 100,000 runs (rows inserted with SQL into each system's own schema,
      see ``bulk_insert``); fluent DataFrame of all matches and one client page of 100.
- W5  ``client.get_metric_history`` of a 10,000-step metric.

Fairness: one process, one file system, a fresh SQLite file per system and
workload, each system with its own default SQLite settings, warm-up excluded,
repetitions interleaved (Keel, MLflow, Keel, ...), ``gc.collect()`` before each
timed section, MLflow telemetry off (it is network traffic, not storage).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# -- environment hygiene: defaults for both systems ------------------------------
# Anything a developer has exported (an async-logging switch, a tracking URI, a
# pool class, a flush interval) would skew one side; both run on their defaults.
for _var in list(os.environ):
    if _var.startswith(("MLFLOW_", "KEEL_")):
        del os.environ[_var]
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

SEARCH_FILTER = "metrics.acc > 0.5 and params.model = 'rf'"
SEARCH_ORDER = ["metrics.acc DESC"]
MODELS = ("rf", "gbm", "lr", "svm", "knn")  # 'rf' in 1 of 5 runs, acc > 0.5 in half: ~10 %
BASE_TIME_MS = 1_700_000_000_000

FULL = {
    "w1_calls": 10_000,
    "w2_batches": 100,
    "w2_batch_size": 1_000,
    "w3_runs": 1_000,
    "w4_sizes": (1_000, 100_000),
    "w4_api_max": 2_000,  # sizes up to this are logged through the clients, above via SQL
    "w5_steps": 10_000,
}
QUICK = {
    "w1_calls": 1_000,
    "w2_batches": 10,
    "w2_batch_size": 1_000,
    "w3_runs": 100,
    "w4_sizes": (1_000, 10_000),
    "w4_api_max": 2_000,
    "w5_steps": 2_000,
}
ALL_WORKLOADS = ("W1", "W2", "W3", "W4", "W5")


def use_pysqlite3() -> None:
    """Make ``import sqlite3`` (SQLAlchemy's pysqlite dialect, this script) load pysqlite3.

    Must run before keel, mlflow or SQLAlchemy are imported; applies to both systems.
    SQLite's query planner changes between versions, and Python builds link very
    different SQLite versions (Debian 12's Python: 3.40; pysqlite3-binary: 3.5x).
    """
    global sqlite3
    if any(m == "sqlalchemy" or m.startswith(("keel", "mlflow")) for m in sys.modules):
        raise RuntimeError("use_pysqlite3() must run before keel/mlflow/sqlalchemy are imported")
    try:
        import pysqlite3
        import pysqlite3.dbapi2
    except ImportError:
        sys.exit(
            "--sqlite pysqlite3 needs pysqlite3-binary: add `--with pysqlite3-binary` to uv run"
        )
    sys.modules["sqlite3"] = pysqlite3
    sys.modules["sqlite3.dbapi2"] = pysqlite3.dbapi2
    sqlite3 = pysqlite3.dbapi2


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the two systems behind one shape ---------------------------------------------


class System:
    """One tracking system: its fluent module, a client, its entity classes."""

    name: str
    mod: Any
    Metric: Any
    Param: Any
    RunTag: Any

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.db_path = workdir / f"{self.name}.db"
        self.uri = f"sqlite:///{self.db_path}"
        self.mod.set_tracking_uri(self.uri)
        self.client = self._client()

    def _client(self) -> Any:
        raise NotImplementedError

    def activate(self) -> None:
        """Point the fluent API at this system's database (the other system's state is left)."""
        self.mod.set_tracking_uri(self.uri)

    def experiment(self, name: str) -> str:
        """Create an experiment with its artifacts under the temp dir and make it active."""
        self.activate()
        exp_id = self.mod.create_experiment(
            name, artifact_location=str(self.workdir / "art" / name)
        )
        self.mod.set_experiment(experiment_id=exp_id)
        return str(exp_id)

    def count_rows(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Read through a fresh sqlite3 connection: proves the rows are in the file."""
        con = sqlite3.connect(self.db_path)
        try:
            return int(con.execute(sql, tuple(args)).fetchone()[0])
        finally:
            con.close()


class KeelSystem(System):
    name = "keel"

    def __init__(self, workdir: Path) -> None:
        import keel

        self.mod = keel
        self.Metric, self.Param, self.RunTag = keel.Metric, keel.Param, keel.RunTag
        super().__init__(workdir)

    def _client(self) -> Any:
        # Always pass the URI: mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI,
        # which Keel also honours when no URI is given.
        return self.mod.Client(self.uri)

    def set_synchronous_full(self) -> None:
        """Benchmark-only: PRAGMA synchronous=FULL on Keel's writer connection.

        Keel has no public knob for this; it is set on the one writer connection
        (a StaticPool) to measure what power-loss durability at each commit costs.
        """
        raw = self.client.store.database.engine.raw_connection()
        try:
            dbapi = raw.driver_connection
            dbapi.execute("PRAGMA synchronous = FULL")
            assert dbapi.execute("PRAGMA synchronous").fetchone()[0] == 2
        finally:
            raw.close()


class MlflowSystem(System):
    name = "mlflow"

    def __init__(self, workdir: Path) -> None:
        import mlflow
        from mlflow.entities import Metric, Param, RunTag

        self.mod = mlflow
        self.Metric, self.Param, self.RunTag = Metric, Param, RunTag
        super().__init__(workdir)

    def _client(self) -> Any:
        return self.mod.MlflowClient(tracking_uri=self.uri)


# -- measurements -------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: the same measurement for both systems."""

    workload: str
    case: str
    n: int | None = None  # operations per timed repetition (per-op figures)
    keel: list[float] = field(default_factory=list)
    mlflow: list[float] = field(default_factory=list)
    keel_label: str = "keel"
    mlflow_label: str = "mlflow"
    note: str = ""
    info_only: bool = False  # not a goal line (setup cost, a variant)

    @property
    def keel_median(self) -> float | None:
        return statistics.median(self.keel) if self.keel else None

    @property
    def mlflow_median(self) -> float | None:
        return statistics.median(self.mlflow) if self.mlflow else None

    @property
    def ratio(self) -> float | None:
        k, m = self.keel_median, self.mlflow_median
        return m / k if k and m else None

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "result",
            "workload": self.workload,
            "case": self.case,
            "n": self.n,
            "keel_label": self.keel_label,
            "mlflow_label": self.mlflow_label,
            "keel_seconds": self.keel,
            "mlflow_seconds": self.mlflow,
            "keel_median_s": self.keel_median,
            "mlflow_median_s": self.mlflow_median,
            "keel_best_s": min(self.keel) if self.keel else None,
            "mlflow_best_s": min(self.mlflow) if self.mlflow else None,
            "ratio_mlflow_over_keel": self.ratio,
            "note": self.note,
            "info_only": self.info_only,
        }


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``; collects garbage before starting."""

    def __enter__(self) -> Timer:
        gc.collect()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


class Profiler:
    """Optional cProfile around Keel's timed sections (``--profile``); main thread only."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.profiles: dict[str, Any] = {}

    def run(self, system: str, label: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``fn(*args, **kw)``, under cProfile when enabled and ``system`` is Keel."""
        if not self.enabled or system != "keel":
            return fn(*args, **kw)
        import cProfile

        prof = self.profiles.setdefault(label, cProfile.Profile())
        result: T = prof.runcall(fn, *args, **kw)
        return result

    def report(self, top: int = 25) -> None:
        import pstats

        for label, prof in self.profiles.items():
            print(f"\n=== cProfile (Keel, main thread): {label} ===")
            stats = pstats.Stats(prof)
            stats.sort_stats("cumulative").print_stats(top)
            stats.sort_stats("tottime").print_stats(top)


# -- W1: per-call log_metric ----------------------------------------------------------


def _w1_once(s: System, n: int, label: str, **kwargs: Any) -> tuple[float, float]:
    """One run with n fluent log_metric calls; (calls only, calls + end_run) in seconds."""
    run = s.mod.start_run(run_name=label)
    run_id = run.info.run_id
    values = [1.0 / (i + 1) for i in range(n)]
    gc.collect()
    t0 = time.perf_counter()
    for i in range(n):
        s.mod.log_metric("loss", values[i], step=i, **kwargs)
    t1 = time.perf_counter()
    s.mod.end_run()
    t2 = time.perf_counter()
    # Everything is in the file once end_run has returned: checked through a new connection.
    stored = s.count_rows(
        "SELECT count(*) FROM metrics WHERE run_uuid = ? AND key = 'loss'", [run_id]
    )
    if stored != n:
        raise AssertionError(f"{s.name}/{label}: {stored} of {n} points in the file after end_run")
    return t1 - t0, t2 - t0


def w1(cfg: dict[str, Any], repeat: int, tmp: Path, prof: Profiler) -> list[Row]:
    n = cfg["w1_calls"]
    k = KeelSystem(tmp / "w1-keel")
    m = MlflowSystem(tmp / "w1-mlflow")
    k.experiment("w1")
    m.experiment("w1")
    kf = KeelSystem(tmp / "w1-keel-syncfull")
    kf.set_synchronous_full()
    kf.experiment("w1")

    variants: list[tuple[str, System, dict[str, Any]]] = [
        ("keel", k, {}),
        ("keel-sync-full", kf, {}),
        ("mlflow", m, {}),
        ("mlflow-async", m, {"synchronous": False}),
    ]
    for label, s, kw in variants:  # warm-up: imports, first statements, threads
        s.activate()
        _w1_once(s, min(200, n), f"warmup-{label}", **kw)

    times: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in variants}
    for rep in range(repeat):
        for label, s, kw in variants:
            s.activate()
            res = prof.run(label, "W1 log_metric", _w1_once, s, n, f"{label}-r{rep}", **kw)
            times[label].append(res)
            log(f"W1 {label:15s} rep {rep}: calls {res[0]:.3f} s, to end_run {res[1]:.3f} s")

    def col(label: str, i: int) -> list[float]:
        return [t[i] for t in times[label]]

    return [
        Row(
            "W1",
            f"log_metric x{n:,}, through end_run",
            n,
            col("keel", 1),
            col("mlflow", 1),
            note="Keel: write-behind, committed at end_run; MLflow: one commit per call",
        ),
        Row(
            "W1",
            f"log_metric x{n:,}, calls only (before end_run)",
            n,
            col("keel", 0),
            col("mlflow", 0),
            info_only=True,
        ),
        Row(
            "W1",
            f"log_metric x{n:,}, through end_run, MLflow synchronous=False",
            n,
            col("keel", 1),
            col("mlflow-async", 1),
            mlflow_label="mlflow-async",
            note="MLflow's opt-in async logging; end_run waits for its queue",
            info_only=True,
        ),
        Row(
            "W1",
            f"log_metric x{n:,}, through end_run, Keel PRAGMA synchronous=FULL",
            n,
            col("keel-sync-full", 1),
            col("mlflow", 1),
            keel_label="keel-sync-full",
            note="Keel's writer set to fsync every commit (power-loss durable at end_run)",
            info_only=True,
        ),
    ]


# -- W2: log_batch --------------------------------------------------------------------


def _w2_batches(s: System, batches: int, size: int) -> list[list[Any]]:
    keys = [f"m{j}" for j in range(10)]
    per_key = size // len(keys)
    out = []
    for b in range(batches):
        ts = BASE_TIME_MS + b
        out.append(
            [
                s.Metric(keys[j % 10], random.random(), ts, b * per_key + j // 10)
                for j in range(size)
            ]
        )
    return out


def _w2_once(s: System, exp_id: str, batches: list[list[Any]]) -> float:
    run_id = s.client.create_run(exp_id).info.run_id
    with Timer() as t:
        for batch in batches:
            s.client.log_batch(run_id, metrics=batch)
    total = sum(len(b) for b in batches)
    stored = s.count_rows("SELECT count(*) FROM metrics WHERE run_uuid = ?", [run_id])
    if stored != total:
        raise AssertionError(f"{s.name}: {stored} of {total} batch points stored")
    return t.seconds


def w2(cfg: dict[str, Any], repeat: int, tmp: Path, prof: Profiler) -> list[Row]:
    nb, size = cfg["w2_batches"], cfg["w2_batch_size"]
    systems = [KeelSystem(tmp / "w2-keel"), MlflowSystem(tmp / "w2-mlflow")]
    exps = {s.name: s.experiment("w2") for s in systems}
    data = {s.name: _w2_batches(s, nb, size) for s in systems}
    for s in systems:
        _w2_once(s, exps[s.name], data[s.name][:2])
    times: dict[str, list[float]] = {s.name: [] for s in systems}
    for rep in range(repeat):
        for s in systems:
            sec = prof.run(s.name, "W2 log_batch", _w2_once, s, exps[s.name], data[s.name])
            times[s.name].append(sec)
            log(f"W2 {s.name:6s} rep {rep}: {sec:.3f} s")
    return [
        Row("W2", f"client.log_batch {nb} x {size:,} metrics", nb, times["keel"], times["mlflow"])
    ]


# -- W3: fluent runs with params and tags -------------------------------------------------


def _w3_once(s: System, runs: int, prefix: str) -> float:
    params = [{f"param_{k}": f"{prefix}-{i}-{k}" for k in range(10)} for i in range(runs)]
    tags = [{f"tag_{k}": f"value-{i}-{k}" for k in range(5)} for i in range(runs)]
    with Timer() as t:
        for i in range(runs):
            s.mod.start_run(run_name=f"{prefix}-{i}")
            s.mod.log_params(params[i])
            s.mod.set_tags(tags[i])
            s.mod.end_run()
    return t.seconds


def w3(cfg: dict[str, Any], repeat: int, tmp: Path, prof: Profiler) -> list[Row]:
    n = cfg["w3_runs"]
    systems = [KeelSystem(tmp / "w3-keel"), MlflowSystem(tmp / "w3-mlflow")]
    for s in systems:
        s.experiment("w3-warmup")
        _w3_once(s, 20, "warmup")
    times: dict[str, list[float]] = {s.name: [] for s in systems}
    for rep in range(repeat):
        for s in systems:
            exp_id = s.experiment(f"w3-r{rep}")
            sec = prof.run(s.name, "W3 fluent runs", _w3_once, s, n, f"r{rep}")
            times[s.name].append(sec)
            stored = s.count_rows(
                "SELECT count(*) FROM runs WHERE experiment_id = ? AND status = 'FINISHED'",
                [int(exp_id)],
            )
            if stored != n:
                raise AssertionError(f"{s.name}: {stored} of {n} runs finished")
            log(f"W3 {s.name:6s} rep {rep}: {sec:.3f} s")
    return [
        Row(
            "W3",
            f"{n:,} fluent runs: start_run, 10 params, 5 tags, end_run",
            n,
            times["keel"],
            times["mlflow"],
            note="includes each system's system tags (user, source, git)",
        )
    ]


# -- W4: search -------------------------------------------------------------------------


@dataclass
class SynthRun:
    run_id: str
    name: str
    start_time: int
    end_time: int
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]


def synth_runs(n: int, seed: int = 20240601) -> Iterator[SynthRun]:
    """The same n runs for both systems: 10 params, 5 tags (+ name and user), 3 metrics."""
    rng = random.Random(seed)
    for i in range(n):
        run_id = f"{rng.getrandbits(128):032x}"
        start = BASE_TIME_MS + i * 1_000
        params = {"model": MODELS[rng.randrange(len(MODELS))]}
        params.update({f"hp_{k}": str(round(rng.random(), 6)) for k in range(9)})
        tags = {f"tag_{k}": f"v{rng.randrange(20)}" for k in range(5)}
        metrics = {"acc": rng.random(), "loss": rng.random() * 2, "f1": rng.random()}
        yield SynthRun(run_id, f"run-{i:06d}", start, start + 60_000, params, tags, metrics)


def populate_api(s: System, exp_id: str, n: int) -> float:
    """Log the synthetic runs through the system's client, as a user's script would."""
    with Timer() as t:
        for r in synth_runs(n):
            tags = {**r.tags, "mlflow.user": "bench"}
            run_id = s.client.create_run(
                exp_id, start_time=r.start_time, tags=tags, run_name=r.name
            ).info.run_id
            s.client.log_batch(
                run_id,
                metrics=[s.Metric(k, v, r.start_time, 0) for k, v in r.metrics.items()],
                params=[s.Param(k, v) for k, v in r.params.items()],
            )
            s.client.set_terminated(run_id, "FINISHED", end_time=r.end_time)
    return t.seconds


# Column lists of each system's own tables (checked against the live schema before use).
_SQL_LAYOUT: dict[str, dict[str, tuple[str, ...]]] = {
    "keel": {
        "runs": (
            "run_uuid",
            "experiment_id",
            "name",
            "user_id",
            "status",
            "start_time",
            "end_time",
            "artifact_uri",
            "lifecycle_stage",
            "deleted_time",
        ),
        "params": ("run_uuid", "key", "value"),
        "tags": ("run_uuid", "key", "value"),
        "metrics": ("run_uuid", "key", "step", "timestamp", "value", "is_nan"),
        "latest_metrics": ("run_uuid", "key", "step", "timestamp", "value", "is_nan"),
    },
    "mlflow": {
        "runs": (
            "run_uuid",
            "name",
            "source_type",
            "source_name",
            "entry_point_name",
            "user_id",
            "status",
            "start_time",
            "end_time",
            "source_version",
            "lifecycle_stage",
            "artifact_uri",
            "experiment_id",
            "deleted_time",
        ),
        "params": ("key", "value", "run_uuid"),
        "tags": ("key", "value", "run_uuid"),
        "metrics": ("key", "value", "timestamp", "run_uuid", "step", "is_nan"),
        "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
    },
}


def _check_layout(con: sqlite3.Connection, system: str) -> None:
    """Fail loudly if a schema change left a required column out of our INSERTs."""
    for table, cols in _SQL_LAYOUT[system].items():
        info = con.execute(f"PRAGMA table_info({table})").fetchall()
        names = {row[1] for row in info}
        missing = [c for c in cols if c not in names]
        required = [
            row[1] for row in info if row[3] and row[4] is None and row[1] not in cols
        ]  # NOT NULL without default
        if missing or required:
            raise RuntimeError(
                f"{system}.{table}: schema changed (unknown {missing}, not filled {required}); "
                "update _SQL_LAYOUT in benchmarks/tracking_vs_mlflow.py"
            )


def _rows_for(system: str, r: SynthRun, exp_id: int, art: str) -> dict[str, list[tuple[Any, ...]]]:
    ts = r.start_time
    tags = {**r.tags, "mlflow.runName": r.name, "mlflow.user": "bench"}
    values: dict[str, dict[str, Any]] = {
        "runs": {
            "run_uuid": r.run_id,
            "experiment_id": exp_id,
            "name": r.name,
            "user_id": "bench",
            "status": "FINISHED",
            "start_time": ts,
            "end_time": r.end_time,
            "artifact_uri": f"{art}/{r.run_id}/artifacts",
            "lifecycle_stage": "active",
            "deleted_time": None,
            "source_type": "UNKNOWN",
            "source_name": "",
            "entry_point_name": "",
            "source_version": "",
        },
    }
    layout = _SQL_LAYOUT[system]
    out: dict[str, list[tuple[Any, ...]]] = {
        "runs": [tuple(values["runs"][c] for c in layout["runs"])]
    }
    kv = {"params": r.params, "tags": tags}
    for table, mapping in kv.items():
        out[table] = [
            tuple({"run_uuid": r.run_id, "key": k, "value": v}[c] for c in layout[table])
            for k, v in mapping.items()
        ]
    for table in ("metrics", "latest_metrics"):
        out[table] = [
            tuple(
                {
                    "run_uuid": r.run_id,
                    "key": k,
                    "step": 0,
                    "timestamp": ts,
                    "value": v,
                    "is_nan": 0,
                }[c]
                for c in layout[table]
            )
            for k, v in r.metrics.items()
        ]
    return out


def bulk_insert(s: System, exp_id: str, n: int, chunk: int = 5_000) -> float:
    """Insert n synthetic runs with plain SQL into the system's own tables.

    Logging 100,000 runs through MLflow's client takes far longer than the time
    budget (about 20 ms a run here), so both databases are filled the same way:
    ``executemany`` INSERTs of exactly the rows each system's ``log_batch`` writes
    (runs, params, tags incl. ``mlflow.runName``/``mlflow.user``, metrics,
    latest_metrics), committed every ``chunk`` runs, through a separate sqlite3
    connection with the file's own journal mode. Keel's WAL is checkpointed at the
    end, as its automatic checkpoints would have done during normal logging.
    Indexes are the ones each system's migrations created; no ANALYZE for either.
    """
    con = sqlite3.connect(s.db_path, isolation_level=None)
    try:
        _check_layout(con, s.name)
        art = str(s.workdir / "art" / "bulk")
        layout = _SQL_LAYOUT[s.name]
        stmts = {
            t: f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            for t, cols in layout.items()
        }
        with Timer() as t:
            buf: dict[str, list[tuple[Any, ...]]] = {tbl: [] for tbl in layout}
            for i, r in enumerate(synth_runs(n), 1):
                for tbl, rows in _rows_for(s.name, r, int(exp_id), art).items():
                    buf[tbl].extend(rows)
                if i % chunk == 0 or i == n:
                    con.execute("BEGIN")
                    for tbl in ("runs", "params", "tags", "metrics", "latest_metrics"):
                        con.executemany(stmts[tbl], buf[tbl])
                        buf[tbl].clear()
                    con.execute("COMMIT")
            if con.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return t.seconds
    finally:
        con.close()


def _search_df(s: System, exp_id: str) -> Any:
    s.activate()
    return s.mod.search_runs(
        experiment_ids=[exp_id], filter_string=SEARCH_FILTER, order_by=SEARCH_ORDER
    )


def _search_page(s: System, exp_id: str) -> Any:
    return s.client.search_runs(
        [exp_id], filter_string=SEARCH_FILTER, max_results=100, order_by=SEARCH_ORDER
    )


def _timed(fn: Callable[[System, str], Any], s: System, exp_id: str) -> float:
    with Timer() as t:
        fn(s, exp_id)
    return t.seconds


def w4(cfg: dict[str, Any], repeat: int, tmp: Path, prof: Profiler) -> list[Row]:
    rows: list[Row] = []
    expected_all = list(synth_runs(max(cfg["w4_sizes"])))
    for size in cfg["w4_sizes"]:
        systems = [KeelSystem(tmp / f"w4-{size}-keel"), MlflowSystem(tmp / f"w4-{size}-mlflow")]
        exps = {s.name: s.experiment(f"search-{size}") for s in systems}
        how = "client" if size <= cfg["w4_api_max"] else "sql"
        fill: dict[str, list[float]] = {}
        for s in systems:
            sec = (populate_api if how == "client" else bulk_insert)(s, exps[s.name], size)
            fill[s.name] = [sec]
            log(f"W4 {s.name:6s} populated {size:,} runs via {how} in {sec:.1f} s")
        rows.append(
            Row(
                "W4",
                f"populate {size:,} runs via {how} (setup, untimed in search)",
                size,
                fill["keel"],
                fill["mlflow"],
                info_only=True,
                note="create_run + log_batch + set_terminated per run"
                if how == "client"
                else "direct SQL INSERTs into each schema, see bulk_insert",
            )
        )

        # Expected answer, from the generator: both systems must return exactly this.
        want = sorted(
            (
                r
                for r in expected_all[:size]
                if r.params["model"] == "rf" and r.metrics["acc"] > 0.5
            ),
            key=lambda r: -r.metrics["acc"],
        )
        want_names = [r.name for r in want]
        for s in systems:  # warm-up and correctness
            df = _search_df(s, exps[s.name])
            page = _search_page(s, exps[s.name])
            got_df = list(df["tags.mlflow.runName"])
            got_page = [r.info.run_name for r in page]
            if got_df != want_names or got_page != want_names[:100]:
                raise AssertionError(f"{s.name}: search at {size} returned other runs")
        log(f"W4 {size:,}: both return the same {len(want_names):,} runs in the same order")

        t_df: dict[str, list[float]] = {s.name: [] for s in systems}
        t_page: dict[str, list[float]] = {s.name: [] for s in systems}
        for rep in range(repeat):
            for s in systems:
                for label, fn, bucket in (
                    ("DataFrame", _search_df, t_df),
                    ("page", _search_page, t_page),
                ):
                    sec = prof.run(s.name, f"W4 search {size} {label}", _timed, fn, s, exps[s.name])
                    bucket[s.name].append(sec)
                log(
                    f"W4 {size:,} {s.name:6s} rep {rep}: DataFrame {t_df[s.name][-1]:.3f} s, "
                    f"page {t_page[s.name][-1]:.4f} s"
                )
        matches = len(want_names)
        rows.append(
            Row(
                "W4",
                f"search_runs -> DataFrame, {size:,} runs ({matches:,} match)",
                size,
                t_df["keel"],
                t_df["mlflow"],
                note="fluent search_runs, all matches",
            )
        )
        rows.append(
            Row(
                "W4",
                f"client.search_runs max_results=100, {size:,} runs",
                size,
                t_page["keel"],
                t_page["mlflow"],
                note="first page, ordered",
            )
        )
    return rows


# -- W5: metric history -------------------------------------------------------------------


def _w5_once(s: System, run_id: str, steps: int) -> float:
    with Timer() as t:
        hist = s.client.get_metric_history(run_id, "loss")
    if len(hist) != steps or hist[-1].step != steps - 1:
        raise AssertionError(f"{s.name}: history has {len(hist)} points")
    return t.seconds


def w5(cfg: dict[str, Any], repeat: int, tmp: Path, prof: Profiler) -> list[Row]:
    steps = cfg["w5_steps"]
    systems = [KeelSystem(tmp / "w5-keel"), MlflowSystem(tmp / "w5-mlflow")]
    run_ids = {}
    for s in systems:
        exp_id = s.experiment("w5")
        run_id = s.client.create_run(exp_id).info.run_id
        points = [s.Metric("loss", 1.0 / (i + 1), BASE_TIME_MS + i, i) for i in range(steps)]
        for i in range(0, steps, 1000):
            s.client.log_batch(run_id, metrics=points[i : i + 1000])
        s.client.set_terminated(run_id)
        run_ids[s.name] = run_id
        s.client.get_metric_history(run_id, "loss")  # warm-up
    times: dict[str, list[float]] = {s.name: [] for s in systems}
    reps = max(repeat, 5)  # cheap: a few more repetitions
    for rep in range(reps):
        for s in systems:
            sec = prof.run(s.name, "W5 metric history", _w5_once, s, run_ids[s.name], steps)
            times[s.name].append(sec)
        log(f"W5 rep {rep}: keel {times['keel'][-1]:.4f} s, mlflow {times['mlflow'][-1]:.4f} s")
    return [
        Row(
            "W5",
            f"client.get_metric_history, {steps:,} steps",
            steps,
            times["keel"],
            times["mlflow"],
        )
    ]


WORKLOADS: dict[str, Callable[[dict[str, Any], int, Path, Profiler], list[Row]]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
}


# -- reporting --------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _sqlalchemy_sqlite_version() -> str:
    """The SQLite version SQLAlchemy's engines (Keel's and MLflow's) actually load."""
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    return str(SQLiteDialect_pysqlite.import_dbapi().sqlite_version)


def machine_info(tmp: Path) -> dict[str, Any]:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        fs = (
            subprocess.run(["df", "-T", str(tmp)], capture_output=True, text=True, check=False)
            .stdout.splitlines()[-1]
            .split()[1]
        )
    except (OSError, IndexError):
        fs = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gb = None
    import keel

    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "keel": keel.__version__,
        "mlflow": _version("mlflow"),
        "sqlalchemy": _version("sqlalchemy"),
        "pandas": _version("pandas"),
        "sqlite": sqlite3.sqlite_version,
        "sqlite_module": sqlite3.__name__,
        "sqlite_in_sqlalchemy": _sqlalchemy_sqlite_version(),
        "tmp_dir": str(tmp),
        "tmp_fs": fs,
    }


def _fmt_s(sec: float | None) -> str:
    if sec is None:
        return "-"
    if sec >= 1:
        return f"{sec:.2f} s"
    if sec >= 1e-3:
        return f"{sec * 1e3:.1f} ms"
    return f"{sec * 1e6:.0f} us"


def table(rows: Sequence[Row]) -> str:
    head = ("", "workload", "Keel", "MLflow", "MLflow/Keel")
    lines = []
    for r in rows:
        case = r.case + (
            f" [{r.keel_label} vs {r.mlflow_label}]"
            if (r.keel_label, r.mlflow_label) != ("keel", "mlflow")
            else ""
        )
        ratio = f"{r.ratio:,.1f}x" if r.ratio else "-"
        lines.append(
            (
                "(i)" if r.info_only else "",
                f"{r.workload} {case}",
                _fmt_s(r.keel_median),
                _fmt_s(r.mlflow_median),
                ratio,
            )
        )
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    out = []
    for i, line in enumerate([head, *lines]):
        out.append(
            "  ".join(
                str(c).ljust(w) if j < 2 else str(c).rjust(w)
                for j, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: Sequence[Row]) -> str:
    out = ["| Workload | Keel | MLflow | MLflow / Keel |", "|---|---:|---:|---:|"]
    for r in rows:
        case = r.case + (
            ""
            if (r.keel_label, r.mlflow_label) == ("keel", "mlflow")
            else f" ({r.keel_label} vs {r.mlflow_label})"
        )
        ratio = (
            f"**{r.ratio:,.1f}×**"
            if r.ratio and not r.info_only
            else (f"{r.ratio:,.1f}×" if r.ratio else "–")
        )
        out.append(
            f"| {r.workload} {case}{' (info)' if r.info_only else ''} | "
            f"{_fmt_s(r.keel_median)} | {_fmt_s(r.mlflow_median)} | {ratio} |"
        )
    return "\n".join(out)


def goals(rows: Sequence[Row]) -> list[str]:
    out = []
    for r in rows:
        if r.info_only or r.ratio is None:
            continue
        if r.workload == "W1":
            ok = r.ratio >= 20
            out.append(
                f"W1 per-call logging >= 20x MLflow: {r.ratio:,.1f}x -> {'MET' if ok else 'MISSED'}"
            )
        if r.workload == "W4" and r.n and r.n >= 100_000:
            ok = r.ratio >= 10
            out.append(f"W4 {r.case} >= 10x MLflow: {r.ratio:,.1f}x -> {'MET' if ok else 'MISSED'}")
    return out


# -- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, to smoke-test")
    ap.add_argument(
        "--only",
        default=",".join(ALL_WORKLOADS),
        help="comma-separated workloads, e.g. W1,W4 (default: all)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions (median reported)")
    ap.add_argument("--tmpdir", default=None, help="where the temp databases go")
    ap.add_argument("--keep", action="store_true", help="keep the temp databases")
    ap.add_argument("--out", default=None, help="JSON lines file (default results/<date>.jsonl)")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="cProfile Keel's timed sections and print the top functions",
    )
    ap.add_argument(
        "--sqlite",
        choices=("stdlib", "pysqlite3"),
        default="stdlib",
        help="SQLite library for both systems: Python's own sqlite3 (default) or "
        "pysqlite3-binary's bundled, newer SQLite (add --with pysqlite3-binary)",
    )
    args = ap.parse_args(argv)
    if args.sqlite == "pysqlite3":
        use_pysqlite3()

    only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workloads {unknown}; choose from {', '.join(ALL_WORKLOADS)}")
    cfg = QUICK if args.quick else FULL

    tmp = Path(tempfile.mkdtemp(prefix="keel-vs-mlflow-", dir=args.tmpdir))
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    log("importing keel and mlflow")
    import mlflow  # noqa: F401

    import keel  # noqa: F401

    info = machine_info(tmp)
    log(f"machine: {json.dumps(info)}")
    log(f"sizes: {cfg}, repeat={args.repeat}, workloads={only}, temp dir {tmp}")

    prof = Profiler(args.profile)
    rows: list[Row] = []
    try:
        for w in only:
            t0 = time.perf_counter()
            log(f"--- {w} ---")
            rows.extend(WORKLOADS[w](cfg, args.repeat, tmp, prof))
            log(f"{w} done in {time.perf_counter() - t0:.1f} s")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")

    elapsed = time.perf_counter() - t_start
    out = (
        Path(args.out)
        if args.out
        else (
            Path(__file__).resolve().parent
            / "results"
            / f"{started.date().isoformat()}{'-quick' if args.quick else ''}"
            f"{'-pysqlite3' if args.sqlite == 'pysqlite3' else ''}.jsonl"
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    session = uuid.uuid4().hex[:12]
    meta = {
        "type": "meta",
        "session": session,
        "started_utc": started.isoformat(),
        "elapsed_s": round(elapsed, 1),
        "argv": sys.argv,
        "quick": args.quick,
        "repeat": args.repeat,
        "sqlite_lib": args.sqlite,
        "sizes": {k: v for k, v in cfg.items()},
        "filter": SEARCH_FILTER,
        "order_by": SEARCH_ORDER,
        "machine": info,
    }
    with out.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(meta) + "\n")
        for r in rows:
            fh.write(json.dumps({"session": session, **r.as_json()}) + "\n")

    print()
    print(
        f"Keel vs MLflow, medians of {args.repeat} (W5: of {max(args.repeat, 5)}); "
        "ratio = MLflow time / Keel time, > 1 means Keel is faster; (i) = informational"
    )
    print(table(rows))
    for r in rows:
        k_med, m_med = r.keel_median, r.mlflow_median
        if r.workload == "W1" and r.n and k_med is not None and m_med is not None:
            print(
                f"  {r.case}: {r.keel_label} {k_med / r.n * 1e6:.1f} us/call, "
                f"{r.mlflow_label} {m_med / r.n * 1e6:.1f} us/call"
            )
    print()
    for g in goals(rows):
        print(g)
    print("\nMarkdown:\n" + markdown_table(rows))
    print(f"\nresults appended to {out} (session {session}); total {elapsed:.0f} s")
    if args.profile:
        prof.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
