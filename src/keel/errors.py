"""Every error Keel raises on purpose, with its MLflow ``error_code`` and HTTP status.

    KeelError                       INTERNAL_ERROR            500
    ├── InvalidParameter            INVALID_PARAMETER_VALUE   400
    │   └── FilterSyntaxError       INVALID_PARAMETER_VALUE   400
    ├── NotFound                    RESOURCE_DOES_NOT_EXIST   404
    ├── AlreadyExists               RESOURCE_ALREADY_EXISTS   400
    ├── InvalidState                INVALID_STATE             400
    ├── SchemaOutOfDate             INVALID_STATE             400
    ├── StoreUnavailable            TEMPORARILY_UNAVAILABLE   503
    └── MissingDependency           INTERNAL_ERROR            500

Messages say what was wrong, with the value, and what to do about it:

>>> raise NotFound("Experiment '42' does not exist. List experiments with `keel experiments list`.")
Traceback (most recent call last):
...
keel.errors.NotFound: Experiment '42' does not exist. List experiments with `keel experiments list`.
"""

from __future__ import annotations

from typing import ClassVar


class KeelError(Exception):
    """Base of every deliberate Keel error."""

    error_code: ClassVar[str] = "INTERNAL_ERROR"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The MLflow REST error body: ``{"error_code": ..., "message": ...}``."""
        return {"error_code": self.error_code, "message": self.message}


class InvalidParameter(KeelError):
    """A caller passed a value Keel cannot accept."""

    error_code = "INVALID_PARAMETER_VALUE"
    http_status = 400


class FilterSyntaxError(InvalidParameter):
    """A search filter or order-by clause that does not parse; names position and token."""

    def __init__(self, message: str, *, text: str = "", position: int | None = None) -> None:
        super().__init__(message)
        self.text = text
        self.position = position


class NotFound(KeelError):
    """The named experiment, run, metric or artifact does not exist."""

    error_code = "RESOURCE_DOES_NOT_EXIST"
    http_status = 404


class AlreadyExists(KeelError):
    """Creating something whose name is taken."""

    error_code = "RESOURCE_ALREADY_EXISTS"
    http_status = 400


class InvalidState(KeelError):
    """The object exists but is in a state that forbids the operation (e.g. deleted)."""

    error_code = "INVALID_STATE"
    http_status = 400


class SchemaOutOfDate(InvalidState):
    """The database was made by an older Keel; ``keel db upgrade`` fixes it."""


class StoreUnavailable(KeelError):
    """The database or server behind a tracking URI cannot be opened or reached."""

    error_code = "TEMPORARILY_UNAVAILABLE"
    http_status = 503


class MissingDependency(KeelError):
    """An optional package is needed for this call; the message says which extra."""


def require(module: str, extra: str, purpose: str) -> None:
    """Raise :class:`MissingDependency` unless ``module`` imports.

    >>> require("json", "none", "tests")
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependency(
            f"{purpose} needs the '{module}' package, which is not installed. "
            f"Install it with: pip install 'keel[{extra}]'"
        )
