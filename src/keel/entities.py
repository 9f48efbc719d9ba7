"""Plain values of the tracking domain: no I/O, no wire format.

Every store returns these and every layer above consumes them. They are frozen
dataclasses so that a value read from a store can be passed around and cached
without anybody mutating it behind the store's back.

>>> m = Metric(key="loss", value=0.25, timestamp=1_700_000_000_000, step=3)
>>> m.key, m.step
('loss', 3)
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class RunStatus(str, enum.Enum):
    """Where a run is in its life; names and values match MLflow's."""

    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_terminated(self) -> bool:
        return self in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)


class LifecycleStage(str, enum.Enum):
    """Soft-delete state of experiments and runs."""

    ACTIVE = "active"
    DELETED = "deleted"


class ViewType(str, enum.Enum):
    """Which lifecycle stages a search returns."""

    ACTIVE_ONLY = "ACTIVE_ONLY"
    DELETED_ONLY = "DELETED_ONLY"
    ALL = "ALL"

    def stages(self) -> tuple[LifecycleStage, ...]:
        if self is ViewType.ACTIVE_ONLY:
            return (LifecycleStage.ACTIVE,)
        if self is ViewType.DELETED_ONLY:
            return (LifecycleStage.DELETED,)
        return (LifecycleStage.ACTIVE, LifecycleStage.DELETED)


@dataclass(frozen=True, slots=True)
class Metric:
    """One measurement of a metric: value at a step and a time (ms since epoch).

    ``model_id`` links the point to a logged model (MLflow 3), and
    ``dataset_name``/``dataset_digest`` to the dataset it was measured on; a
    logged model's metrics also carry the ``run_id`` they were logged in.
    """

    key: str
    value: float
    timestamp: int
    step: int = 0
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Param:
    """An immutable hyperparameter or setting; values are always strings."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class RunTag:
    """A mutable label on a run."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class ExperimentTag:
    """A mutable label on an experiment."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class InputTag:
    """A label on a dataset input, e.g. ``mlflow.data.context = training``."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Dataset:
    """What a run consumed: identified by name and content digest."""

    name: str
    digest: str
    source_type: str = ""
    source: str = ""
    schema: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class DatasetInput:
    """A dataset linked to a run, with tags such as its context (training, eval)."""

    dataset: Dataset
    tags: tuple[InputTag, ...] = ()

    @property
    def context(self) -> str | None:
        for tag in self.tags:
            if tag.key == CONTEXT_TAG:
                return tag.value
        return None


CONTEXT_TAG = "mlflow.data.context"


@dataclass(frozen=True, slots=True)
class Experiment:
    """A named group of runs."""

    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: LifecycleStage = LifecycleStage.ACTIVE
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The attributes of a run (everything but params, metrics, tags, inputs)."""

    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: RunStatus
    start_time: int
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: LifecycleStage = LifecycleStage.ACTIVE


@dataclass(frozen=True, slots=True)
class RunData:
    """What was logged to a run. ``metrics`` holds the latest value per key."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Run:
    """A run: its info, its data and the datasets it consumed.

    >>> run.info.run_id, run.data.metrics["accuracy"]  # doctest: +SKIP
    ('0f4c…', 0.91)
    """

    info: RunInfo
    data: RunData = field(default_factory=RunData)
    inputs: tuple[DatasetInput, ...] = ()
    # Logged models the run produced or used (MLflow 3's run inputs/outputs).
    models: tuple[LoggedModelOutput, ...] = ()

    @property
    def run_id(self) -> str:
        return self.info.run_id


@dataclass(frozen=True, slots=True)
class PagedList(Generic[T]):
    """One page of results and the opaque token for the next (None at the end)."""

    items: Sequence[T]
    next_page_token: str | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T:
        return self.items[index]


