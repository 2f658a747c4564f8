"""scripts/gpu_check.sh, the one prepared GPU check, runs as written: its dry run does every
section on the CPU at tiny sizes, through the real worker, SQLite and the bundled images."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_runs_every_section_and_writes_its_results(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = results["sections"]
    assert list(sections) == ["smoke", "result_quality", "throughput", "packing", "resume", "efficientnet"]
    assert not [name for name, section in sections.items() if "error" in section]
    smoke = sections["smoke"]
    assert smoke["complete"] == 2 and all(t["images_per_second"] > 0 for t in smoke["trials"])
    assert [row["trials_per_gpu"] for row in sections["packing"]["rows"]] == [1, 2]
    assert all(row["complete"] == 2 for row in sections["packing"]["rows"])
    assert 0 <= sections["result_quality"]["test_accuracy"] <= 1
    lite0 = sections["efficientnet"]
    assert lite0["epochs"] == 1 and lite0["images_per_second"] > 0 and 0 <= lite0["test_accuracy"] <= 1
    resumed = sections["resume"]
    assert resumed["generator_device"] == "cpu" and resumed["bit_identical"], resumed  # on CPU: bit for bit
    summary = (tmp_path / "summary.txt").read_text()
    assert "FAILED" not in summary and "result_quality:" in summary and "efficientnet: Lite0" in summary
    log = (tmp_path / "gpu_check.log").read_text()
    assert "== summary" in log and "budget: 290 s of work" in log  # the GPU run's plan, printed first
    assert (tmp_path / "workers.log").stat().st_size > 0


def test_a_smoke_run_that_completes_no_trial_fails(tmp_path, monkeypatch):
    """A smoke section whose trials all failed once passed. Here the real worker finds no images
    (an empty data folder), fails both trials, and the check must fail."""
    from benchmarks import gpu_check

    (tmp_path / "data" / "cifar10-sample").mkdir(parents=True)
    monkeypatch.setenv("HPO_DATA_DIR", str(tmp_path / "data"))
    assert gpu_check.main(["--dry-run", "--only", "smoke", "--out", str(tmp_path / "out")]) == 1
    smoke = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["sections"]["smoke"]
    assert smoke["error"].startswith("RuntimeError: 0 of 2 smoke trials completed"), smoke
