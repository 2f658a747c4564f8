"""What every config and spec model shares (torch-free): the strict base, and a study name's syntax."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"  # and not dots alone: see _not_dots_alone


class StrictModel(BaseModel):
    """Every model of a config or spec: unknown fields, non-finite numbers and coerced types are errors.

    Strict: ``"3"`` or ``true`` is not a number (an int is still accepted where a float is asked).
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _not_dots_alone(name: str) -> str:
    """Refuse ``.``, ``..`` and the like: names appear in paths and URLs, where those mean something else."""
    if not name.strip("."):
        raise ValueError("a study name needs a letter, digit, '_' or '-' besides dots")
    return name


StudyName = Annotated[str, Field(pattern=NAME_PATTERN), AfterValidator(_not_dots_alone)]
