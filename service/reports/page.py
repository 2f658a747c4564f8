"""The HTML of a study's report and of a comparison: one self-contained page each, with plotly's
JavaScript inlined (no request leaves the browser; the file works offline)."""

from __future__ import annotations

import functools
import html
import json
import statistics
from datetime import UTC, datetime
from typing import Any

from plotly.offline import get_plotlyjs

from service.reports import figures
from service.reports.data import CURVES, SAMPLE, StudyReport
from service.reports.figures import Drawn

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; }
td, th { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; } .muted { color: #666; } .figure { min-height: 380px; }
.message { background: #fff8e1; border: 1px solid #f0d58c; padding: .8rem; }
"""


def study_page(report: StudyReport, api_url: str) -> str:
    """The report of one study (service/reports/data.read_report) as a page; ``api_url``: where the
    API answers (the model's download link)."""
    study, name = report.study, html.escape(report.study.name)
    body = [
        f"<h1>Study {name}</h1>",
        f"<p class='muted'>{_status(report)} · report made {_now()} · objective: val_accuracy (maximised)</p>",
    ]
    if not report.complete:
        body.append("<p class='message'>No trial of this study has completed yet: there is no best trial to show.</p>")
    body += ["<h2>Trials and cost</h2>", _table(_cost_rows(report))]
    if report.best is not None:
        body += ["<h2>Best trial</h2>", _best(report, api_url)]
    sampled = len(report.sample) < len(report.complete)
    body += [
        "<h2>Optimization history</h2>",
        _figure("history", figures.optimization_history(report.trials)),
        "<h2>Cost to target</h2>",
        "<p class='muted'>Best validation accuracy so far against what the search had spent when it was found: "
        "where the curve flattens, more budget stopped paying.</p>",
        _figure("cost-epochs", figures.cost_figure({study.name: figures.cost_curve(report.trials)}, "epochs")),
        _figure("cost-seconds", figures.cost_figure({study.name: figures.cost_curve(report.trials)}, "seconds")),
        "<h2>Parameter importances</h2>",
        _sampled_note(len(report.sample), len(report.complete)) if sampled else "",
        _figure("importances", figures.importances(report.sample)),
        "<h2>Parallel coordinates</h2>",
        _figure("parallel", figures.parallel_coordinates(report.sample)),
        "<h2>Learning curves</h2>",
        f"<p class='muted'>At most the {CURVES} best complete trials and the {CURVES} latest pruned ones.</p>",
        _figure("curves", figures.learning_curves(report.curves)),
        _figure("losses", figures.losses([t for t in report.curves if t.state.name == "COMPLETE"])),
        "<h2>Failures</h2>",
        _failures(report),
        "<h2>Spec</h2>",
        f"<pre>{html.escape(json.dumps(study.spec, indent=2))}</pre>",
    ]
    return _page(f"hpo report: {study.name}", body)


def comparison_page(reports: list[StudyReport]) -> str:
    """Several studies side by side: their cost-to-target curves, best accuracies and best configs."""
    curves = {r.study.name: figures.cost_curve(r.trials) for r in reports}
    rows: list[list[Any]] = [
        ["study", "status", "finished / max", "best val_accuracy", "its test_accuracy", "best params"]
    ]
    for report in reports:
        best = report.best
        metrics = best.user_attrs.get("metrics", {}) if best else {}
        rows.append(
            [
                report.study.name,
                report.study.status,
                f"{report.study.progress.budget.finished} / {report.study.max_trials}",
                _number(best.value) if best else "no complete trial",
                _test_accuracy(metrics) if best else "",
                json.dumps(best.params) if best else "",
            ]
        )
    names = ", ".join(r.study.name for r in reports)
    body = [
        f"<h1>Studies compared: {html.escape(names)}</h1>",
        f"<p class='muted'>report made {_now()}</p>",
        _table(rows),
        "<h2>Cost to target</h2>",
        _figure("cost-epochs", figures.cost_figure(curves, "epochs")),
        _figure("cost-seconds", figures.cost_figure(curves, "seconds")),
    ]
    return _page(f"hpo comparison: {names}", body)


@functools.cache
def _plotly_js() -> str:
    return get_plotlyjs()


def _page(title: str, body: list[str]) -> str:
    return "\n".join(
        [
            "<!doctype html>",
            "<html lang='en'><head><meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style>",
            f"<script>{_plotly_js()}</script>",
            "</head><body>",
            *body,
            "</body></html>",
        ]
    )


def _figure(name: str, drawn: Drawn) -> str:
    if isinstance(drawn, str):
        return f"<p class='message' id='{name}'>{html.escape(drawn)}</p>"
    div = drawn.to_html(full_html=False, include_plotlyjs=False, div_id=name, config={"displaylogo": False})
    return f"<div class='figure'>{div}</div>"


def _table(rows: list[list[Any]]) -> str:
    head, *rest = rows
    cells = ["<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in head) + "</tr>"]
    cells += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rest]
    return "<table>" + "".join(cells) + "</table>"


def _status(report: StudyReport) -> str:
    study = report.study
    reason = f" ({study.status_reason})" if study.status_reason else ""
    return html.escape(
        f"status {study.status}{reason} · {study.progress.budget.finished} of {study.max_trials} finished"
    )


def _cost_rows(report: StudyReport) -> list[list[Any]]:
    rows: list[list[Any]] = [["what", "value"]]
    rows += [[f"trials {state}", count] for state, count in report.counts().items()]
    span = report.wall_clock()
    rows.append(
        ["wall clock (first start to last end)", _duration((span[1] - span[0]).total_seconds()) if span else "-"]
    )
    for device, seconds in sorted(report.compute_seconds().items()):
        rows.append([f"compute on {device} (sum of trial durations)", _duration(seconds)])
    rows.append(["epochs trained", sum(t.epochs_trained for t in report.trials)])
    return rows


def _best(report: StudyReport, api_url: str) -> str:
    best = report.best
    assert best is not None
    metrics = best.user_attrs.get("metrics", {})
    config = best.user_attrs.get("config")
    name = report.study.name
    threads = f" --threads {metrics['threads']}" if metrics.get("device") == "cpu" and "threads" in metrics else ""
    command = f"hpo study best {name} --config-out best.json && hpo train --config best.json{threads}"
    link = f"{api_url.rstrip('/')}/studies/{name}/best/model"
    rows: list[list[Any]] = [
        ["trial", best.number],
        ["val_accuracy", _number(best.value)],
        ["test_accuracy", _test_accuracy(metrics)],
        ["params", json.dumps(best.params)],
    ]
    return "\n".join(
        [
            _table([["", ""], *rows]),
            f"<p>Reproduce it: <code>{html.escape(command)}</code></p>",
            f"<p>Its weights: <a href='{html.escape(link)}'>{html.escape(link)}</a> (a state_dict)</p>",
            f"<pre>{html.escape(json.dumps(config, indent=2))}</pre>" if config else "",
        ]
    )


def _test_accuracy(metrics: dict[str, Any]) -> str:
    """The test accuracy; for k-fold, the folds' models alone as mean ± std, and their ensemble's."""
    if "test_accuracy" not in metrics:
        return "-"
    folds = metrics.get("fold_test_accuracies") or []
    if len(folds) > 1:
        spread = f"{statistics.fmean(folds):.4f} ± {statistics.pstdev(folds):.4f}"
        return f"{spread} over {len(folds)} folds ({_number(metrics['test_accuracy'])} ensembled)"
    return _number(metrics["test_accuracy"])


def _failures(report: StudyReport) -> str:
    failed = report.counts()["fail"]
    if not failed:
        return "<p>No trial failed.</p>"
    rows: list[list[Any]] = [["trial", "error"], *[[number, error] for number, error in report.errors]]
    return f"<p>{failed} failed; the latest {len(report.errors)}:</p>" + _table(rows)


def _sampled_note(drawn: int, total: int) -> str:
    return f"<p class='muted'>Read from {drawn} of the {total} complete trials, drawn at random (at most {SAMPLE}).</p>"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _duration(seconds: float) -> str:
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}h {minute:02d}m {second:02d}s" if hours else f"{minute}m {second:02d}s"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
