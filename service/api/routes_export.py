"""``GET /studies/{name}/trials.csv`` and ``.jsonl``: every trial of a study as a file, streamed a
page of trials at a time (service/studies/export.py says what the columns hold)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from service.api.deps import DatabaseDep, authorize
from service.api.schemas import answers
from service.studies import export

router = APIRouter(
    prefix="/studies", tags=["studies"], dependencies=[Depends(authorize)], responses=answers(401, 404, 503)
)


def _file(name: str, suffix: str, media_type: str, lines: Iterator[str]) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{name}-trials.{suffix}"'}
    return StreamingResponse(lines, media_type=media_type, headers=headers)


@router.get("/{name}/trials.csv", response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}}}})
def export_csv(name: str, database: DatabaseDep) -> StreamingResponse:
    """Every trial as a CSV row: number, state, value, searched parameters, metrics, timing, error."""
    names = export.study_columns(database, name)
    return _file(name, "csv", "text/csv", export.csv_lines(names, export.trial_rows(database, name, names)))


@router.get(
    "/{name}/trials.jsonl", response_class=StreamingResponse, responses={200: {"content": {"application/jsonl": {}}}}
)
def export_jsonl(name: str, database: DatabaseDep) -> StreamingResponse:
    """Every trial as one JSON object per line, with the CSV's columns as keys."""
    names = export.study_columns(database, name)
    return _file(name, "jsonl", "application/jsonl", export.jsonl_lines(export.trial_rows(database, name, names)))
