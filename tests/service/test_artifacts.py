"""Artifact folders are named by study id and stay under HPO_ARTIFACT_DIR."""

from __future__ import annotations

from service.artifacts import study_artifact_dir


def test_a_study_s_folder_is_named_by_its_id_under_the_root(tmp_path):
    assert study_artifact_dir(tmp_path, 7) == (tmp_path / "study-7").resolve()
    assert study_artifact_dir(tmp_path / "a" / "..", 7) == (tmp_path / "study-7").resolve()


def test_a_symlinked_root_is_followed_and_the_folder_stays_inside_it(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert study_artifact_dir(tmp_path / "link", 3) == real / "study-3"
