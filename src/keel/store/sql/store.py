"""The tracking store on SQLAlchemy Core: SQLite (embedded default) and PostgreSQL.

Set-based throughout: a page of runs is loaded with one query per table, never
one query per run; a batch of metrics is one multi-row insert plus one upsert
of the latest values.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.entities import (
    RUN_NAME_TAG,
    Dataset,
    DatasetInput,
    Experiment,
    ExperimentTag,
    InputTag,
    LifecycleStage,
    LoggedModelOutput,
    Metric,
    PagedList,
    Param,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from keel.errors import (
    AlreadyExists,
    InvalidParameter,
    InvalidState,
    NotFound,
    StoreUnavailable,
)
from keel.search.filter import And, Comparison, Expr, parse_filter
from keel.search.order import OrderKey, parse_order_by
from keel.store import base, validation
from keel.store.base import TrackingStore, now_ms
from keel.store.names import generate_run_name
from keel.store.paging import decode_token, encode_token
from keel.store.sql import schema as t
from keel.store.sql.engine import (
    Database,
    DrivingJoin,
    Raw,
    chunks,
    fetch_tuples,
    in_list,
    upsert,
)
from keel.store.sql.logged_models import SqlLoggedModels
from keel.store.sql.migrate import ensure_schema
from keel.store.sql.search import (
    OrderSegment,
    experiment_filter_condition,
    experiment_order_by,
    metric_value_condition,
    run_filter_condition,
    run_order_segments,
)
from keel.uris import redact


def _exp_id_int(experiment_id: str) -> int | None:
    try:
        return int(experiment_id)
    except (TypeError, ValueError):
        return None


def _metric_row(run_id: str, m: Metric) -> dict[str, Any]:
    is_nan = math.isnan(m.value)
    return {
        "run_uuid": run_id,
        "key": m.key,
        "step": m.step,
        "timestamp": m.timestamp,
        "value": 0.0 if is_nan else float(m.value),
        "is_nan": is_nan,
    }


def _newer_latest(stmt: Any) -> Any:
    """The upsert's condition: the incoming metric is newer than latest_metrics' row."""
    ex, lm = stmt.excluded, t.latest_metrics
    return sa.or_(
        ex.step > lm.c.step,
        sa.and_(ex.step == lm.c.step, ex.timestamp > lm.c.timestamp),
        sa.and_(ex.step == lm.c.step, ex.timestamp == lm.c.timestamp, ex.value > lm.c.value),
    )


_RUN_STAGE = sa.select(t.runs.c.lifecycle_stage).where(t.runs.c.run_uuid == sa.bindparam("run_id"))
_RUN_COLUMNS = (
    "run_uuid",
    "experiment_id",
    "name",
    "user_id",
    "status",
    "start_time",
    "end_time",
    "artifact_uri",
    "lifecycle_stage",
)
_UPDATE_RUN = sa.update(t.runs).where(t.runs.c.run_uuid == sa.bindparam("run_id"))
_INSERT_RUN = sa.insert(t.runs)
_INSERT_TAG = sa.insert(t.tags)
_EXPERIMENT_STATE = sa.select(
    t.experiments.c.name, t.experiments.c.lifecycle_stage, t.experiments.c.artifact_location
).where(t.experiments.c.experiment_id == sa.bindparam("experiment_id"))


def _runs_of(run_ids: list[Any]) -> Any:
    return sa.select(*(t.runs.c[c] for c in _RUN_COLUMNS)).where(t.runs.c.run_uuid.in_(run_ids))


def _latest_metrics_of(run_ids: list[Any]) -> Any:
    lm = t.latest_metrics
    return sa.select(lm.c.run_uuid, lm.c.key, lm.c.value, lm.c.is_nan).where(
        lm.c.run_uuid.in_(run_ids)
    )


def _params_of(run_ids: list[Any]) -> Any:
    p = t.params
    return sa.select(p.c.run_uuid, p.c.key, p.c.value).where(p.c.run_uuid.in_(run_ids))


def _tags_of(run_ids: list[Any]) -> Any:
    tg = t.tags
    return sa.select(tg.c.run_uuid, tg.c.key, tg.c.value).where(tg.c.run_uuid.in_(run_ids))


def _inputs_of(run_ids: list[Any]) -> Any:
    ri, ds = t.run_inputs, t.datasets
    return (
        sa.select(
            ri.c.run_uuid,
            ds.c.dataset_uuid,
            ds.c.name,
            ds.c.digest,
            ds.c.source_type,
            ds.c.source,
            ds.c.schema,
            ds.c.profile,
        )
        .join(ds, ds.c.dataset_uuid == ri.c.dataset_uuid)
        .where(ri.c.run_uuid.in_(run_ids))
        .order_by(ri.c.run_uuid, ds.c.name, ds.c.digest)
    )


def _input_tags_of(run_ids: list[Any]) -> Any:
    it = t.input_tags
    return (
        sa.select(it.c.run_uuid, it.c.dataset_uuid, it.c.key, it.c.value)
        .where(it.c.run_uuid.in_(run_ids))
        .order_by(it.c.key)
    )


def _stored_params(keys: list[Any]) -> Any:
    p = t.params
    return sa.select(p.c.key, p.c.value).where(
        p.c.run_uuid == sa.bindparam("run_id"), p.c.key.in_(keys)
    )


def _experiment_not_found(experiment_id: str) -> NotFound:
    return NotFound(
        f"Experiment with id {experiment_id!r} does not exist. "
        "List experiments with `keel experiments list`."
    )


def _experiment_deleted(name: str, experiment_id: str) -> InvalidState:
    return InvalidState(
        f"Experiment {name!r} (id {experiment_id}) is deleted. Restore it with "
        f"`keel experiments restore {experiment_id}` first."
    )


def _metric_value(row: Any) -> float:
    return math.nan if row.is_nan else float(row.value)


class SqlTrackingStore(SqlLoggedModels, TrackingStore):
    """Tracking store over a SQLite file or a PostgreSQL database.

    >>> store = SqlTrackingStore("sqlite:///:memory:", artifact_root="/tmp/keel-artifacts")
    >>> store.get_experiment("0").name
    'Default'
    """

    def __init__(self, db_uri: str, artifact_root: str) -> None:
        self.db_uri = db_uri
        self.artifact_root = artifact_root.rstrip("/")
        self._db = Database(db_uri)
        try:
            ensure_schema(self._db)
            self._ensure_default_experiment()
        except sa.exc.DBAPIError as exc:
            self._db.dispose()
            cause = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
            raise StoreUnavailable(
                f"Cannot open the tracking database {redact(db_uri)}: "
                f"{cause[0] if cause else type(exc).__name__}. Check the tracking URI and "
                "that the database is reachable."
            ) from exc

    @property
    def database(self) -> Database:
        return self._db

    def close(self) -> None:
        self._db.dispose()

    def after_fork(self) -> None:
        self._db.after_fork()

    def _ensure_default_experiment(self) -> None:
        with self._db.read() as conn:
            exists = conn.execute(
                sa.select(t.experiments.c.experiment_id).where(
                    t.experiments.c.experiment_id == int(base.DEFAULT_EXPERIMENT_ID)
                )
            ).first()
        if exists:
            return
        now = now_ms()
        with self._db.write() as conn:
            upsert(
                conn,
                t.experiments,
                [
                    {
                        "experiment_id": int(base.DEFAULT_EXPERIMENT_ID),
                        "name": base.DEFAULT_EXPERIMENT_NAME,
                        "artifact_location": f"{self.artifact_root}/{base.DEFAULT_EXPERIMENT_ID}",
                        "lifecycle_stage": LifecycleStage.ACTIVE.value,
                        "creation_time": now,
                        "last_update_time": now,
                    }
                ],
                key=["experiment_id"],
            )

    # -- experiments ---------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: Sequence[ExperimentTag] = (),
    ) -> str:
        validation.validate_experiment_name(name)
        for tag in tags:
            validation.validate_tag(tag, base.MAX_EXPERIMENT_TAG_VALUE_LENGTH)
        now = now_ms()
        with self._db.write() as conn:
            taken = conn.execute(
                sa.select(t.experiments.c.lifecycle_stage).where(t.experiments.c.name == name)
            ).first()
            if taken is not None:
                hint = (
                    " It is deleted: restore it with `keel experiments restore` or pick "
                    "another name."
                    if taken.lifecycle_stage == LifecycleStage.DELETED.value
                    else ""
                )
                raise AlreadyExists(f"Experiment {name!r} already exists.{hint}")
            exp_id = conn.execute(
                sa.insert(t.experiments)
                .values(
                    name=name,
                    artifact_location=artifact_location or "",
                    lifecycle_stage=LifecycleStage.ACTIVE.value,
                    creation_time=now,
                    last_update_time=now,
                )
                .returning(t.experiments.c.experiment_id)
            ).scalar_one()
            if not artifact_location:
                conn.execute(
                    sa.update(t.experiments)
                    .where(t.experiments.c.experiment_id == exp_id)
                    .values(artifact_location=f"{self.artifact_root}/{exp_id}")
                )
            if tags:
                conn.execute(
                    sa.insert(t.experiment_tags),
                    [{"experiment_id": exp_id, "key": tg.key, "value": tg.value} for tg in tags],
                )
        return str(exp_id)

    def _experiments(self, conn: Connection, where: Any) -> list[Experiment]:
        rows = conn.execute(sa.select(t.experiments).where(where)).all()
        return self._with_experiment_tags(conn, rows)

    def _with_experiment_tags(self, conn: Connection, rows: Sequence[Any]) -> list[Experiment]:
        if not rows:
            return []
        tags: dict[int, dict[str, str]] = defaultdict(dict)
        ids = [r.experiment_id for r in rows]
        for chunk in chunks(ids):
            for tr in conn.execute(
                sa.select(t.experiment_tags).where(t.experiment_tags.c.experiment_id.in_(chunk))
            ):
                tags[tr.experiment_id][tr.key] = tr.value
        return [
            Experiment(
                experiment_id=str(r.experiment_id),
                name=r.name,
                artifact_location=r.artifact_location,
                lifecycle_stage=LifecycleStage(r.lifecycle_stage),
                tags=dict(tags.get(r.experiment_id, {})),
                creation_time=r.creation_time,
                last_update_time=r.last_update_time,
            )
            for r in rows
        ]

    def get_experiment(self, experiment_id: str) -> Experiment:
        exp_int = _exp_id_int(experiment_id)
        if exp_int is not None:
            with self._db.read() as conn:
                found = self._experiments(conn, t.experiments.c.experiment_id == exp_int)
            if found:
                return found[0]
        raise _experiment_not_found(experiment_id)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        with self._db.read() as conn:
            found = self._experiments(conn, t.experiments.c.name == name)
        return found[0] if found else None

    def search_experiments(
        self,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        validation.validate_max_results(max_results, base.MAX_RESULTS_EXPERIMENTS, "experiments")
        view_type = ViewType(view_type)
        condition = experiment_filter_condition(parse_filter(filter_string, "experiments"))
        ordering = experiment_order_by(parse_order_by(order_by, "experiments"))
        query_id = f"experiments|{view_type.value}|{filter_string}|{list(order_by or [])}"
        offset = decode_token(page_token, query_id)
        stmt = (
            sa.select(t.experiments)
            .where(
                t.experiments.c.lifecycle_stage.in_([s.value for s in view_type.stages()]),
                condition,
            )
            .order_by(*ordering)
            .limit(max_results + 1)
            .offset(offset)
        )
        with self._db.read() as conn:
            rows = conn.execute(stmt).all()
            items = self._with_experiment_tags(conn, rows[:max_results])
        token = encode_token(offset + max_results, query_id) if len(rows) > max_results else None
        return PagedList(items, token)

    def _set_experiment_stage(self, experiment_id: str, stage: LifecycleStage) -> None:
        exp = self.get_experiment(experiment_id)
        if exp.lifecycle_stage == stage:
            if stage is LifecycleStage.DELETED:
                raise InvalidState(f"Experiment {experiment_id!r} is already deleted.")
            raise InvalidState(f"Experiment {experiment_id!r} is not deleted; nothing to restore.")
        now = now_ms()
        exp_int = int(exp.experiment_id)
        with self._db.write() as conn:
            if stage is LifecycleStage.DELETED:
                conn.execute(
                    sa.update(t.runs)
                    .where(
                        t.runs.c.experiment_id == exp_int,
                        t.runs.c.lifecycle_stage == LifecycleStage.ACTIVE.value,
                    )
                    .values(lifecycle_stage=LifecycleStage.DELETED.value, deleted_time=now)
                )
            else:
                # Runs deleted together with the experiment come back; runs
                # deleted on their own before that stay deleted.
                conn.execute(
                    sa.update(t.runs)
                    .where(
                        t.runs.c.experiment_id == exp_int,
                        t.runs.c.lifecycle_stage == LifecycleStage.DELETED.value,
                        t.runs.c.deleted_time >= (exp.last_update_time or 0),
                    )
                    .values(lifecycle_stage=LifecycleStage.ACTIVE.value, deleted_time=None)
                )
            conn.execute(
                sa.update(t.experiments)
                .where(t.experiments.c.experiment_id == exp_int)
                .values(lifecycle_stage=stage.value, last_update_time=now)
            )

    def delete_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.DELETED)

    def restore_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.ACTIVE)

    def _active_experiment(self, experiment_id: str) -> Experiment:
        exp = self.get_experiment(experiment_id)
        if exp.lifecycle_stage is not LifecycleStage.ACTIVE:
            raise _experiment_deleted(exp.name, experiment_id)
        return exp

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        validation.validate_experiment_name(new_name)
        exp = self._active_experiment(experiment_id)
        with self._db.write() as conn:
            taken = conn.execute(
                sa.select(t.experiments.c.experiment_id).where(t.experiments.c.name == new_name)
            ).first()
            if taken is not None and str(taken.experiment_id) != exp.experiment_id:
                raise AlreadyExists(f"Experiment {new_name!r} already exists.")
            conn.execute(
                sa.update(t.experiments)
                .where(t.experiments.c.experiment_id == int(exp.experiment_id))
                .values(name=new_name, last_update_time=now_ms())
            )

    def set_experiment_tag(self, experiment_id: str, tag: ExperimentTag) -> None:
        validation.validate_tag(tag, base.MAX_EXPERIMENT_TAG_VALUE_LENGTH)
        exp = self._active_experiment(experiment_id)
        with self._db.write() as conn:
            upsert(
                conn,
                t.experiment_tags,
                [{"experiment_id": int(exp.experiment_id), "key": tag.key, "value": tag.value}],
                key=["experiment_id", "key"],
                update=["value"],
            )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        exp = self._active_experiment(experiment_id)
        with self._db.write() as conn:
            gone = conn.execute(
                sa.delete(t.experiment_tags).where(
                    t.experiment_tags.c.experiment_id == int(exp.experiment_id),
                    t.experiment_tags.c.key == key,
                )
            ).rowcount
        if not gone:
            raise NotFound(f"Experiment {exp.name!r} has no tag {key!r}.")

    # -- runs ----------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: int,
        tags: Sequence[RunTag],
        run_name: str | None,
    ) -> Run:
        tag_map = {tg.key: tg.value for tg in tags}
        name = run_name or tag_map.get(RUN_NAME_TAG) or generate_run_name()
        validation.validate_run_name(name)
        tag_map[RUN_NAME_TAG] = name
        all_tags = [RunTag(k, v) for k, v in tag_map.items()]
        for tag in all_tags:
            validation.validate_tag(tag)
        validation.validate_int64("start_time", start_time)
        exp_int = _exp_id_int(experiment_id)
        if exp_int is None:
            raise _experiment_not_found(experiment_id)
        run_id = uuid.uuid4().hex
        with self._db.write_raw() as raw:
            found = raw.all(_EXPERIMENT_STATE, {"experiment_id": exp_int})
            if not found:
                raise _experiment_not_found(experiment_id)
            exp_name, exp_stage, exp_location = found[0]
            if exp_stage != LifecycleStage.ACTIVE.value:
                raise _experiment_deleted(exp_name, experiment_id)
            info = RunInfo(
                run_id=run_id,
                experiment_id=str(exp_int),
                run_name=name,
                user_id=user_id,
                status=RunStatus.RUNNING,
                start_time=start_time,
                end_time=None,
                artifact_uri=f"{exp_location}/{run_id}/artifacts",
                lifecycle_stage=LifecycleStage.ACTIVE,
            )
            raw.execute(
                _INSERT_RUN,
                {
                    "run_uuid": run_id,
                    "experiment_id": exp_int,
                    "name": name,
                    "user_id": user_id,
                    "status": info.status.value,
                    "start_time": start_time,
                    "end_time": None,
                    "artifact_uri": info.artifact_uri,
                    "lifecycle_stage": LifecycleStage.ACTIVE.value,
                },
            )
            raw.executemany(
                _INSERT_TAG,
                [{"run_uuid": run_id, "key": tg.key, "value": tg.value} for tg in all_tags],
            )
        return Run(info=info, data=RunData(tags=dict(tag_map)))

    def _run_infos(self, conn: Connection | Raw, run_ids: Sequence[str]) -> dict[str, RunInfo]:
        raw = Raw.of(conn)
        out: dict[str, RunInfo] = {}
        for chunk in chunks(run_ids):
            for r in raw.all(*in_list(_runs_of, chunk)):
                out[r[0]] = _run_info(r)
        return out

    def _load_runs(self, conn: Connection, infos: Sequence[RunInfo]) -> list[Run]:
        """Attach data and inputs to many runs with one query per table."""
        ids = [i.run_id for i in infos]
        metrics: dict[str, dict[str, float]] = defaultdict(dict)
        params: dict[str, dict[str, str]] = defaultdict(dict)
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        inputs: dict[str, list[DatasetInput]] = defaultdict(list)
        models: dict[str, list[LoggedModelOutput]] = {}
        nan = math.nan
        raw = Raw.of(conn)
        # Plain tuples and compiled-once statements: this loop runs once per
        # logged value of every run on the page, up to millions of times.
        for chunk in chunks(ids):
            for run_id, key, value, is_nan in raw.all(*in_list(_latest_metrics_of, chunk)):
                metrics[run_id][key] = nan if is_nan else value
            for builder, target in ((_params_of, params), (_tags_of, tags)):
                for run_id, key, value in raw.all(*in_list(builder, chunk)):
                    target[run_id][key] = value
            self._load_inputs(raw, chunk, inputs)
            models.update(self._load_run_models(raw, chunk))
        return [
            Run(
                info=i,
                data=RunData(
                    metrics=metrics.get(i.run_id, {}),
                    params=params.get(i.run_id, {}),
                    tags=tags.get(i.run_id, {}),
                ),
                inputs=tuple(inputs.get(i.run_id, ())),
                models=tuple(models.get(i.run_id, ())),
            )
            for i in infos
        ]

    def _load_inputs(
        self, raw: Raw, run_ids: Sequence[str], out: dict[str, list[DatasetInput]]
    ) -> None:
        rows = raw.all(*in_list(_inputs_of, run_ids))
        if not rows:
            return
        input_tags: dict[tuple[str, str], list[InputTag]] = defaultdict(list)
        for run_id, dataset_id, key, value in raw.all(*in_list(_input_tags_of, run_ids)):
            input_tags[(run_id, dataset_id)].append(InputTag(key, value))
        for run_id, dataset_id, name, digest, source_type, source, schema, profile in rows:
            dataset = Dataset(
                name=name,
                digest=digest,
                source_type=source_type,
                source=source,
                schema=schema,
                profile=profile,
            )
            tags = tuple(input_tags.get((run_id, dataset_id), ()))
            out[run_id].append(DatasetInput(dataset=dataset, tags=tags))

    def get_run(self, run_id: str) -> Run:
        with self._db.read() as conn:
            infos = self._run_infos(conn, [run_id])
            if run_id not in infos:
                raise NotFound(f"Run {run_id!r} does not exist. Find runs with `keel runs list`.")
            return self._load_runs(conn, [infos[run_id]])[0]

    def _run_stage(self, conn: Connection | Raw, run_id: str) -> str:
        raw = Raw.of(conn)
        stage = raw.scalar(_RUN_STAGE, {"run_id": run_id})
        if stage is None:
            raise NotFound(f"Run {run_id!r} does not exist. Find runs with `keel runs list`.")
        return str(stage)

    def _check_active(self, conn: Connection | Raw, run_id: str) -> None:
        if self._run_stage(conn, run_id) != LifecycleStage.ACTIVE.value:
            raise InvalidState(
                f"Run {run_id!r} is deleted, so nothing can be logged to it. Restore it with "
                f"`keel runs restore {run_id}` first."
            )

    def update_run_info(
        self,
        run_id: str,
        status: RunStatus | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        values: dict[str, Any] = {}
        if status is not None:
            values["status"] = RunStatus(status).value
        if end_time is not None:
            validation.validate_int64("end_time", end_time)
            values["end_time"] = end_time
        if run_name is not None:
            validation.validate_run_name(run_name)
            values["name"] = run_name
        with self._db.write_raw() as raw:
            self._check_active(raw, run_id)
            if values:
                raw.execute(_UPDATE_RUN, {**values, "run_id": run_id})
            if run_name is not None:
                upsert(
                    raw,
                    t.tags,
                    [{"run_uuid": run_id, "key": RUN_NAME_TAG, "value": run_name}],
                    key=["run_uuid", "key"],
                    update=["value"],
                )
            return self._run_infos(raw, [run_id])[run_id]

    def _set_run_stage(self, run_id: str, stage: LifecycleStage) -> None:
        with self._db.write() as conn:
            self._run_stage(conn, run_id)
            conn.execute(
                sa.update(t.runs)
                .where(t.runs.c.run_uuid == run_id)
                .values(
                    lifecycle_stage=stage.value,
                    deleted_time=now_ms() if stage is LifecycleStage.DELETED else None,
                )
            )

    def delete_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.DELETED)

    def restore_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.ACTIVE)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        validation.validate_batch(metrics, params, tags)
        if not (metrics or params or tags):
            return
        with self._db.write_raw() as raw:
            self._check_active(raw, run_id)
            if params:
                self._write_params(raw, run_id, params)
            if tags:
                last = {tg.key: tg.value for tg in tags}  # the last value of a key wins
                upsert(
                    raw,
                    t.tags,
                    [{"run_uuid": run_id, "key": k, "value": v} for k, v in last.items()],
                    key=["run_uuid", "key"],
                    update=["value"],
                )
                if RUN_NAME_TAG in last:
                    raw.execute(_UPDATE_RUN, {"name": last[RUN_NAME_TAG], "run_id": run_id})
            if metrics:
                self._write_metrics(raw, run_id, metrics)

    def _write_params(self, raw: Raw, run_id: str, params: Sequence[Param]) -> None:
        wanted = {p.key: p.value for p in params}
        upsert(
            raw,
            t.params,
            [{"run_uuid": run_id, "key": k, "value": v} for k, v in wanted.items()],
            key=["run_uuid", "key"],
        )
        # Read back what is stored: a differing value means the param was
        # already logged, by us or by a concurrent writer.
        for chunk in chunks(list(wanted)):
            for key, value in raw.all(*in_list(_stored_params, chunk, run_id=run_id)):
                if value != wanted[key]:
                    raise InvalidParameter(
                        f"Param {key!r} of run {run_id} was already logged with value "
                        f"{value!r}; cannot change it to {wanted[key]!r}. Params are "
                        "immutable: log the new value under another key or start a new run."
                    )

    def _write_metrics(self, raw: Raw, run_id: str, metrics: Sequence[Metric]) -> None:
        rows = [_metric_row(run_id, m) for m in metrics]
        upsert(
            raw, t.metrics, rows, key=["run_uuid", "key", "step", "timestamp", "value", "is_nan"]
        )
        newest: dict[str, dict[str, Any]] = {}
        for row in rows:
            cur = newest.get(row["key"])
            if cur is None or (row["step"], row["timestamp"], row["value"]) > (
                cur["step"],
                cur["timestamp"],
                cur["value"],
            ):
                newest[row["key"]] = row
        upsert(
            raw,
            t.latest_metrics,
            list(newest.values()),
            key=["run_uuid", "key"],
            update=["step", "timestamp", "value", "is_nan"],
            where=_newer_latest,
        )
        linked = [m for m in metrics if m.model_id]
        if linked:
            self._write_model_metrics(raw, run_id, linked)

    def delete_tag(self, run_id: str, key: str) -> None:
        with self._db.write() as conn:
            self._check_active(conn, run_id)
            gone = conn.execute(
                sa.delete(t.tags).where(t.tags.c.run_uuid == run_id, t.tags.c.key == key)
            ).rowcount
        if not gone:
            raise NotFound(f"Run {run_id} has no tag {key!r}; nothing to delete.")

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        for d in datasets:
            _validate_dataset(d)
        if not datasets:
            return
        with self._db.write() as conn:
            self._check_active(conn, run_id)
            exp_id = conn.execute(
                sa.select(t.runs.c.experiment_id).where(t.runs.c.run_uuid == run_id)
            ).scalar_one()
            for d in datasets:
                ds = d.dataset
                upsert(
                    conn,
                    t.datasets,
                    [
                        {
                            "dataset_uuid": uuid.uuid4().hex,
                            "experiment_id": exp_id,
                            "name": ds.name,
                            "digest": ds.digest,
                            "source_type": ds.source_type,
                            "source": ds.source,
                            "schema": ds.schema,
                            "profile": ds.profile,
                        }
                    ],
                    key=["experiment_id", "name", "digest"],
                )
                dataset_uuid = conn.execute(
                    sa.select(t.datasets.c.dataset_uuid).where(
                        t.datasets.c.experiment_id == exp_id,
                        t.datasets.c.name == ds.name,
                        t.datasets.c.digest == ds.digest,
                    )
                ).scalar_one()
                upsert(
                    conn,
                    t.run_inputs,
                    [{"run_uuid": run_id, "dataset_uuid": dataset_uuid}],
                    key=["run_uuid", "dataset_uuid"],
                )
                if d.tags:
                    upsert(
                        conn,
                        t.input_tags,
                        [
                            {
                                "run_uuid": run_id,
                                "dataset_uuid": dataset_uuid,
                                "key": tg.key,
                                "value": tg.value,
                            }
                            for tg in d.tags
                        ],
                        key=["run_uuid", "dataset_uuid", "key"],
                        update=["value"],
                    )

    def get_metric_history(
        self,
        run_id: str,
        key: str,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> PagedList[Metric]:
        limit = validation.validate_max_results(
            max_results or base.MAX_RESULTS_METRIC_HISTORY,
            base.MAX_RESULTS_METRIC_HISTORY,
            "metric history",
        )
        query_id = f"history|{run_id}|{key}"
        offset = decode_token(page_token, query_id)
        m = t.metrics
        with self._db.read() as conn:
            self._run_stage(conn, run_id)
            rows = fetch_tuples(
                conn,
                sa.select(m.c.value, m.c.is_nan, m.c.timestamp, m.c.step)
                .where(m.c.run_uuid == run_id, m.c.key == key)
                .order_by(m.c.step, m.c.timestamp, m.c.value)
                .limit(limit + 1)
                .offset(offset),
            )
        nan = math.nan
        items = [
            Metric(key, nan if is_nan else float(value), ts, step)
            for value, is_nan, ts, step in rows[:limit]
        ]
        token = encode_token(offset + limit, query_id) if len(rows) > limit else None
        return PagedList(items, token)

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        run_view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Run]:
        validation.validate_max_results(max_results, base.MAX_RESULTS_RUNS, "runs")
        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        run_view_type = ViewType(run_view_type)
        condition = run_filter_condition(parse_filter(filter_string, "runs"))
        order_keys = parse_order_by(order_by, "runs")
        query_id = (
            f"runs|{sorted(experiment_ids)}|{run_view_type.value}|{filter_string}|"
            f"{list(order_by or [])}"
        )
        offset = decode_token(page_token, query_id)
        runs, more = self.runs_at(
            experiment_ids, condition, run_view_type, order_keys, offset, max_results
        )
        token = encode_token(offset + max_results, query_id) if more else None
        return PagedList(runs, token)

    def runs_at(
        self,
        experiment_ids: Sequence[str],
        condition: Any,
        run_view_type: ViewType,
        order_keys: Sequence[OrderKey],
        offset: int,
        limit: int,
    ) -> tuple[list[Run], bool]:
        """Runs ``offset .. offset + limit`` matching a parsed filter, and whether more follow.

        What :meth:`search_runs` pages through; the web UI pages by number with it.
        """
        exp_ints = [i for i in map(_exp_id_int, experiment_ids) if i is not None]
        if not exp_ints:
            return [], False
        where = self._run_where(exp_ints, run_view_type, condition)
        with self._db.read() as conn:
            drive = self._metric_index_pays(conn, where, order_keys, offset + limit + 1)
            segments = run_order_segments(order_keys, drive_from_metric=drive)
            rows = self._ordered_runs(conn, where, segments, offset, limit + 1)
            runs = self._load_runs(conn, [_run_info(r) for r in rows[:limit]])
        return runs, len(rows) > limit

    def count_runs(
        self,
        experiment_ids: Sequence[str],
        expr: Expr | None,
        run_view_type: ViewType,
        cap: int,
    ) -> int:
        """How many runs match a parsed filter, counting no further than ``cap + 1``.

        A capped count stays cheap on 100,000 runs; the UI shows ``10,000+``.
        When the filter requires a metric range (``metrics.acc > 0.9 AND ...``)
        and that range holds fewer rows than the experiments have runs, SQLite
        counts from the metric's ``(key, value)`` index instead of testing
        every run: 2,000 matches of 100,000 runs in milliseconds, not 0.4 s.
        """
        exp_ints = [i for i in map(_exp_id_int, experiment_ids) if i is not None]
        if not exp_ints:
            return 0
        with self._db.read() as conn:
            source: Any = t.runs
            where = self._run_where(exp_ints, run_view_type, run_filter_condition(expr))
            driver = self._count_driver(conn, exp_ints, expr)
            if driver is not None:
                lm = t.latest_metrics.alias("count_metric")
                on = sa.and_(lm.c.run_uuid == t.runs.c.run_uuid, lm.c.key == driver.key)
                source = DrivingJoin(lm, t.runs, on)
                # The join already holds the driving clause: test only the others.
                assert expr is not None
                others = [c for c in _conjuncts(expr) if c is not driver]
                rest = run_filter_condition(And(tuple(others))) if others else sa.true()
                where = (
                    *self._run_where(exp_ints, run_view_type, rest),
                    metric_value_condition(lm, driver),
                )
            matching = sa.select(sa.literal(1)).select_from(source).where(*where).limit(cap + 1)
            total = sa.select(sa.func.count()).select_from(matching.subquery())
            return int(conn.execute(total).scalar_one())

    @staticmethod
    def _count_driver(
        conn: Connection, exp_ints: list[int], expr: Expr | None
    ) -> Comparison | None:
        """The metric range a count should read first, if one pays (SQLite only)."""
        if conn.dialect.name != "sqlite" or expr is None:
            return None
        ranges = [
            c
            for c in _conjuncts(expr)
            if isinstance(c, Comparison)
            and c.entity == "metric"
            and c.op in ("=", ">", ">=", "<", "<=")
        ]
        if not ranges:
            return None
        lm = t.latest_metrics
        best, fewest = None, None
        for c in ranges:
            rows = conn.execute(
                sa.select(sa.func.count())
                .select_from(lm)
                .where(lm.c.key == c.key, metric_value_condition(lm, c))
            ).scalar_one()
            if fewest is None or rows < fewest:
                best, fewest = c, rows
        runs = conn.execute(
            sa.select(sa.func.count())
            .select_from(t.runs)
            .where(t.runs.c.experiment_id.in_(exp_ints))
        ).scalar_one()
        return best if fewest is not None and fewest < runs else None

    @staticmethod
    def _run_where(exp_ints: list[int], run_view_type: ViewType, condition: Any) -> tuple[Any, ...]:
        return (
            t.runs.c.experiment_id.in_(exp_ints),
            t.runs.c.lifecycle_stage.in_([s.value for s in run_view_type.stages()]),
            condition,
        )

    @staticmethod
    def _metric_index_pays(
        conn: Connection, where: Sequence[Any], keys: Sequence[OrderKey], wanted: int
    ) -> bool:
        """Should SQLite read a metric-sorted page from the metric's index first?

        Yes when the page is a small part of the candidate runs (else one scan
        and a sort is cheaper) and those runs hold at least half of the
        metric's values (else the index walk wades through other experiments).
        PostgreSQL's planner has statistics and makes this choice itself.
        """
        if conn.dialect.name != "sqlite" or not keys or keys[0].entity != "metric":
            return False
        candidates = conn.execute(
            sa.select(sa.func.count()).select_from(t.runs).where(*where[:2])
        ).scalar_one()
        if wanted * 20 > candidates:
            return False
        lm = t.latest_metrics
        with_metric = conn.execute(
            sa.select(sa.func.count()).select_from(lm).where(lm.c.key == keys[0].key)
        ).scalar_one()
        return bool(candidates * 2 >= with_metric)

    @staticmethod
    def _ordered_runs(
        conn: Connection,
        where: Sequence[Any],
        segments: Sequence[OrderSegment],
        offset: int,
        limit: int,
    ) -> list[Any]:
        """Rows ``offset .. offset + limit`` of the matching runs, segment by segment."""
        found: list[Any] = []
        skip = offset
        for segment in segments:
            stmt = (
                sa.select(*(t.runs.c[c] for c in _RUN_COLUMNS))
                .select_from(segment.source)
                .where(*where, segment.condition)
                .order_by(*segment.order_by)
            )
            if len(segments) == 1:
                return list(conn.execute(stmt.offset(skip).limit(limit)).all())
            # Without knowing a segment's size, read through the skipped rows.
            rows = list(conn.execute(stmt.limit(skip + limit - len(found))).all())
            found.extend(rows[skip:])
            skip = max(0, skip - len(rows))
            if len(found) >= limit:
                break
        return found


def _conjuncts(expr: Expr) -> tuple[Expr, ...]:
    """The clauses that must all hold: an AND's clauses, or the expression itself."""
    return expr.clauses if isinstance(expr, And) else (expr,)


def _run_info(r: Sequence[Any]) -> RunInfo:
    """A RunInfo from a row of the ``_RUN_COLUMNS``, in that order."""
    run_id, exp_id, name, user_id, status, start, end, artifact_uri, stage = r
    return RunInfo(
        run_id=run_id,
        experiment_id=str(exp_id),
        run_name=name,
        user_id=user_id,
        status=RunStatus(status),
        start_time=start,
        end_time=end,
        artifact_uri=artifact_uri,
        lifecycle_stage=LifecycleStage(stage),
    )


def _validate_dataset(d: DatasetInput) -> None:
    ds = d.dataset
    if not ds.name or len(ds.name) > 500:
        raise InvalidParameter(f"Invalid dataset name {ds.name!r}: 1 to 500 characters.")
    if not ds.digest or len(ds.digest) > 128:
        raise InvalidParameter(f"Invalid dataset digest {ds.digest!r}: 1 to 128 characters.")
    for tag in d.tags:
        if not tag.key or len(tag.key) > 255 or len(tag.value) > 500:
            raise InvalidParameter(
                f"Invalid dataset input tag {tag.key!r}: keys up to 255 and values up to 500 "
                "characters."
            )
