"""``GET /pretrained``: the catalogue of published weights a study can start from (objectives.pretrained)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from objectives.pretrained import CATALOGUE
from service.api.deps import authorize
from service.api.schemas import PretrainedOut, answers

router = APIRouter(tags=["catalogue"], dependencies=[Depends(authorize)], responses=answers(401))


@router.get("/pretrained", response_model=list[PretrainedOut])
def list_pretrained() -> list[dict[str, Any]]:
    """Every entry of the catalogue: its objective, where its file comes from, whether this
    installation has it (and its size), and the input scaling a model started from it uses."""
    return [entry.describe() for entry in CATALOGUE.values()]