# Tags Keel and MLflow set on runs; MLflow's names so the MLflow UI and client read them.
RUN_NAME_TAG = "mlflow.runName"
PARENT_RUN_ID_TAG = "mlflow.parentRunId"
USER_TAG = "mlflow.user"
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_BRANCH_TAG = "mlflow.source.git.branch"
GIT_REPO_URL_TAG = "mlflow.source.git.repoURL"
GIT_DIRTY_TAG = "keel.source.git.dirty"
PYTHON_VERSION_TAG = "keel.python.version"


@dataclass(frozen=True, slots=True)
class FileInfo:
    """An entry of an artifact listing; ``path`` is relative to the run's artifact root."""

    path: str
    is_dir: bool
    file_size: int | None = None


# ---------------------------------------------------------------------------
# Model registry


class ModelStage(str, enum.Enum):
    """The legacy stages a model version moves through; MLflow's names and spelling."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"

    @classmethod
    def parse(cls, text: str) -> ModelStage:
        """Case-insensitive, as MLflow accepts ``production`` for ``Production``.

        >>> ModelStage.parse("production")
        <ModelStage.PRODUCTION: 'Production'>
        """
        for stage in cls:
            if stage.value.lower() == str(text).strip().lower():
                return stage
        raise ValueError(f"Unknown stage {text!r}; use one of: {', '.join(s.value for s in cls)}.")


class ModelVersionStatus(str, enum.Enum):
    """Registration state; Keel registers synchronously, so versions are READY at once."""

    PENDING_REGISTRATION = "PENDING_REGISTRATION"
    FAILED_REGISTRATION = "FAILED_REGISTRATION"
    READY = "READY"


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version of a model: where it came from and what it is called now.

    ``source`` is the model's URI as registered (``runs:/…/model``, a package
    path, ``models:/m-…``); ``aliases`` are the aliases pointing at it.

    >>> v = ModelVersion("churn", 3, 0, 0, source="runs:/abc/model", run_id="abc")
    >>> v.uri
    'models:/churn/3'
    """

    name: str
    version: int
    creation_timestamp: int
    last_updated_timestamp: int
    source: str = ""
    run_id: str | None = None
    description: str = ""
    user_id: str = ""
    current_stage: ModelStage = ModelStage.NONE
    status: ModelVersionStatus = ModelVersionStatus.READY
    status_message: str = ""
    run_link: str = ""
    model_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A named model: its versions' newest per stage, its aliases and tags.

    ``aliases`` maps each alias to the version it points at;
    ``latest_versions`` holds the newest version in each stage.
    """

    name: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    latest_versions: tuple[ModelVersion, ...] = ()


class LoggedModelStatus(str, enum.Enum):
    """Upload state of a logged model; values are MLflow's wire names."""

    PENDING = "LOGGED_MODEL_PENDING"
    READY = "LOGGED_MODEL_READY"
    UPLOAD_FAILED = "LOGGED_MODEL_UPLOAD_FAILED"


@dataclass(frozen=True, slots=True)
class LoggedModel:
    """A model logged in an experiment (MLflow 3's LoggedModel): its files live at
    ``artifact_location``, and it keeps its own params, tags and linked metrics.

    >>> m = LoggedModel("m-1", "0", "model", 0, 0, "mlflow-artifacts:/0/models/m-1/artifacts")
    >>> m.uri, m.status.name
    ('models:/m-1', 'PENDING')
    """

    model_id: str
    experiment_id: str
    name: str
    creation_timestamp: int
    last_updated_timestamp: int
    artifact_location: str
    status: LoggedModelStatus = LoggedModelStatus.PENDING
    model_type: str = ""
    source_run_id: str | None = None
    deleted: bool = False
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: tuple[Metric, ...] = ()

    @property
    def uri(self) -> str:
        return f"models:/{self.model_id}"


@dataclass(frozen=True, slots=True)
class LoggedModelOutput:
    """A run's link to a model it produced (``step``) or used (``direction="input"``)."""

    model_id: str
    step: int = 0
    direction: str = "output"
