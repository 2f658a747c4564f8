"""Faults that concern one trial fail or drop that trial; the slot carries on serving the others.

The slot loop runs in this process (as a worker child runs it) with training replaced by a
zero-cost objective: what is tested is the loop's handling, not training.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from sqlalchemy import select, update

from objectives.data import DatasetError
from objectives.train import TrainResult
from service.db.models import StudyRecord
from service.optuna.trials import trial_id
from service.scheduling.failures import record_trial_outcome
from service.settings import get_settings
from service.studies.cleanup import remove_orphans
from service.studies.lifecycle import change_status, delete_study
from tests.worker.helpers import new_study, slot_loop, study_view, trials
from worker.claims import claim_trial
from worker.objective import TrialObjective
from worker.runner import ProcessPoisoned
from worker.study_choice import survey


def _zero_train(data: Any, config: Any, *, report: Any, **_: Any) -> TrainResult:
    for epoch in range(1, config.epochs + 1):
        report(epoch, 0.1 * epoch)
    epochs = config.epochs
    return TrainResult(0.5, 0.5, loss=0.0, epochs=epochs, seconds=0.0, images_per_second=0.0, device="cpu", threads=1)


def _no_data(*_: Any, **__: Any) -> None:
    return None


def test_a_study_deleted_while_its_trial_runs_drops_the_trial_and_the_slot_serves_the_next(db):
    new_study(db, name="doomed", max_trials=2, priority=5)  # served first
    new_study(db, name="other", max_trials=3)

    deleted: list[str] = []

    def delete_mid_training(data: Any, config: Any, *, report: Any, **_: Any) -> TrainResult:
        if not deleted:  # the first trial is doomed's (its priority is higher)
            report(1, 0.1)
            with db.sessions() as session:
                delete_study(
                    session=session, storage=db.storage, name="doomed", artifact_root=get_settings().artifact_dir
                )
            deleted.append("doomed")
        return _zero_train(data, config, report=report)

    @dataclass
    class DeletesItsStudy(TrialObjective):
        load_fn: Any = _no_data
        train_fn: Any = delete_mid_training

    slot_loop(db, DeletesItsStudy).run()  # raised KeyError from Optuna before

    assert deleted and [t.state for t in trials(db, "other")] == [TrialState.COMPLETE] * 3
    assert "doomed" not in optuna.get_all_study_names(db.storage)


def test_a_spec_that_no_longer_validates_fails_its_trial_with_the_reason_and_the_slot_goes_on(db):
    new_study(db, name="broken", max_trials=1, priority=5)
    new_study(db, name="other", max_trials=2)
    with db.sessions() as session:  # e.g. written by an older or newer version of the service
        broken = {**_record_spec(session, "broken"), "epochs": 0}
        session.execute(update(StudyRecord).where(StudyRecord.name == "broken").values(spec=broken))
        session.commit()

    @dataclass
    class ZeroCost(TrialObjective):
        load_fn: Any = _no_data
        train_fn: Any = _zero_train

    slot_loop(db, ZeroCost).run()  # left the trial RUNNING and raised ValidationError before

    [failed] = trials(db, "broken")
    assert failed.state == TrialState.FAIL
    assert "ValidationError" in failed.user_attrs["error"] and "epochs" in failed.user_attrs["error"]
    assert [t.state for t in trials(db, "other")] == [TrialState.COMPLETE] * 2


def _record_spec(session, name: str) -> dict[str, Any]:
    return dict(session.query(StudyRecord).filter_by(name=name).one().spec)


def test_a_study_whose_optuna_side_was_deleted_elsewhere_is_skipped_and_the_others_served(db):
    new_study(db, name="ghost", max_trials=3, priority=5)  # would be served first
    new_study(db, name="other", max_trials=2)
    optuna.delete_study(study_name="ghost", storage=db.storage)  # as optuna-dashboard's delete does

    @dataclass
    class ZeroCost(TrialObjective):
        load_fn: Any = _no_data
        train_fn: Any = _zero_train

    finished = threading.Event()
    loop = slot_loop(db, ZeroCost)
    runner = threading.Thread(target=lambda: (loop.run(), finished.set()), daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert finished.is_set(), "the slot kept waiting on the ghost study (--burst never ended)"
    assert [t.state for t in trials(db, "other")] == [TrialState.COMPLETE] * 2

    # The API's sweep removes the orphan's row; a study still being created is left alone.
    new_study(db, name="in-the-making")
    optuna.delete_study(study_name="in-the-making", storage=db.storage)
    with db.sessions() as session:
        session.execute(update(StudyRecord).where(StudyRecord.name == "in-the-making").values(status="creating"))
        session.commit()
    assert remove_orphans(db, get_settings().artifact_dir) == ["ghost"]
    with db.sessions() as session:
        assert sorted(session.scalars(select(StudyRecord.name))) == ["in-the-making", "other"]


def test_a_study_whose_trials_keep_failing_is_paused_with_the_reason_before_it_burns_its_budget(db):
    broken = {"kind": "imagefolder", "path": "cifar10-sample", "limit": 310, "val_fraction": 0.2}
    new_study(db, name="bad-data", max_trials=10, max_failed_trials=3, priority=5, dataset=broken)
    new_study(db, name="other", max_trials=2)

    def unreadable(dataset: dict[str, Any], **_: Any) -> None:
        if dataset["limit"] == broken["limit"]:
            raise DatasetError("cannot read image /data/x/train/frog/0001.jpg: OSError: Truncated File Read")

    @dataclass
    class BrokenData(TrialObjective):
        load_fn: Any = unreadable
        train_fn: Any = _zero_train

    slot_loop(db, BrokenData).run()

    assert [t.state for t in trials(db, "bad-data")] == [TrialState.FAIL] * 3  # not 10
    view = study_view(db, "bad-data")
    assert view.status == "paused"
    assert "3 failed trials in a row" in view.status_reason and "0001.jpg" in view.status_reason
    assert [t.state for t in trials(db, "other")] == [TrialState.COMPLETE] * 2

    with db.sessions() as session:  # the user fixed the data and resumes: the guard starts afresh
        resumed = change_status(session=session, name="bad-data", action="resume")
    assert resumed.status == "running" and resumed.status_reason is None
    assert resumed.consecutive_failures == 0


def test_a_trial_that_does_not_fail_ends_the_run_of_failures(db):
    new_study(db, name="flaky", max_failed_trials=3)
    outcomes = ["boom", "boom", None, "boom", "boom"]
    with db.session() as session:
        reasons = [record_trial_outcome(session, "flaky", error=e, limit=3) for e in outcomes]
    assert reasons == [None] * 5
    assert study_view(db, "flaky").status == "running"
    with db.session() as session:
        assert record_trial_outcome(session, "flaky", error="boom", limit=3) is not None


def test_a_retry_queued_after_the_study_was_completed_reopens_it_and_runs(db):
    """Optuna fails a stale trial and queues its retry in two transactions; a budget check between
    them completed the study, and the retry then waited forever (found by benchmarks/chaos.py)."""
    new_study(db, name="s", max_trials=1)
    claim = claim_trial(db, "s", db.storage, {"worker": "test"})
    db.storage.set_trial_user_attr(claim.trial_id, "error", "HandBack: worker shutting down")
    db.storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)  # fail_stale_trials, first half
    survey(db)  # a worker's look at the studies in between: the budget looks spent
    assert study_view(db, "s").status == "completed"

    study = optuna.load_study(study_name="s", storage=db.storage)
    db.stale_trial_retry()(study, study.get_trials()[0])  # the second half: the retry is queued
    assert study_view(db, "s").status == "running"
    assert trials(db, "s")[1].user_attrs == {}  # not its predecessor's error

    @dataclass
    class ZeroCost(TrialObjective):
        load_fn: Any = _no_data
        train_fn: Any = _zero_train

    slot_loop(db, ZeroCost).run()
    assert [t.state for t in trials(db, "s")] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study_view(db, "s").status == "completed"


def test_hand_backs_do_not_use_up_a_lineage_s_retries_crashes_do(db):
    """Found by benchmarks/chaos.py: a lineage handed back by SIGTERMs three times, then killed
    once, failed for good ("retries used up") although only one of those was a crash."""
    new_study(db, name="s", max_trials=1)
    study = optuna.load_study(study_name="s", storage=db.storage)
    current = claim_trial(db, "s", db.storage, {"worker": "test"}).trial_id

    def end_and_retry(handed_back: bool) -> bool:
        """Fail the current trial as a hand-back or a crash; True if a retry was queued."""
        nonlocal current
        db.storage.set_trial_state_values(current, TrialState.FAIL)
        before = len(study.get_trials())
        db.stale_trial_retry(handed_back=handed_back)(study, db.storage.get_trial(current))
        if len(study.get_trials()) == before:
            return False
        current = trial_id(study.get_trials()[-1])
        db.storage.set_trial_state_values(current, TrialState.RUNNING)
        return True

    assert all(end_and_retry(handed_back=True) for _ in range(5))  # shut-downs on purpose: always retried
    assert [end_and_retry(handed_back=False) for _ in range(4)] == [True, True, True, False]  # MAX_RETRY crashes


def test_a_cuda_error_that_breaks_the_context_ends_the_slot_after_failing_its_trial(db):
    """A sticky CUDA error would fail every later trial of the process in milliseconds; the slot
    fails this one (with the error recorded) and exits for its supervisor to start it afresh.
    Out of memory fails only the trial: the slot goes on."""
    new_study(db, name="s", max_trials=4)
    errors = iter(
        [
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
            torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
        ]
    )

    def failing_train(*_: Any, **__: Any) -> TrainResult:
        raise next(errors)

    @dataclass
    class OnABrokenGpu(TrialObjective):
        load_fn: Any = _no_data
        train_fn: Any = failing_train

    with pytest.raises(ProcessPoisoned, match="illegal memory access"):
        slot_loop(db, OnABrokenGpu).run()
    failed = trials(db, "s")
    assert [t.state for t in failed] == [TrialState.FAIL, TrialState.FAIL]  # no third claim
    assert failed[0].user_attrs["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert failed[1].user_attrs["error"].startswith("AcceleratorError: CUDA error: an illegal memory access")
