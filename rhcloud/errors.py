"""Errors and exclusions shared by every stage.

``RhcloudError`` is the base of every error rhcloud raises on purpose (a configuration, a
catalog, a dataset that cannot be used): the CLI prints its message, never a traceback.
An :class:`Exclusion` is what a stage records when one input cannot be used and the run goes
on without it; ``tables/excluded.csv`` lists them (``zstore``, ``reason``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


class RhcloudError(ValueError):
    """An input or configuration rhcloud cannot use; the message says which and why."""


class DatasetError(RhcloudError):
    """A dataset that cannot be used; ``str()`` names the store and what is wrong."""

    def __init__(self, zstore: str, reason: str):
        super().__init__(f"{zstore}: {reason}")
        self.zstore = zstore
        self.reason = reason


@dataclass(frozen=True)
class Exclusion:
    """One input left out of a run: the store or file (``zstore``; the catalog row's id
    for datasets), the stage that excluded it and why."""

    zstore: str
    reason: str
    stage: str = ""

    def row(self) -> dict[str, str]:
        """The ``tables/excluded.csv`` row."""
        return {"zstore": self.zstore, "reason": self.reason}

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def reason_of(exc: BaseException) -> str:
    """The reason an exception gives for excluding its input (a DatasetError's own reason,
    else the exception's type and message)."""
    if isinstance(exc, DatasetError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"
