"""What GET /studies/{name}/report costs on a study of 20,000 trials.

A report reads every trial of its study as a summary row and only a bounded sample in full
(service/reports/data.py), so its cost should stay within a few seconds however large the study.
This benchmark builds a study of 20,000 trials on PostgreSQL in bulk SQL, shaped like a real
search (60% complete with 5 reported epochs, 33% pruned after 1 or 2, 7% failed with an error;
three searched parameters; a config and metrics on each complete trial), then times the report
through the real app (FastAPI's TestClient, in process): the first call after start-up, and the
median of the next ones. It ends with ``report trials N render_ms X`` (goal: X < 3000).

It also times what the learning curves cost a trial: an epoch's report through the worker's
storage alone and with the curve written in its transaction (the two alternating, 100 epochs).

    python -m benchmarks.report [--quick] [--trials N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from sqlalchemy import create_engine, text

from benchmarks.common import save
from benchmarks.databases import create_database, database_url, drop_database, postgres_server
from benchmarks.study_reads import api_on

CALLS = 5
REPORTS = 100  # epochs reported by each of the two trials of the report-path timing
CONFIG = {"objective": "cnn", "params": {"lr": 0.01, "batch_size": 128, "aug_strength": 0.5, "width": 0.25}}
CONFIG["dataset"] = {"kind": "imagefolder", "path": "cifar10-sample", "limit": 3000, "val_fraction": 0.1}
METRICS = {"val_accuracy": 0.5, "test_accuracy": 0.5, "loss": 1.2, "epochs": 5, "seconds": 20.0, "device": "cpu"}


def create_study(url: str, name: str, trials: int) -> None:
    """The study ``name`` (paused, so the API's sweep leaves it alone) with ``trials`` trials in bulk."""
    import optuna

    from service.db.database import Database
    from service.spec.schema import StudySpec
    from service.studies.lifecycle import change_status
    from service.studies.lifecycle import create_study as create

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    database = Database(url)
    spec = {"name": name, "dataset": CONFIG["dataset"], "epochs": 5, "max_trials": 100_000}
    with database.sessions() as session:
        create(session=session, storage=database.storage, spec=StudySpec.model_validate(spec))
        change_status(session=session, name=name, action="pause")
    database.dispose()
    _fill(url, name, trials)


def _fill(url: str, name: str, count: int) -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, distribution_to_json

    lr = distribution_to_json(FloatDistribution(1e-4, 1e-1, log=True))
    batch = distribution_to_json(CategoricalDistribution([64, 128, 256]))
    aug = distribution_to_json(FloatDistribution(0.0, 1.0))
    of_study = "FROM trials WHERE study_id = :s"
    complete = f"{of_study} AND state = 'COMPLETE'"
    attr = "INSERT INTO trial_user_attributes (trial_id, key, value_json) SELECT trial_id,"
    statements = [
        "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) "
        "SELECT g, :s, CASE WHEN g % 15 = 7 THEN 'FAIL' WHEN g % 3 = 1 THEN 'PRUNED' ELSE 'COMPLETE' END::trialstate,"
        " now() - (:n - g) * interval '10 s',"
        " now() - (:n - g) * interval '10 s' + (5 + random() * 30) * interval '1 s' "
        "FROM generate_series(0, :n - 1) g",
        "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
        f"SELECT trial_id, 'lr', exp(ln(1e-4) + random() * ln(1e3)), :lr {of_study}",
        "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
        f"SELECT trial_id, 'batch_size', floor(random() * 3), :batch {of_study}",
        "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
        f"SELECT trial_id, 'aug_strength', random(), :aug {of_study}",
        "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, intermediate_value_type) "
        "SELECT trial_id, s, 0.1 + 0.1 * s + 0.2 * random(), 'FINITE' FROM trials, generate_series(1, 5) s "
        "WHERE study_id = :s AND (state = 'COMPLETE' OR (state = 'PRUNED' AND s <= 1 + number % 2))",
        "INSERT INTO trial_values (trial_id, objective, value, value_type) "
        "SELECT t.trial_id, 0, i.intermediate_value, 'FINITE' FROM trials t JOIN trial_intermediate_values i "
        "ON i.trial_id = t.trial_id AND i.step = (SELECT max(step) FROM trial_intermediate_values j "
        "WHERE j.trial_id = t.trial_id) WHERE t.study_id = :s AND t.state IN ('COMPLETE', 'PRUNED')",
        f"{attr} 'device', '\"cpu\"' {of_study}",
        f"{attr} 'config', :config {complete}",
        f"{attr} 'metrics', :metrics {complete}",
        f"{attr} 'error', '\"RuntimeError: CUDA out of memory\"' {of_study} AND state = 'FAIL'",
    ]
    engine = create_engine(url)
    with engine.begin() as connection:
        study = connection.execute(text("SELECT study_id FROM studies WHERE study_name = :n"), {"n": name}).scalar()
        values = {"s": study, "n": count, "lr": lr, "batch": batch, "aug": aug}
        values |= {"config": json.dumps(CONFIG), "metrics": json.dumps(METRICS)}
        for statement in statements:
            connection.execute(text(statement), values)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def time_reports(url: str, name: str) -> tuple[float, float, int]:
    """The first report's milliseconds after start-up, the median of the next ``CALLS``, and the page's bytes."""
    with api_on(url) as api:
        times, size = [], 0
        for _ in range(CALLS + 1):
            started = time.perf_counter()
            answer = api.get(f"/studies/{name}/report")
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.text[:500]
            size = len(answer.content)
    return times[0], statistics.median(times[1:]), size


def time_epoch_reports(url: str, epochs: int = REPORTS) -> tuple[float, float]:
    """Median milliseconds of an epoch's report (Optuna's intermediate value) of a running trial,
    without and with the learning curve riding on it (the worker's 'epochs' attribute), alternating."""
    import optuna

    from objectives.curves import EpochMetrics, recorded
    from service.db.database import Database
    from service.optuna.trials import trial_id

    database = Database(url, role="worker")
    study = optuna.load_study(study_name="big", storage=database.storage)
    plain, with_curve = study.ask(), study.ask()
    times: dict[str, list[float]] = {"plain": [], "curve": []}
    curve: list[EpochMetrics] = []
    for epoch in range(1, epochs + 1):
        curve.append(EpochMetrics(epoch, 1.0 / epoch, 1.1 / epoch, 0.5, 2.0, 1000.0))
        for name, trial in (("plain", plain), ("curve", with_curve)):
            started = time.perf_counter()
            if name == "curve":
                database.storage.set_user_attrs_on_report(trial_id(trial), {"epochs": recorded(curve)})
            trial.report(0.5, epoch)
            times[name].append((time.perf_counter() - started) * 1000)
    database.dispose()
    return statistics.median(times["plain"]), statistics.median(times["curve"])


def main() -> None:
    """Build the study, time its report, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the same 20,000 trials (the run is short either way)")
    parser.add_argument("--trials", type=int, default=20_000)
    args = parser.parse_args()
    server = postgres_server()
    database = create_database(server)
    try:
        url = database_url(server, database)
        started = time.perf_counter()
        create_study(url, "big", args.trials)
        print(f"built a study of {args.trials:,} trials in {time.perf_counter() - started:.1f} s")
        first, median, size = time_reports(url, "big")
        plain, with_curve = time_epoch_reports(url)
    finally:
        drop_database(server, database)
    print(f"first report after start-up: {first:.0f} ms; median of the next {CALLS}: {median:.0f} ms; {size:,} bytes")
    print(f"an epoch's report: {plain:.2f} ms alone, {with_curve:.2f} ms with the learning curve (median of {REPORTS})")
    save(
        f"report{'_quick' if args.quick else ''}",
        {
            "trials": args.trials,
            "first_ms": round(first, 1),
            "median_ms": round(median, 1),
            "bytes": size,
            "epoch_report_ms": {"plain": round(plain, 3), "with_curve": round(with_curve, 3)},
        },
    )
    print(f"report trials {args.trials} render_ms {median:.0f}")


if __name__ == "__main__":
    main()
