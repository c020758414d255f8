"""Errors that end a verification with the ``error`` verdict.

Every problem with the user's input (model, spec, config) is raised as a :class:`PlanecutError`
subclass carrying a one-line, human-readable cause. The CLI turns it into the ``error`` verdict
and a single stderr line; anything else escaping is a bug in planecut, not in the input.
"""

from __future__ import annotations


class PlanecutError(Exception):
    """Base class: a clear, one-line cause that the user can act on."""

    kind = "error"

    def __str__(self) -> str:  # keep messages on one line for stderr and result files
        return " ".join(super().__str__().split())


class SpecError(PlanecutError):
    """A VNN-LIB file that cannot be read, parsed or type-checked.

    ``path``, ``line`` and ``column`` (1-based) locate the problem where known.
    """

    kind = "spec error"

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        self.path, self.line, self.column, self.message = path, line, column, message
        where = path or "<spec>"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")


class ModelError(PlanecutError):
    """An ONNX model that is missing, malformed or has invalid weights."""

    kind = "model error"


class UnsupportedError(PlanecutError):
    """A valid model or spec that uses something planecut cannot handle (named in the message)."""

    kind = "unsupported"


class MismatchError(PlanecutError):
    """Model and spec do not fit together (input/output counts)."""

    kind = "mismatch"


class ConfigError(PlanecutError):
    """An invalid configuration file or option."""

    kind = "config error"


class DeadlineExceeded(Exception):
    """Raised inside long computations when the verification deadline has passed.

    Not a :class:`PlanecutError`: running out of time is a ``timeout`` verdict, not bad input.
    """


def check_deadline(deadline: float | None) -> None:
    """Raise :class:`DeadlineExceeded` if ``time.monotonic()`` is past ``deadline`` (None: never)."""
    if deadline is not None:
        import time

        if time.monotonic() > deadline:
            raise DeadlineExceeded()
