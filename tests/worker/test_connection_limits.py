"""A database that is out of connections: worker slots wait for it (and say so) instead of
crash-looping, and a slot keeps a single connection between its database calls."""

from __future__ import annotations

import time

from sqlalchemy import text

from service.db.database import Database, Heartbeat
from service.optuna.trial_cache import trial_cache
from service.optuna.trials import heartbeat_thread
from tests.pg_fixtures import LimitedRole
from tests.worker.helpers import assert_exact_budget, finish, new_study, start_worker, wait_for
from worker.claims import claim_trial


def test_a_slot_waits_for_a_full_server_and_then_runs(pg_db: Database, limited_role: LimitedRole, tmp_path):
    new_study(pg_db, max_trials=1)
    log = tmp_path / "worker.log"
    proc = start_worker(pg_db, tmp_path / "artifacts", "--burst", log=log, env={"HPO_DATABASE_URL": limited_role.url})
    wait_for(lambda: "too many connections" in log.read_text(), 60, "the slot to log that the server is full")
    assert proc.poll() is None, log.read_text()  # waiting, not exited
    limited_role.allow(5)
    assert finish(proc) == 0, log.read_text()
    assert_exact_budget(pg_db, "s", 1)
    assert "database unavailable (OperationalError" in log.read_text()  # the line an operator sees


def connections_named(database: Database, application_name: str) -> int:
    """How many connections to this database carry ``application_name`` (pg_stat_activity)."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = :n")
    with database.engine.connect() as connection:
        return int(connection.execute(query, {"n": application_name}).scalar_one())


def test_a_worker_slot_keeps_one_connection_between_database_calls(pg_db: Database):
    """The claim (lock session and Optuna's insert) and the heartbeat thread beside the trial's own
    reports each need a second connection for a moment; the pool closes it again."""
    new_study(pg_db, max_trials=2)
    worker = Database(pg_db.url, heartbeat=Heartbeat(interval=1, grace=4), role="worker")
    try:
        storage = trial_cache(worker.storage)
        claim = claim_trial(worker, "s", storage, {"worker": "test"})
        assert claim is not None
        with heartbeat_thread(worker.storage, claim.trial_id, first_beat_done=True):
            for epoch in range(3):
                storage.set_trial_intermediate_value(claim.trial_id, epoch, 0.1)
                time.sleep(0.6)  # the heartbeat thread beats on its own connection meanwhile
        assert worker.storage.get_trial(claim.trial_id).intermediate_values == {0: 0.1, 1: 0.1, 2: 0.1}
        assert connections_named(pg_db, "hpo-worker") == 1
    finally:
        worker.dispose()
