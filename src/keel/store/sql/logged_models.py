"""Logged models in the SQL tracking store (mixed into :class:`SqlTrackingStore`).

Same rules as runs: set-based reads (one query per table for a page of
models), params immutable, a retried metric write never duplicated, soft
deletion.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.entities import (
    Experiment,
    LifecycleStage,
    LoggedModel,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    PagedList,
)
from keel.errors import InvalidParameter, NotFound
from keel.search.filter import parse_filter
from keel.search.order import OrderKey, parse_order_by
from keel.store import logged_models as contract
from keel.store import validation
from keel.store.base import now_ms
from keel.store.names import generate_run_name
from keel.store.paging import decode_token, encode_token
from keel.store.sql import schema as t
from keel.store.sql.engine import Raw, chunks, fetch_tuples, in_list, upsert
from keel.store.sql.logged_model_search import (
    DatasetRef,
    dataset_refs,
    logged_model_filter_condition,
    logged_model_order_by,
)

if TYPE_CHECKING:
    from keel.store.sql.engine import Database

_LM = t.logged_models
_MAX_ID_LENGTH = 64  # the model_id column


def _run_models_of(run_ids: list[Any]) -> Any:
    rm = t.run_models
    return (
        sa.select(rm.c.run_uuid, rm.c.model_id, rm.c.direction, rm.c.step)
        .where(rm.c.run_uuid.in_(run_ids))
        .order_by(rm.c.run_uuid, rm.c.direction, rm.c.step, rm.c.model_id)
    )


def _model_ids_in(ids: list[Any]) -> Any:
    return sa.select(_LM.c.model_id).where(_LM.c.model_id.in_(ids))


def not_found(model_id: str) -> NotFound:
    return NotFound(
        f"Logged model with ID '{model_id}' not found. Find models with "
        "search_logged_models (logged-models/search)."
    )


class SqlLoggedModels(contract.LoggedModelStore):
    """The :class:`~keel.store.logged_models.LoggedModelStore` methods over SQL."""

    if TYPE_CHECKING:
        _db: Database

        def _active_experiment(self, experiment_id: str) -> Experiment: ...
        def _run_stage(self, conn: Connection | Raw, run_id: str) -> str: ...

    def create_logged_model(
        self,
        experiment_id: str,
        name: str | None = None,
        *,
        source_run_id: str | None = None,
        model_type: str = "",
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> LoggedModel:
        exp = self._active_experiment(experiment_id)
        name = contract.validate_model_name(name or generate_run_name())
        contract.validate_model_type(model_type)
        params, tags = dict(params or {}), dict(tags or {})
        contract.validate_params(params)
        contract.validate_tags(tags)
        model_id = f"m-{uuid.uuid4().hex}"
        now = now_ms()
        model = LoggedModel(
            model_id=model_id,
            experiment_id=exp.experiment_id,
            name=name,
            creation_timestamp=now,
            last_updated_timestamp=now,
            artifact_location=contract.model_artifact_location(exp.artifact_location, model_id),
            model_type=model_type,
            source_run_id=source_run_id or None,
            params=params,
            tags=tags,
        )
        with self._db.write() as conn:
            if model.source_run_id is not None:
                self._run_stage(conn, model.source_run_id)  # NotFound for an unknown run
            conn.execute(
                sa.insert(_LM).values(
                    model_id=model_id,
                    experiment_id=int(exp.experiment_id),
                    name=name,
                    artifact_location=model.artifact_location,
                    creation_time=now,
                    last_updated_time=now,
                    status=model.status.value,
                    model_type=model_type,
                    source_run_id=model.source_run_id,
                    lifecycle_stage=LifecycleStage.ACTIVE.value,
                )
            )
            for table, values in ((t.logged_model_params, params), (t.logged_model_tags, tags)):
                if values:
                    conn.execute(
                        sa.insert(table),
                        [{"model_id": model_id, "key": k, "value": v} for k, v in values.items()],
                    )
        return model

    def get_logged_model(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        with self._db.read() as conn:
            row = conn.execute(sa.select(_LM).where(_LM.c.model_id == model_id)).first()
            if row is None or (row.lifecycle_stage != "active" and not allow_deleted):
                raise not_found(model_id)
            return self._load_models(conn, [row])[0]

    def _live(self, conn: Connection, model_id: str) -> None:
        stage = conn.execute(
            sa.select(_LM.c.lifecycle_stage).where(_LM.c.model_id == model_id)
        ).scalar()
        if stage != LifecycleStage.ACTIVE.value:
            raise not_found(model_id)

    def _touch(self, conn: Connection, model_id: str, **values: Any) -> None:
        conn.execute(
            sa.update(_LM)
            .where(_LM.c.model_id == model_id)
            .values(last_updated_time=now_ms(), **values)
        )

    def finalize_logged_model(self, model_id: str, status: LoggedModelStatus) -> LoggedModel:
        status = contract.parse_status(status)
        with self._db.write() as conn:
            self._live(conn, model_id)
            self._touch(conn, model_id, status=status.value)
        return self.get_logged_model(model_id)

    def set_logged_model_tags(self, model_id: str, tags: Mapping[str, str]) -> None:
        contract.validate_tags(tags)
        with self._db.write() as conn:
            self._live(conn, model_id)
            upsert(
                conn,
                t.logged_model_tags,
                [{"model_id": model_id, "key": k, "value": v} for k, v in tags.items()],
                key=["model_id", "key"],
                update=["value"],
            )
            self._touch(conn, model_id)

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        tags = t.logged_model_tags
        with self._db.write() as conn:
            self._live(conn, model_id)
            gone = conn.execute(
                sa.delete(tags).where(tags.c.model_id == model_id, tags.c.key == key)
            ).rowcount
            if not gone:
                raise NotFound(f"Logged model {model_id} has no tag {key!r}; nothing to delete.")
            self._touch(conn, model_id)

    def log_logged_model_params(self, model_id: str, params: Mapping[str, str]) -> None:
        contract.validate_params(params)
        table = t.logged_model_params
        with self._db.write() as conn:
            self._live(conn, model_id)
            upsert(
                conn,
                table,
                [{"model_id": model_id, "key": k, "value": v} for k, v in params.items()],
                key=["model_id", "key"],
            )
            for chunk in chunks(list(params)):
                for key, value in conn.execute(
                    sa.select(table.c.key, table.c.value).where(
                        table.c.model_id == model_id, table.c.key.in_(chunk)
                    )
                ):
                    if value != params[key]:
                        raise InvalidParameter(
                            f"Param {key!r} of logged model {model_id} was already logged with "
                            f"value {value!r}; cannot change it to {params[key]!r}. Params are "
                            "immutable."
                        )
            self._touch(conn, model_id)

    def delete_logged_model(self, model_id: str) -> None:
        with self._db.write() as conn:
            self._live(conn, model_id)
            self._touch(conn, model_id, lifecycle_stage=LifecycleStage.DELETED.value)

    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        datasets: Sequence[Mapping[str, str]] | None = None,
        max_results: int | None = None,
        order_by: Sequence[Mapping[str, Any]] | None = None,
        page_token: str | None = None,
    ) -> PagedList[LoggedModel]:
        ids = _experiment_ids(experiment_ids)
        limit = validation.validate_max_results(
            contract.DEFAULT_RESULTS_LOGGED_MODELS if max_results is None else max_results,
            contract.MAX_RESULTS_LOGGED_MODELS,
            "logged models",
        )
        refs = _datasets(datasets, "datasets")
        keys = _order_keys(order_by)
        where = logged_model_filter_condition(parse_filter(filter_string, "logged_models"), refs)
        query_id = json.dumps(
            [ids, filter_string or "", refs, [(k.entity, k.key, k.ascending, d) for k, d in keys]]
        )
        offset = decode_token(page_token, query_id)
        with self._db.read() as conn:
            rows = conn.execute(
                sa.select(_LM)
                .where(
                    _LM.c.experiment_id.in_(ids),
                    _LM.c.lifecycle_stage == LifecycleStage.ACTIVE.value,
                    where,
                )
                .order_by(*logged_model_order_by(keys))
                .limit(limit + 1)
                .offset(offset)
            ).all()
            models = self._load_models(conn, rows[:limit])
        token = encode_token(offset + limit, query_id) if len(rows) > limit else None
        return PagedList(models, token)

    def log_model_links(self, run_id: str, models: Sequence[LoggedModelOutput]) -> None:
        contract.validate_links(models)
        if not models:
            return
        with self._db.write() as conn:
            self._run_stage(conn, run_id)
            self._require_models(conn, {link.model_id for link in models})
            upsert(
                conn,
                t.run_models,
                [
                    {
                        "run_uuid": run_id,
                        "model_id": link.model_id,
                        "direction": link.direction,
                        "step": link.step,
                    }
                    for link in models
                ],
                key=["run_uuid", "model_id", "direction", "step"],
            )

    # -- helpers shared with the tracking store ----------------------------------

    def _require_models(self, conn: Connection | Raw, model_ids: set[str]) -> None:
        """NotFound naming the first id that is not a model (deleted ones count)."""
        ids = sorted(model_ids)
        for model_id in ids:
            if not isinstance(model_id, str) or len(model_id) > _MAX_ID_LENGTH:
                raise not_found(str(model_id)[:80])
        raw = Raw.of(conn)
        found: set[str] = set()
        for chunk in chunks(ids):
            found.update(r[0] for r in raw.all(*in_list(_model_ids_in, chunk)))
        for model_id in ids:
            if model_id not in found:
                raise not_found(model_id)

    def _write_model_metrics(self, raw: Raw, run_id: str, metrics: Sequence[Metric]) -> None:
        """The points of a run's batch that carry a ``model_id``, linked to their models."""
        self._require_models(raw, {m.model_id for m in metrics if m.model_id})
        rows = []
        for m in metrics:
            is_nan = math.isnan(m.value)
            rows.append(
                {
                    "model_id": m.model_id,
                    "key": m.key,
                    "step": m.step,
                    "timestamp": m.timestamp,
                    "run_uuid": run_id,
                    "dataset_name": m.dataset_name or "",
                    "dataset_digest": m.dataset_digest or "",
                    "value": 0.0 if is_nan else float(m.value),
                    "is_nan": is_nan,
                }
            )
        key = ["model_id", "key", "step", "timestamp", "run_uuid", "dataset_name"]
        upsert(raw, t.logged_model_metrics, rows, key=[*key, "dataset_digest", "value", "is_nan"])

    def _load_run_models(
        self, conn: Connection | Raw, run_ids: Sequence[str]
    ) -> dict[str, list[LoggedModelOutput]]:
        raw = Raw.of(conn)
        out: dict[str, list[LoggedModelOutput]] = defaultdict(list)
        for run_id, model_id, direction, step in raw.all(*in_list(_run_models_of, run_ids)):
            out[run_id].append(LoggedModelOutput(model_id, step, direction))
        return out

    def _load_models(self, conn: Connection, rows: Sequence[Any]) -> list[LoggedModel]:
        ids = [r.model_id for r in rows]
        params: dict[str, dict[str, str]] = defaultdict(dict)
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        metrics: dict[str, list[Metric]] = defaultdict(list)
        mm = t.logged_model_metrics
        for chunk in chunks(ids):
            for table, target in ((t.logged_model_params, params), (t.logged_model_tags, tags)):
                for model_id, key, value in fetch_tuples(
                    conn,
                    sa.select(table.c.model_id, table.c.key, table.c.value).where(
                        table.c.model_id.in_(chunk)
                    ),
                ):
                    target[model_id][key] = value
            for r in conn.execute(
                sa.select(mm)
                .where(mm.c.model_id.in_(chunk))
                .order_by(mm.c.model_id, mm.c.key, mm.c.step, mm.c.timestamp)
            ):
                metrics[r.model_id].append(
                    Metric(
                        r.key,
                        math.nan if r.is_nan else float(r.value),
                        r.timestamp,
                        r.step,
                        model_id=r.model_id,
                        dataset_name=r.dataset_name or None,
                        dataset_digest=r.dataset_digest or None,
                        run_id=r.run_uuid,
                    )
                )
        return [
            LoggedModel(
                model_id=r.model_id,
                experiment_id=str(r.experiment_id),
                name=r.name,
                creation_timestamp=r.creation_time,
                last_updated_timestamp=r.last_updated_time,
                artifact_location=r.artifact_location,
                status=LoggedModelStatus(r.status),
                model_type=r.model_type,
                source_run_id=r.source_run_id,
                deleted=r.lifecycle_stage != LifecycleStage.ACTIVE.value,
                params=params.get(r.model_id, {}),
                tags=tags.get(r.model_id, {}),
                metrics=tuple(metrics.get(r.model_id, ())),
            )
            for r in rows
        ]


