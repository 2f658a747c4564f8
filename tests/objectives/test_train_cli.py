"""`hpo train` end to end, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CONFIG = {
    "objective": "cnn",
    "dataset": {"kind": "imagefolder", "path": "cifar10-sample", "limit": 400, "val_fraction": 0.1},
    "epochs": 1,
    "seed": 0,
    "params": {"lr": 0.002, "batch_size": 64, "aug_strength": 0.4, "width": 0.125},
}


def _hpo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=300)


def test_train_prints_json_with_the_contract_keys(tmp_path: Path):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(CONFIG))
    proc = _hpo("train", "--config", str(config), "--json", "--set", "lr=0.004")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("val_accuracy", "test_accuracy", "epochs", "seconds", "images_per_second"):
        assert key in result
    assert result["epochs"] == 1
    assert result["config"]["params"]["lr"] == 0.004
    assert "epoch   1/1" in proc.stderr  # progress goes to stderr, the JSON alone to stdout


def test_invalid_config_gives_clear_error_without_traceback(tmp_path: Path):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({**CONFIG, "dataset": {"kind": "imagefolder", "path": "../../etc"}}))
    proc = _hpo("train", "--config", str(config))
    assert proc.returncode == 2
    assert "must not contain '..'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_override_is_rejected(tmp_path: Path):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(CONFIG))
    proc = _hpo("train", "--config", str(config), "--set", "dropout=0.5")
    assert proc.returncode == 2
    assert "params.dropout: not a parameter of 'cnn'" in proc.stderr


def test_refit_trains_a_k_fold_config_on_every_training_image(tmp_path: Path):
    kfold = {**CONFIG["dataset"], "val_fraction": None, "validation": {"kind": "kfold", "folds": 4, "seed": 0}}
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({**CONFIG, "dataset": kfold}))

    cross = _hpo("train", "--config", str(config), "--json")
    assert cross.returncode == 0, cross.stderr
    assert "4 folds of 300 train / 100 val, 1000 test images" in cross.stderr
    assert len(json.loads(cross.stdout)["fold_val_accuracies"]) == 4

    saved = tmp_path / "model.pt"
    refit = _hpo("train", "--config", str(config), "--refit", "--json", "--save", str(saved))
    assert refit.returncode == 0, refit.stderr
    assert "400 train / 0 val, 1000 test images" in refit.stderr
    result = json.loads(refit.stdout)
    assert result["val_accuracy"] is None and "fold_val_accuracies" not in result  # one model: no folds
    assert result["config"]["dataset"]["validation"] == {"kind": "none"}
    assert saved.exists() and result["model"] == str(saved)


def test_a_gpu_trial_s_config_trains_on_cpu_here_saying_so_and_cuda_asked_for_is_refused(tmp_path: Path):
    """`hpo train` defaults to the device the trial recorded; without CUDA (this machine, as
    GPUs cannot exist here) a CUDA trial's config trains on CPU with a note, and an explicit
    `--device cuda` is a clear error."""
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({**CONFIG, "device": "cuda"}))
    proc = _hpo("train", "--config", str(config), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "trained on cuda; none here, so on cpu" in proc.stderr
    assert json.loads(proc.stdout)["device"] == "cpu"
    refused = _hpo("train", "--config", str(config), "--device", "cuda")
    assert refused.returncode == 2 and "--device cuda: no CUDA device is visible here" in refused.stderr
    assert "Traceback" not in refused.stderr
