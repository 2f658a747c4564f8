"""Search-space entries of a study spec and their checks against the objective registry."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from objectives.registry import Param, check_value
from objectives.strict import StrictModel

MAX_CHOICES = 64


class _Range(StrictModel):
    """What FloatRange and IntRange share: low < high, and low > 0 on a log scale."""

    type: str  # narrowed to a Literal by each subclass; declared here so that it comes first in a dump
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be less than high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self


class FloatRange(_Range):
    """A float searched between low and high (log-uniformly when log is true)."""

    type: Literal["float"]
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _step_on_a_linear_scale(self) -> FloatRange:
        if self.log and self.step is not None:
            raise ValueError("step cannot be combined with log")
        return self


class IntRange(_Range):
    """An integer searched between low and high inclusive."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(default=1, ge=1)


class Categorical(StrictModel):
    """One of a list of values."""

    type: Literal["categorical"]
    choices: list[float | int | str | bool] = Field(min_length=1, max_length=MAX_CHOICES)

    @model_validator(mode="after")
    def _distinct(self) -> Categorical:
        if len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError("choices must be distinct")
        return self


Distribution = Annotated[FloatRange | IntRange | Categorical, Field(discriminator="type")]
FixedValue = float | int | str | bool


def _entry_kind(value: Any) -> str:
    return "searched" if isinstance(value, dict | BaseModel) else "fixed"


# A bare value fixes the parameter; an object with "type" searches it.
SpaceEntry = Annotated[
    Annotated[Distribution, Tag("searched")] | Annotated[FixedValue, Tag("fixed")],
    Discriminator(_entry_kind),
]


def check_entry(param: Param, entry: SpaceEntry) -> None:
    """Raise ValueError if a search-space entry can produce values ``param`` does not accept."""
    if isinstance(entry, Categorical):
        for choice in entry.choices:
            check_value(param, choice)
    elif isinstance(entry, FloatRange | IntRange):
        if param.type == "categorical":
            raise ValueError(f"{param.name} takes one of {list(param.choices or [])}: use a categorical entry")
        if param.type == "int" and isinstance(entry, FloatRange):
            raise ValueError(f"{param.name} is an integer parameter: use type 'int' or 'categorical'")
        check_value(param, entry.low)
        check_value(param, entry.high)
    else:
        check_value(param, entry)


def contains(entry: SpaceEntry, value: Any) -> bool:
    """Whether ``value`` lies in the search-space entry (used for enqueued configs)."""
    if isinstance(entry, Categorical):
        return any((value == c and type(value) is type(c)) or _same_number(value, c) for c in entry.choices)
    if isinstance(entry, FloatRange | IntRange):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if isinstance(entry, IntRange) and value != int(value):
            return False
        return entry.low <= value <= entry.high
    return bool(value == entry)


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )
