"""What a spec names outside itself, checked and pinned when the study is created: its dataset
folder, the weights it starts from (``init``) and the earlier study it warm-starts from
(``enqueue_from``).

Run before anything is written; each problem is a SpecError naming the field (a 422). The
stored spec records what was found (the earlier study's best trial and its weights file, the
configs enqueued), so every trial, and `hpo train` later, uses the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import select
from sqlalchemy.orm import Session

from objectives.config import ImageFolderDataset, KFold, capped_counts, check_classes
from objectives.init import (
    FileInit,
    InitError,
    PretrainedInit,
    StudyInit,
    TorchvisionInit,
    check_weights_fit,
    init_weights_file,
)
from objectives.paths import IMAGE_SUFFIXES, DataPathError, resolve_under
from service.artifacts import study_artifact_dir, weights_file
from service.db.models import StudyRecord, StudyStatus
from service.errors import SpecError
from service.settings import Settings
from service.spec.schema import StudySpec
from service.spec.space import contains


def pin_references(session: Session, storage: BaseStorage, spec: StudySpec, settings: Settings) -> StudySpec:
    """``spec`` with its dataset, ``init`` and ``enqueue_from`` checked and resolved; SpecError if one cannot be."""
    _check_dataset(spec, settings)
    pinned: dict[str, Any] = {}
    if isinstance(spec.init, StudyInit):
        pinned["init"] = _pin_study_init(session, storage, spec, settings)
        _check_fit(settings.artifact_dir / pinned["init"].weights, spec, "init.study")
    elif isinstance(spec.init, FileInit | TorchvisionInit | PretrainedInit):
        weights = _require_weights_file(spec, settings)
        if weights is not None:
            _check_fit(weights, spec, "init")
    if spec.enqueue_from is not None:
        pinned["enqueue"] = _with_configs_from(session, storage, spec)
    return spec.model_copy(update=pinned) if pinned else spec


def hold_init_study(session: Session, spec: StudySpec, artifact_root: Path) -> None:
    """Share-lock the study whose weights ``spec`` starts from (``init: {kind: study}``, pinned)
    until the session's transaction ends, and check that study and the pinned weights file are
    still there (else roll back, SpecError).

    Call it in the transaction that inserts ``spec``'s study. ``delete_study`` and
    ``service.artifacts.prune_unpinned_weights`` lock that row for update before they look for the studies starting
    from it, so neither can race such a create: one waits for the other's commit and then sees it
    (PostgreSQL; SQLite has no row locks).
    """
    if not isinstance(spec.init, StudyInit):
        return
    name, trial, weights = spec.init.study, spec.init.trial, spec.init.weights
    query = select(StudyRecord.status).where(StudyRecord.name == name).with_for_update(read=True)
    problem = None
    if session.scalar(query) in (None, StudyStatus.CREATING, StudyStatus.DELETING):
        problem = f"no study named {name!r}"
    elif weights is not None and not (artifact_root / weights).is_file():
        problem = f"the weights of study {name!r}'s best trial ({trial}) are gone"
    if problem is not None:
        session.rollback()
        raise SpecError("init.study", problem)


def _check_dataset(spec: StudySpec, settings: Settings) -> None:
    """An image folder stays inside HPO_DATA_DIR (symlinks too), has the class folders named, and
    enough images of each class for the k-fold folds."""
    dataset = spec.dataset
    if not isinstance(dataset, ImageFolderDataset):
        return
    try:
        root = resolve_under(settings.data_dir, dataset.path)
    except DataPathError as exc:
        raise SpecError("dataset.path", str(exc)) from None
    if not (root / "train").is_dir():
        return  # a worker says so when it loads the dataset
    present = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if dataset.classes:
        try:
            check_classes(dataset.classes, present)
        except ValueError as exc:
            raise SpecError("dataset.classes", str(exc).removeprefix("dataset.classes: ")) from None
    validation = dataset.split()
    if isinstance(validation, KFold):
        counts = [_image_count(root / "train" / name) for name in dataset.classes or present]
        fewest = min(capped_counts(counts, dataset.limit, dataset.per_class), default=0)
        if fewest < validation.folds:
            message = f"{validation.folds} folds need {validation.folds} images of every class; one has {fewest}"
            raise SpecError("dataset.validation.folds", message)


def _image_count(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _require_weights_file(spec: StudySpec, settings: Settings) -> Path | None:
    """The weights file ``spec.init`` names; None where a worker may still download it."""
    try:
        return init_weights_file(
            spec.init,
            objective=spec.objective,
            data_dir=settings.data_dir,
            artifact_dir=settings.artifact_dir,
            allow_download=False,  # the API never downloads; with HPO_ALLOW_DOWNLOAD a worker does
        )
    except InitError as exc:
        if isinstance(spec.init, TorchvisionInit) and settings.allow_download:
            return None
        message = str(exc).removeprefix("init: ")
        field = "init.weights" if message.startswith("init.weights: ") else "init"
        raise SpecError(field, message.removeprefix("init.weights: ")) from None


def _check_fit(weights: Path, spec: StudySpec, field: str) -> None:
    """SpecError naming ``field`` unless the tensors in ``weights`` fit the model the spec trains."""
    try:
        check_weights_fit(weights, spec.objective, spec.fixed())
    except InitError as exc:
        raise SpecError(field, str(exc).removeprefix("init: ")) from None


def _earlier_study(session: Session, field: str, name: str, objective: str) -> StudyRecord:
    record = session.scalars(select(StudyRecord).where(StudyRecord.name == name)).first()
    if record is None or record.status in (StudyStatus.CREATING, StudyStatus.DELETING):
        raise SpecError(field, f"no study named {name!r}")
    if record.spec.get("objective", "cnn") != objective:
        raise SpecError(field, f"study {name!r} trained {record.spec.get('objective')!r}, not {objective!r}")
    return record


def _completed(storage: BaseStorage, field: str, name: str) -> list[FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=storage)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise SpecError(field, f"study {name!r} has no completed trial yet")
    return sorted(done, key=lambda t: (-(t.value or 0.0), t.number))


def _pin_study_init(session: Session, storage: BaseStorage, spec: StudySpec, settings: Settings) -> StudyInit:
    assert isinstance(spec.init, StudyInit)
    name = spec.init.study
    record = _earlier_study(session, "init.study", name, spec.objective)
    best = _completed(storage, "init.study", name)[0]
    root = settings.artifact_dir.resolve()
    weights = weights_file(study_artifact_dir(root, record.id, record.created_at), best.number)
    if not weights.is_file():
        raise SpecError("init.study", f"the weights of study {name!r}'s best trial ({best.number}) are gone")
    return StudyInit(kind="study", study=name, trial=best.number, weights=weights.relative_to(root).as_posix())


def _with_configs_from(session: Session, storage: BaseStorage, spec: StudySpec) -> list[dict]:
    """``spec.enqueue`` followed by the earlier study's top configs, each restricted to this
    study's searched parameters (a value outside this space is left for the sampler)."""
    assert spec.enqueue_from is not None
    name, top = spec.enqueue_from.study, spec.enqueue_from.top
    _earlier_study(session, "enqueue_from.study", name, spec.objective)
    searched = spec.searched()
    configs = list(spec.enqueue)
    for trial in _completed(storage, "enqueue_from.study", name)[:top]:
        config = {k: v for k, v in trial.params.items() if k in searched and contains(searched[k], v)}
        if config and config not in configs:
            configs.append(config)
    if len(configs) > spec.max_trials:
        raise SpecError("enqueue_from.top", f"{len(configs)} configs to enqueue but max_trials is {spec.max_trials}")
    return configs
