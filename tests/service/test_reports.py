"""GET /studies/{name}/report and GET /report?studies=: self-contained pages that show every part,
say so where a plot has nothing to draw (never a 500), and refuse bad input with a 404 or a 422.
The browser test (tests/cli/test_report_browser.py) checks that the plots draw."""

from __future__ import annotations

import json
import re

import optuna
import pytest
from plotly.offline import get_plotlyjs

from service.reports.dashboard_plots import refresh_dashboard_plots
from service.studies.read import SpecCache
from service.studies.tallies import StudyTallies
from tests.conftest import make_spec
from tests.service.conftest import KFOLD_METRICS, study_with_every_state

LR = optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)
BATCH = optuna.distributions.CategoricalDistribution([64, 128, 256])


def _figures(page: str) -> set[str]:
    """The ids of the plots drawn (plotly's divs)."""
    return set(re.findall(r'<div id="([\w-]+)" class="plotly-graph-div"', page))


def _messages(page: str) -> dict[str, str]:
    """The plots not drawn, with the sentence shown instead."""
    return dict(re.findall(r"<p class='message' id='([\w-]+)'>([^<]*)</p>", page))


def _completed(db, name: str, values: list[float], distributions: dict) -> optuna.Study:
    study = optuna.load_study(study_name=name, storage=db.storage)
    for value in values:
        trial = study.ask(distributions)
        trial.report(value / 2, 1)
        trial.report(value, 2)
        study.tell(trial, value)
    return study


def test_a_report_shows_counts_cost_best_trial_plots_failures_and_spec(api, db):
    assert api.post("/studies", json=make_spec()).status_code == 201
    study_with_every_state(db)
    answer = api.get("/studies/cifar-search/report")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert "<h1>Study cifar-search</h1>" in page
    for shown in (
        "trials complete</td><td>2",
        "trials pruned</td><td>1",
        "trials fail</td><td>1",
        "trials running</td><td>1",
    ):
        assert shown in page, shown
    assert "compute on unknown (sum of trial durations)" in page  # trials told by ask/tell record no device
    assert "<tr><td>trial</td><td>4</td></tr><tr><td>val_accuracy</td><td>0.7000</td>" in page  # the best
    assert (
        "hpo study best cifar-search --config-out best.json &amp;&amp; hpo train --config best.json --threads 1" in page
    )
    assert "http://testserver/studies/cifar-search/best/model" in page
    assert "InitError: init: the weights file x.pt does not exist" in page  # the failure, with its error
    assert "&quot;max_trials&quot;: 4" in page  # the spec
    assert _figures(page) == {"history", "cost-epochs", "cost-seconds", "parallel", "curves"}
    assert _messages(page) == {
        "importances": "Importances need at least 8 complete trials; this study has 2.",
        "losses": "No trial here recorded its per-epoch losses.",  # told by ask/tell: no worker recorded them
    }
    # self-contained: plotly's JavaScript is in the page; the rest of it names nothing to fetch
    assert get_plotlyjs() in page
    ours = page.replace(get_plotlyjs(), "")
    assert (
        "Plotly.newPlot" in ours and "<script src" not in ours and "http" not in ours.replace("http://testserver/", "")
    )


def test_a_k_fold_best_shows_its_folds_test_accuracy_as_mean_and_spread(api, db):
    assert api.post("/studies", json=make_spec()).status_code == 201
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    trial = study.ask({"lr": LR})
    trial.set_user_attr("metrics", KFOLD_METRICS)
    study.tell(trial, 0.61)
    page = api.get("/studies/cifar-search/report").text
    assert "0.6250 ± 0.0150 over 2 folds (0.6300 ensembled)" in page


def test_a_study_with_no_completed_trial_gets_a_page_that_says_so(api, db):
    assert api.post("/studies", json=make_spec("empty")).status_code == 201
    page = api.get("/studies/empty/report")
    assert page.status_code == 200
    assert "No trial of this study has completed yet" in page.text
    assert _figures(page.text) == set()
    assert set(_messages(page.text)) == {
        "history",
        "cost-epochs",
        "cost-seconds",
        "importances",
        "parallel",
        "curves",
        "losses",
    }


def test_importances_of_one_parameter_are_a_sentence_and_of_two_a_plot(api, db):
    for name in ("one-param", "two-params"):
        assert api.post("/studies", json=make_spec(name)).status_code == 201
    values = [0.3 + 0.02 * i for i in range(10)]
    _completed(db, "one-param", values, {"lr": LR})
    _completed(db, "two-params", values, {"lr": LR, "batch_size": BATCH})
    one = api.get("/studies/one-param/report").text
    assert _messages(one)["importances"] == "The study searches 1 parameter(s) (lr): nothing to rank."
    two = api.get("/studies/two-params/report").text
    assert "importances" in _figures(two) and "importances" not in _messages(two)


