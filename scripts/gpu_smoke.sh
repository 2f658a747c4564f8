#!/usr/bin/env bash
# GPU smoke test: on a CUDA machine, a 4-trial study on SQLite run by `worker --gpus 0
# --trials-per-gpu 2`; prints images/s per trial. Needs the package installed (make install)
# and the bundled sample (or HPO_DATA_DIR pointing at a folder with cifar10-sample/).
# Usage: bash scripts/gpu_smoke.sh   (about 2 minutes on one H100/H200)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${HPO_BIN:-.venv/bin}
work=$(mktemp -d /tmp/hpo-gpu-smoke.XXXXXX)
export HPO_DATABASE_URL="sqlite:///$work/hpo.db" HPO_ARTIFACT_DIR="$work/artifacts"
export HPO_DATA_DIR=${HPO_DATA_DIR:-$PWD/data} HPO_CACHE_DIR="$work/cache"
"$bin/python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('gpu:', torch.cuda.get_device_name(0))"
"$bin/hpo" migrate
"$bin/python" - <<'PY'
from service.database import Database
from service.settings import get_settings
from service.spec import StudySpec
from service.studies import create_study
spec = StudySpec.model_validate({
    "name": "gpu-smoke", "dataset": {"kind": "imagefolder", "path": "cifar10-sample", "val_fraction": 0.1},
    "search_space": {"lr": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True},
                     "batch_size": {"type": "categorical", "choices": [256, 512]}, "width": 1.0},
    "epochs": 8, "max_trials": 4, "pruner": {"name": "none"}, "sampler": {"name": "random", "seed": 0}})
database = Database.from_settings(get_settings())
with database.sessions() as session:
    create_study(session=session, storage=database.storage, spec=spec)
PY
time "$bin/worker" --gpus 0 --trials-per-gpu 2 --study gpu-smoke --burst
"$bin/python" - <<'PY'
import os, optuna
study = optuna.load_study(study_name="gpu-smoke", storage=os.environ["HPO_DATABASE_URL"])
for t in study.trials:
    m = t.user_attrs.get("metrics", {})
    print(f"trial {t.number}: {t.state.name} batch {t.params.get('batch_size')} "
          f"images/s {m.get('images_per_second', 0):.0f} val {m.get('val_accuracy', 0):.3f} "
          f"test {m.get('test_accuracy', 0):.3f} on {m.get('device')}")
PY