def _experiment_ids(experiment_ids: Sequence[str]) -> list[int]:
    if isinstance(experiment_ids, str) or not experiment_ids:
        raise InvalidParameter(
            f"Invalid experiment_ids {experiment_ids!r}: give a list of one or more experiment ids."
        )
    out = []
    for value in experiment_ids:
        text = str(value)
        if not text.isdigit():
            raise InvalidParameter(
                f"Invalid experiment ID {value!r}. Experiment ID must be a valid integer."
            )
        out.append(int(text))
    return out


def _datasets(datasets: Sequence[Mapping[str, Any]] | None, where: str) -> tuple[DatasetRef, ...]:
    for d in datasets or ():
        if not isinstance(d, Mapping) or not isinstance(d.get("dataset_name"), str):
            raise InvalidParameter(
                f"Invalid entry {d!r} in {where}: expected "
                "{'dataset_name': ..., 'dataset_digest': ... (optional)}."
            )
    return dataset_refs(datasets)


def _order_keys(
    order_by: Sequence[Mapping[str, Any]] | None,
) -> list[tuple[OrderKey, tuple[DatasetRef, ...]]]:
    keys = []
    for item in order_by or ():
        if not isinstance(item, Mapping) or not isinstance(item.get("field_name"), str):
            raise InvalidParameter(
                f"Invalid order_by entry {item!r}: expected "
                "{'field_name': 'metrics.acc', 'ascending': false, ...}."
            )
        (key,) = parse_order_by([item["field_name"]], "logged_models")
        ascending = item.get("ascending", True)
        if not isinstance(ascending, bool):
            raise InvalidParameter(f"Invalid ascending {ascending!r} in order_by: true or false.")
        refs: tuple[DatasetRef, ...] = ()
        if item.get("dataset_name"):
            refs = _datasets([item], "order_by")
        keys.append((OrderKey(key.entity, key.key, ascending), refs))
    return keys
