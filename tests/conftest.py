"""Fixtures shared by every test package: the bundled images, datasets, databases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = REPO / "data"  # holds cifar10-sample/, real CIFAR-10 images (see its SOURCE.md)

pytest_plugins = ["tests.pg_fixtures"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test fails the run: CI installs what every test needs
    (scripts/install_test_tools.sh), so a skip means something it claims to test was not tested."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") == "true" and skipped and exitstatus == pytest.ExitCode.OK:
        for report in skipped:
            print(f"\nCI=true: {report.nodeid} was skipped: {report.longrepr[-1] if report.longrepr else ''}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding the bundled CIFAR-10 sample."""
    return DATA_ROOT


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees HPO_DATA_DIR = the bundled data, a private artifact dir and fresh settings."""
    from service.settings import get_settings

    monkeypatch.setenv("HPO_DATA_DIR", str(DATA_ROOT))
    monkeypatch.setenv("HPO_ARTIFACT_DIR", str(tmp_path_factory.mktemp("artifacts")))
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "dataset-cache"))
    monkeypatch.delenv("HPO_API_TOKEN", raising=False)
    monkeypatch.delenv("HPO_VIEWER_TOKEN", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def small_data():
    """2,000 real training images (stratified), a 10% validation split and the 1,000 test images."""
    from objectives.data import load_dataset

    return load_dataset(
        {"kind": "imagefolder", "path": "cifar10-sample", "limit": 2000, "val_fraction": 0.1},
        data_dir=DATA_ROOT,
        device="cpu",
    )


@pytest.fixture(scope="session")
def tiny_data():
    """500 training images: enough for quick resume and callback tests."""
    from objectives.data import load_dataset

    return load_dataset(
        {"kind": "imagefolder", "path": "cifar10-sample", "limit": 500, "val_fraction": 0.2},
        data_dir=DATA_ROOT,
        device="cpu",
    )


def training_config(params: dict, *, epochs: int, seed: int = 0, objective: str = "cnn", **dataset):
    """A training config for ``objectives.train.train`` in tests, which load its data themselves
    (``dataset``: the config's dataset fields, the bundled sample by default)."""
    from objectives.config import TrainingConfig

    source = {"kind": "imagefolder", "path": "cifar10-sample", **dataset}
    return TrainingConfig(objective=objective, dataset=source, epochs=epochs, seed=seed, params=params)


class StopTraining(Exception):
    """Raised by ``stop_after_first_epoch``: stands in for pruning or a worker's death."""


def stop_after_first_epoch(epoch: int, _accuracy: float) -> None:
    """A ``report`` callback for ``objectives.train`` that stops the run once epoch 1 is saved."""
    if epoch == 1:
        raise StopTraining


def make_spec(name: str = "cifar-search", **overrides):
    """A valid study spec on the bundled sample, small enough for tests."""
    spec = {
        "name": name,
        "objective": "cnn",
        "dataset": {"kind": "imagefolder", "path": "cifar10-sample", "limit": 400, "val_fraction": 0.1},
        "search_space": {
            "lr": {"type": "float", "low": 0.0001, "high": 0.1, "log": True},
            "batch_size": {"type": "categorical", "choices": [32, 64, 128, 256]},
            "aug_strength": {"type": "float", "low": 0.0, "high": 1.0},
            "width": 0.125,
        },
        "epochs": 2,
        "max_trials": 4,
        "sampler": {"name": "tpe"},
        "pruner": {"name": "hyperband"},
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def api(db_url):
    """A TestClient on the app, on a fresh database (PostgreSQL and SQLite)."""
    yield from _client()


@pytest.fixture
def pg_api(pg_url):
    """A TestClient on the app, on a fresh PostgreSQL database only: for long flows whose
    database work the ``api`` tests already cover on both."""
    yield from _client()


def _client():
    from fastapi.testclient import TestClient

    from service.api import create_app

    with TestClient(create_app()) as client:
        yield client
