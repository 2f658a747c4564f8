"""Artifact folders: one per created study, under HPO_ARTIFACT_DIR, removed with the study."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.artifacts import prune_weights, study_artifact_dir, weights_file
from service.db.models import StudyRecord
from service.settings import get_settings
from tests.conftest import make_spec

CREATED = datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC)


def test_a_study_s_folder_is_named_by_its_id_and_creation_under_the_root(tmp_path):
    assert study_artifact_dir(tmp_path, 7, CREATED) == (tmp_path / "study-7-20261129120000123456").resolve()
    assert study_artifact_dir(tmp_path / "a" / "..", 7, CREATED) == study_artifact_dir(tmp_path, 7, CREATED)


def test_the_same_instant_names_the_same_folder_whatever_the_database_hands_back(tmp_path):
    naive_utc = CREATED.replace(tzinfo=None)  # SQLite
    elsewhere = CREATED.astimezone(UTC).astimezone(datetime.now().astimezone().tzinfo)
    assert study_artifact_dir(tmp_path, 7, naive_utc) == study_artifact_dir(tmp_path, 7, CREATED)
    assert study_artifact_dir(tmp_path, 7, elsewhere) == study_artifact_dir(tmp_path, 7, CREATED)
    assert study_artifact_dir(tmp_path, 7, CREATED + timedelta(microseconds=1)) != study_artifact_dir(
        tmp_path, 7, CREATED
    )


def test_a_symlinked_root_is_followed_and_the_folder_stays_inside_it(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert study_artifact_dir(tmp_path / "link", 3, CREATED).parent == real


def _artifact_dir(db, name: str):
    with db.sessions() as session:
        record = session.query(StudyRecord).filter_by(name=name).one()
        return study_artifact_dir(get_settings().artifact_dir, record.id, record.created_at)


def test_delete_removes_the_checkpoints_and_a_study_recreated_under_the_name_never_sees_them(api, db):
    assert api.post("/studies", json=make_spec("again")).status_code == 201
    first = _artifact_dir(db, "again")
    first.mkdir(parents=True)
    (first / "trial-0.pt").write_bytes(b"the deleted study's weights")

    assert api.delete("/studies/again").status_code == 204
    assert not first.exists()
    assert api.post("/studies", json=make_spec("again", search_space={"lr": 0.05})).status_code == 201
    assert _artifact_dir(db, "again") != first  # even on SQLite, which hands the same id out again


def test_pruning_weights_keeps_the_best_finished_trials_and_every_unfinished_one(tmp_path):
    for number in range(5):
        weights_file(tmp_path, number).write_bytes(b"w")
    (tmp_path / "trial-9.pt").write_bytes(b"a checkpoint, not weights")
    values = {0: 0.5, 1: 0.9, 2: None, 3: 0.7, 4: 0.1}  # trial 2 has not finished: its worker is telling Optuna
    assert prune_weights(tmp_path, 2, values) == [0, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "trial-1.weights.pt",
        "trial-2.weights.pt",
        "trial-3.weights.pt",
        "trial-9.pt",
    ]
    assert prune_weights(tmp_path, 2, values) == []  # two finished ones left: nothing more to do