def test_a_comparison_shows_each_study_s_best_and_cost_curves(api, db):
    for name in ("scratch", "finetune"):
        assert api.post("/studies", json=make_spec(name)).status_code == 201
    _completed(db, "scratch", [0.4, 0.5], {"lr": LR})
    _completed(db, "finetune", [0.7], {"lr": LR})
    answer = api.get("/report", params={"studies": "scratch,finetune"})
    assert answer.status_code == 200, answer.text
    page = answer.text
    assert "<h1>Studies compared: scratch, finetune</h1>" in page
    assert "<td>scratch</td><td>running</td><td>2 / 4</td><td>0.5000</td>" in page
    assert "<td>finetune</td><td>running</td><td>1 / 4</td><td>0.7000</td>" in page
    assert _figures(page) == {"cost-epochs", "cost-seconds"}
    assert page.count('"name":"scratch"') == 2 and page.count('"name":"finetune"') == 2  # a curve per study and axis


@pytest.mark.parametrize(
    ("studies", "problem"),
    [
        (",".join(f"s{i}" for i in range(9)), "9 studies named; compare 2 to 8"),
        ("a,b,a", "a study named twice: ['a']"),
        ("a", "1 studies named; compare 2 to 8"),
        ("a,,b", "an empty study name"),
    ],
)
def test_a_comparison_of_too_many_too_few_or_repeated_studies_is_a_422(api, studies, problem):
    answer = api.get("/report", params={"studies": studies})
    assert answer.status_code == 422
    assert answer.json()["detail"] == [{"type": "value_error", "loc": ["query", "studies"], "msg": problem}]


def test_an_unknown_study_is_a_404_in_a_report_and_a_comparison(api):
    assert api.post("/studies", json=make_spec("known")).status_code == 201
    assert api.get("/studies/nowhere/report").status_code == 404
    answer = api.get("/report", params={"studies": "known,nowhere"})
    assert answer.status_code == 404 and "no study named 'nowhere'" in answer.text
    assert api.get("/report").status_code == 422  # the studies are required


def _plots(db, name: str) -> dict[str, dict]:
    """The study's custom plots as optuna-dashboard reads them: id -> plotly figure."""
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    study_id = db.storage.get_study_id_from_name(name)
    return {
        key: json.loads(value)
        for key, value in get_plotly_graph_objects(db.storage.get_study_system_attrs(study_id)).items()
    }


def _with_curve(study: optuna.Study, value: float, epochs: int) -> None:
    trial = study.ask({"lr": LR})
    curve = {"epoch": list(range(1, epochs + 1)), "train_loss": [2.0 / e for e in range(1, epochs + 1)]}
    curve["val_loss"] = [2.2 / e for e in range(1, epochs + 1)]
    trial.set_user_attr("epochs", curve)
    for epoch in range(1, epochs + 1):
        trial.report(value * epoch / epochs, epoch)
    study.tell(trial, value)


def test_the_dashboard_shows_the_best_trials_curves_redrawn_when_a_trial_completes(api, db):
    assert api.post("/studies", json=make_spec()).status_code == 201
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    for value in (0.3, 0.5):
        _with_curve(study, value, epochs=40)  # long curves: each figure takes several attribute chunks
    tallies, specs = StudyTallies(), SpecCache()
    assert refresh_dashboard_plots(db, tallies, specs) == 1
    shown = _plots(db, "cifar-search")
    assert set(shown) == {"learning-curves", "losses"}
    assert [t["name"] for t in shown["learning-curves"]["data"]] == ["#1 complete", "#0 complete"]  # best first
    assert len(shown["losses"]["data"]) == 4  # train and validation loss of each
    assert refresh_dashboard_plots(db, tallies, specs) == 0  # nothing new: nothing redrawn
    assert refresh_dashboard_plots(db, StudyTallies(), SpecCache()) == 0  # nor by a restarted API

    _with_curve(study, 0.4, epochs=2)  # a shorter figure replaces a longer one whole (no chunk left behind)
    assert refresh_dashboard_plots(db, tallies, specs) == 1
    shown = _plots(db, "cifar-search")
    assert [t["name"] for t in shown["learning-curves"]["data"]] == ["#1 complete", "#2 complete", "#0 complete"]


def test_a_sweep_round_draws_for_its_time_and_leaves_the_rest_to_the_next(api, db):
    """A first drawing of many studies does not hold up the sweep's other work: a round stops
    when its time is up (having drawn at least one study, the newest first)."""
    for name in ("older", "newer"):
        assert api.post("/studies", json=make_spec(name)).status_code == 201
        _with_curve(optuna.load_study(study_name=name, storage=db.storage), 0.5, epochs=3)
    tallies, specs = StudyTallies(), SpecCache()
    assert refresh_dashboard_plots(db, tallies, specs, round_s=0) == 1
    assert set(_plots(db, "newer")) == {"learning-curves", "losses"} and _plots(db, "older") == {}
    assert refresh_dashboard_plots(db, tallies, specs, round_s=0) == 1
    assert set(_plots(db, "older")) == {"learning-curves", "losses"}
    assert refresh_dashboard_plots(db, tallies, specs, round_s=0) == 0
