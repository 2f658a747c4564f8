"""Routes under /studies. Each one calls a data function in service.studies.lifecycle (or service.studies.best_model).

Plain ``def`` routes: FastAPI runs them in its thread pool, so blocking database calls are fine.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import FileResponse
from pydantic import TypeAdapter

from service.api.deps import SessionDep, SpecsDep, StorageDep, TalliesDep, authorize
from service.api.schemas import BestOut, StudyOut, TrialOut, TrialPage, answers
from service.settings import get_settings
from service.spec.schema import StudySpec
from service.studies import changes, lifecycle, read
from service.studies import trials as study_trials
from service.studies.best_model import best_model_file
from service.studies.changes import StudyChange

router = APIRouter(
    prefix="/studies", tags=["studies"], dependencies=[Depends(authorize)], responses=answers(401, 403, 503)
)
NOT_FOUND = answers(404)
MAX_TRIAL_NUMBER = 2**31 - 1  # Optuna's trial numbers are 32-bit integers; a larger offset overflowed SQLite's
# The two reads that can be long are serialised once, straight to JSON. A route that returns its
# model has FastAPI validate it again against response_model first (3-4 ms for 200 studies).
STUDY_LIST = TypeAdapter(list[StudyOut])
TRIAL_PAGE = TypeAdapter(TrialPage)


# OpenAPI links: what a client (or a fuzzer) may call next on the study it created, by its name.
NAME_ROUTES: tuple[str, ...] = ("get_study", "list_trials", "best", "pause_study", "resume_study", "stop_study")
NAME_ROUTES += ("patch_study", "delete_study", "study_report", "export_csv", "study_events")
CREATED_LINKS = {route: {"operationId": route, "parameters": {"name": "$response.body#/name"}} for route in NAME_ROUTES}


def json_response(adapter: TypeAdapter[Any], content: Any) -> Response:
    """``content``, already validated, as a JSON response (response_model still documents it)."""
    return Response(adapter.dump_json(content), media_type="application/json")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=StudyOut,
    responses={
        **answers(400, 409, 413),
        201: {"links": CREATED_LINKS},
        422: {"description": "invalid spec; nothing written"},
    },
)
def create_study(
    spec: StudySpec, session: SessionDep, storage: StorageDep, tallies: TalliesDep, specs: SpecsDep
) -> StudyOut:
    """Start a search. The spec is validated in full before anything is written."""
    lifecycle.create_study(session=session, storage=storage, spec=spec)
    return get_study(spec.name, session, tallies, specs)


@router.get("", response_model=list[StudyOut])
def list_studies(session: SessionDep, tallies: TalliesDep, specs: SpecsDep) -> Response:
    """Every study with its status and progress, newest first."""
    summaries = read.list_studies(session=session, tallies=tallies, specs=specs)
    return json_response(STUDY_LIST, [StudyOut.from_summary(summary) for summary in summaries])


@router.get("/{name}", response_model=StudyOut, responses=NOT_FOUND)
def get_study(name: str, session: SessionDep, tallies: TalliesDep, specs: SpecsDep) -> StudyOut:
    """One study: spec, status, budget, counts by trial state, best value."""
    return StudyOut.from_summary(read.get_study(session=session, tallies=tallies, specs=specs, name=name))


@router.get("/{name}/trials", response_model=TrialPage, responses=NOT_FOUND)
def list_trials(
    name: str,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=MAX_TRIAL_NUMBER)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """A page of trials by number, with per-epoch validation accuracy."""
    total, page = study_trials.list_trials(session=session, name=name, offset=offset, limit=limit)
    trials = [TrialOut(**study_trials.trial_as_dict(t)) for t in page]
    return json_response(TRIAL_PAGE, TrialPage(total=total, offset=offset, limit=limit, trials=trials))


@router.get("/{name}/best", response_model=BestOut, responses=answers(404, 409))
def best(name: str, session: SessionDep, tallies: TalliesDep) -> BestOut:
    """The best trial by validation accuracy, and the config that reproduces it with `hpo train`."""
    return BestOut(**study_trials.best_trial(session=session, name=name, tallies=tallies))


@router.get(
    "/{name}/best/model",
    response_class=FileResponse,
    responses={
        **answers(404),
        200: {"content": {"application/octet-stream": {}}, "description": "the best trial's state_dict"},
    },
)
def best_model(name: str, session: SessionDep, tallies: TalliesDep) -> FileResponse:
    """The best trial's final weights: a state_dict for ``torch.load(..., weights_only=True)``
    (404 until a completed trial has them)."""
    root = get_settings().artifact_dir.resolve()
    path, number = best_model_file(session=session, name=name, artifact_root=root, tallies=tallies)
    return FileResponse(path, media_type="application/octet-stream", filename=f"{name}-trial-{number}.pt")


STATUS_CHANGE: dict[str, Any] = {"response_model": StudyOut, "responses": answers(404, 409)}


@router.patch(
    "/{name}",
    response_model=StudyOut,
    responses={**answers(400, 404, 409, 413), 422: {"description": "an invalid change; nothing written"}},
)
def patch_study(name: str, change: StudyChange, session: SessionDep, tallies: TalliesDep, specs: SpecsDep) -> StudyOut:
    """Change a running, paused or stopped study's ``max_trials`` or ``stop_when`` (not below the
    trials started or queued); workers follow from their next claim, and a rule met now completes it."""
    changes.change_study(session=session, name=name, change=change)
    return get_study(name, session, tallies, specs)


@router.post("/{name}/pause", **STATUS_CHANGE)
def pause_study(name: str, session: SessionDep, tallies: TalliesDep, specs: SpecsDep) -> StudyOut:
    """Stop handing out new trials; running ones finish."""
    lifecycle.change_status(session=session, name=name, action="pause")
    return get_study(name, session, tallies, specs)


@router.post("/{name}/resume", **STATUS_CHANGE)
def resume_study(name: str, session: SessionDep, tallies: TalliesDep, specs: SpecsDep) -> StudyOut:
    """Hand out trials again."""
    lifecycle.change_status(session=session, name=name, action="resume")
    return get_study(name, session, tallies, specs)


@router.post("/{name}/stop", **STATUS_CHANGE)
def stop_study(name: str, session: SessionDep, tallies: TalliesDep, specs: SpecsDep) -> StudyOut:
    """End the study: running trials stop at their next epoch boundary."""
    lifecycle.change_status(session=session, name=name, action="stop")
    return get_study(name, session, tallies, specs)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=answers(404, 409))
def delete_study(name: str, session: SessionDep, storage: StorageDep) -> None:
    """Remove the study, its Optuna study, all its trials and their checkpoints (409 while
    another study starts from its weights)."""
    lifecycle.delete_study(session=session, storage=storage, name=name, artifact_root=get_settings().artifact_dir)
