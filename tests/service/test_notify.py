"""Notifications through a real HTTP receiver on loopback: each event arrives signed, with an id,
at least once, across a receiver that is down and an API restarted in between; two dispatchers
never send the same attempt; addresses outside the allow-list are refused at creation and at
delivery."""

from __future__ import annotations

import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.db.models import OutboxEvent, StudyRecord, StudyStatus
from service.notify.dispatcher import deliver_due, signature
from service.notify.outbox import emit
from service.optuna.trials import trial_id
from service.scheduling.budget import Budget, mark_completed_if_spent
from service.scheduling.failures import record_trial_outcome
from service.scheduling.trial_events import study_spec, trial_ended
from tests.conftest import make_spec

SECRET = "notify-secret-0123456789"
LR = optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)


class Receiver:
    """An HTTP receiver on 127.0.0.1 that records every POST and answers ``status``."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.delay_s = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay_s)
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver(monkeypatch) -> Iterator[Receiver]:
    from service.settings import get_settings

    monkeypatch.setenv("HPO_NOTIFY_ALLOW", "127.0.0.1")
    monkeypatch.setenv("HPO_NOTIFY_SECRET", SECRET)
    get_settings.cache_clear()
    found = Receiver()
    yield found
    found.server.shutdown()


def _wait(condition, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _complete_by_target(api, db, name: str = "cifar-search") -> None:
    study = optuna.load_study(study_name=name, storage=db.storage)
    trial = study.ask({"lr": LR})
    study.tell(trial, 0.7)
    assert api.patch(f"/studies/{name}", json={"stop_when": {"target": 0.5}}).json()["status"] == "completed"


def test_an_event_arrives_once_signed_with_its_id_and_its_delivery_is_shown(api, db, receiver):
    notify = [{"url": receiver.url, "events": ["study.completed"]}, {"url": receiver.url, "format": "slack"}]
    assert api.post("/studies", json=make_spec(notify=notify)).status_code == 201
    _complete_by_target(api, db)  # the API's dispatcher delivers it within a second or two
    _wait(lambda: len(receiver.received) == 2, "the event at both receivers")
    (headers, body), (_, slack) = sorted(receiver.received, key=lambda r: b'"text"' in r[1])
    event = json.loads(body)
    assert event["event"] == "study.completed" and event["study"] == "cifar-search"
    assert event["data"]["reason"].startswith("stop_when.target: best val_accuracy 0.7000")
    assert hmac.compare_digest(headers["X-HPO-Signature"], signature(body, SECRET))
    assert headers["X-HPO-Event-Id"] == event["id"] == json.loads(slack)["id"]  # one event, two receivers
    assert json.loads(slack)["text"].startswith("hpo: study.completed for study cifar-search: reason stop_when.target")
    time.sleep(1.5)  # another round of the dispatcher: nothing sent twice
    assert len(receiver.received) == 2
    shown = api.get("/studies/cifar-search/events").json()
    assert [(e["event"], e["status"], e["attempts"]) for e in shown] == [("study.completed", "delivered", 1)] * 2
    assert api.get("/studies/nowhere/events").status_code == 404


def test_a_receiver_down_and_an_api_restart_lose_no_event(api, db, receiver):
    assert api.post("/studies", json=make_spec(notify=[{"url": receiver.url}])).status_code == 201
    receiver.status = 503
    _complete_by_target(api, db)
    _wait(lambda: len(receiver.received) >= 1, "a first attempt")
    api.__exit__(None, None, None)  # the API stops with the event undelivered ...
    with db.session() as session:
        row = session.query(OutboxEvent).one()
        assert (row.status, row.attempts, row.last_error) == ("pending", 1, "answered 503")
        row.next_attempt_at = row.created_at  # due now: the test does not wait out the 5 s backoff
    receiver.status = 200
    from service.api import create_app

    with TestClient(create_app()) as restarted:  # ... and a new one delivers it
        _wait(lambda: restarted.get("/studies/cifar-search/events").json()[0]["status"] == "delivered", "delivery")
    ids = {body["id"] for body in receiver.bodies()}
    assert len(ids) == 1 and len(receiver.received) == 2  # the same event, sent again


def test_two_dispatchers_never_send_the_same_attempt(pg_db, receiver):
    from service.spec.schema import StudySpec
    from service.studies.lifecycle import create_study

    with pg_db.sessions() as session:
        create_study(session=session, storage=pg_db.storage, spec=StudySpec.model_validate(make_spec()))
    with pg_db.session() as session:
        for number in range(6):
            spec = {"notify": [{"url": receiver.url}]}
            emit(session, study="cifar-search", spec=spec, event="trial.failed", data={"trial": number})
    receiver.delay_s = 0.2  # both dispatchers are at work at once
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(deliver_due(pg_db))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 6 and sorted(body["data"]["trial"] for body in receiver.bodies()) == list(range(6))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254, a link-local address"),
        ("http://10.0.0.1/hook", "10.0.0.1, a private address"),
        ("http://localhost:9/hook", "a loopback address"),
    ],
)
def test_an_address_outside_the_allow_list_is_refused_at_creation(api, url, problem):
    answer = api.post("/studies", json=make_spec(notify=[{"url": url}]))
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "notify", "0", "url"] and problem in error["msg"], error
    assert api.get("/studies").json() == []


@pytest.mark.parametrize(
    "notify", [[{"url": "ftp://example.com/x"}], [{"url": "https://example.com", "events": ["study.exploded"]}]]
)
def test_a_bad_receiver_is_a_422_naming_it(api, notify):
    answer = api.post("/studies", json=make_spec(notify=notify))
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][:3] == ["body", "notify", 0]


def test_an_address_is_checked_again_at_delivery(db, monkeypatch):
    from service.settings import get_settings

    monkeypatch.delenv("HPO_NOTIFY_ALLOW", raising=False)
    get_settings.cache_clear()
    with db.session() as session:  # written when the name resolved elsewhere, say
        emit(session, study="s", spec={"notify": [{"url": "http://127.0.0.1:9/x"}]}, event="trial.failed", data={})
    assert deliver_due(db) == 0
    with db.session() as session:
        row = session.query(OutboxEvent).one()
        assert row.status == "pending" and row.last_error.startswith(
            "refused: 127.0.0.1 resolves to 127.0.0.1, a loopback"
        )


def test_a_failed_trial_and_a_new_best_at_most_once_a_minute_are_events(api, db, receiver):
    assert api.post("/studies", json=make_spec(notify=[{"url": receiver.url}])).status_code == 201
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    told = []
    for value in (0.4, 0.5, None):  # two new bests in a row, then a failure
        trial = study.ask({"lr": LR})
        study.tell(trial, value, state=None if value is not None else optuna.trial.TrialState.FAIL)
        told.append(trial)
        with db.session() as session:
            error = None if value is not None else "RuntimeError: boom"
            trial_ended(session, "cifar-search", trial_id(trial), error, study_spec(session, "cifar-search"))
    with db.session() as session:
        rows = [(r.event, json.loads(r.body)["data"]) for r in session.query(OutboxEvent).order_by(OutboxEvent.id)]
    assert rows == [
        ("study.new_best", {"trial": 0, "val_accuracy": 0.4, "previous_best": None}),  # 0.5 came within the minute
        ("trial.failed", {"trial": 2, "error": "RuntimeError: boom"}),
    ]


def test_a_spent_budget_and_the_failure_guard_are_events_written_with_the_change(api, db, receiver):
    notify = [{"url": receiver.url, "events": ["study.completed", "study.paused"]}]
    for name in ("spent", "failing"):
        assert (
            api.post("/studies", json=make_spec(name, max_trials=1, max_failed_trials=1, notify=notify)).status_code
            == 201
        )
    spent = optuna.load_study(study_name="spent", storage=db.storage)
    spent.tell(spent.ask({"lr": LR}), 0.5)
    assert api.get("/studies/spent").json()["status"] == "completed"  # the read that marks it writes the event
    with db.session() as session:
        assert record_trial_outcome(session, "failing", error="RuntimeError: boom", limit=1) is not None
    _wait(lambda: len(receiver.received) == 2, "both events")
    events = {body["study"]: body for body in receiver.bodies()}
    assert events["spent"]["event"] == "study.completed"
    assert events["spent"]["data"] == {"reason": "max_trials: 1 of 1 trials finished"}
    assert events["failing"]["event"] == "study.paused"
    assert events["failing"]["data"]["last_error"] == "RuntimeError: boom"


def test_a_budget_two_processes_find_spent_at_once_completes_the_study_once(pg_api, pg_db, receiver):
    notify = [{"url": receiver.url, "events": ["study.completed"]}]
    assert pg_api.post("/studies", json=make_spec("spent", max_trials=1, notify=notify)).status_code == 201
    study = optuna.load_study(study_name="spent", storage=pg_db.storage)
    study.tell(study.ask({"lr": LR}), 0.5)
    spent = Budget(trials=1, running=0, waiting=0, retries=0)
    with pg_db.session() as first, pg_db.session() as second:  # two workers' surveys, say
        records = [s.execute(select(StudyRecord).filter_by(name="spent")).scalar_one() for s in (first, second)]
        assert [r.status for r in records] == [StudyStatus.RUNNING] * 2
        assert mark_completed_if_spent(records[0], spent)
        first.commit()
        assert mark_completed_if_spent(records[1], spent)  # read as running, completed meanwhile
        second.commit()
    with pg_db.session() as session:
        events = session.execute(select(OutboxEvent.event).filter_by(study_name="spent")).scalars().all()
    assert events == ["study.completed"]
    assert pg_api.get("/studies/spent").json()["status"] == "completed"


def test_a_name_that_does_not_resolve_in_time_is_refused_without_holding_the_request(api, monkeypatch):
    from service.notify import targets

    released, real = threading.Event(), socket.getaddrinfo

    def hung_resolver(host, *args, **kwargs):  # a DNS server that never answers for this name
        if host == "hung.example.com":
            released.wait(60)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hung_resolver)
    monkeypatch.setattr(targets, "RESOLVE_TIMEOUT_S", 0.5)
    started = time.monotonic()
    answer = api.post("/studies", json=make_spec(notify=[{"url": "https://hung.example.com/hook"}]))
    waited = time.monotonic() - started
    released.set()
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["msg"].endswith("hung.example.com did not resolve within 0.5 s")
    assert waited < 30 and api.get("/studies").json() == []
