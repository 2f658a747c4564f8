"""``GET /studies/{name}/report`` and ``GET /report?studies=a,b``: a study's report, and several
studies compared, as self-contained HTML pages (service/reports says what they show)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse

from service.api.deps import DatabaseDep, TalliesDep, authorize_page
from service.api.schemas import answers
from service.reports.data import read_report
from service.reports.page import comparison_page, study_page

# response_class Response, not HTMLResponse: FastAPI documents every answer in the response class's media
# type, and the errors (404, 422) are JSON.
router = APIRouter(tags=["reports"], dependencies=[Depends(authorize_page)], responses=answers(401, 404, 503))
MAX_COMPARED = 8
HTML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "a self-contained HTML page"}
}


@router.get("/studies/{name}/report", response_class=Response, responses=HTML)
def study_report(name: str, request: Request, database: DatabaseDep, tallies: TalliesDep) -> HTMLResponse:
    """The study's report: spec, counts, cost, best trial, history, importances, curves, failures."""
    return HTMLResponse(study_page(read_report(database, name, tallies), str(request.base_url)))


@router.get("/report", response_class=Response, responses=HTML)
def compare_studies(
    studies: Annotated[str, Query(description=f"2 to {MAX_COMPARED} study names, comma-separated", examples=["a,b"])],
    database: DatabaseDep,
    tallies: TalliesDep,
) -> HTMLResponse:
    """Several studies on one page: cost-to-target curves, best accuracies and best configs."""
    names = compared_names(studies)
    return HTMLResponse(comparison_page([read_report(database, name, tallies) for name in names]))


def compared_names(studies: str) -> list[str]:
    """The study names of a comparison's query; a 422 naming the problem if they are not 2 to 8 distinct names."""
    names = [name.strip() for name in studies.split(",")]
    problem = None
    if any(not name for name in names):
        problem = "an empty study name"
    elif len(names) < 2 or len(names) > MAX_COMPARED:
        problem = f"{len(names)} studies named; compare 2 to {MAX_COMPARED}"
    elif len(set(names)) < len(names):
        problem = f"a study named twice: {sorted({n for n in names if names.count(n) > 1})}"
    if problem:
        raise RequestValidationError([{"type": "value_error", "loc": ["query", "studies"], "msg": problem}])
    return names
