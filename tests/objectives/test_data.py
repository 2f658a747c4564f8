"""Loading image folders into tensors, caching, splits, the path guard and CIFAR-10 offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from objectives import data as data_module
from objectives.data import DatasetError, clear_memory_cache, load_dataset, pixel_statistics
from objectives.paths import DataPathError, resolve_under


def _copy_subset(src: Path, dst: Path, per_class: int) -> None:
    for part in ("train", "test"):
        for class_dir in sorted((src / part).iterdir()):
            target = dst / part / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:per_class]:
                shutil.copy2(image, target / image.name)


def test_split_shapes_and_stratification(small_data):
    assert small_data.train.images.dtype == torch.uint8
    assert small_data.train.images.shape[1:] == (3, 32, 32)
    assert len(small_data.train) == 1800 and len(small_data.val) == 200 and len(small_data.test) == 1000
    assert torch.bincount(small_data.val.labels).tolist() == [20] * 10
    assert torch.bincount(small_data.train.labels).tolist() == [180] * 10


def test_validation_split_is_deterministic_and_disjoint_from_train(data_root):
    spec = {"kind": "imagefolder", "path": "cifar10-sample", "limit": 1000, "val_fraction": 0.2}
    a = load_dataset(spec, data_dir=data_root)
    b = load_dataset(spec, data_dir=data_root)
    assert torch.equal(a.val.images, b.val.images)
    train_rows = {bytes(img.numpy()) for img in a.train.images}
    assert not any(bytes(img.numpy()) in train_rows for img in a.val.images)


def test_decoded_cache_is_reused_and_rebuilt_when_files_change(data_root, tmp_path, monkeypatch):
    root = tmp_path / "data"
    _copy_subset(data_root / "cifar10-sample", root / "mini", per_class=5)
    cache = tmp_path / "cache"
    spec = {"kind": "imagefolder", "path": "mini"}
    first = load_dataset(spec, data_dir=root, cache_dir=cache)
    assert len(list(cache.glob("*.pt"))) == 1

    clear_memory_cache()
    decoded: list[int] = []
    real_decode = data_module._decode
    monkeypatch.setattr(data_module, "_decode", lambda entries: decoded.append(len(entries)) or real_decode(entries))
    again = load_dataset(spec, data_dir=root, cache_dir=cache)
    assert decoded == []  # served from the on-disk cache, no JPEG decoded
    assert torch.equal(again.train.images, first.train.images)

    clear_memory_cache()
    victim = next((root / "mini" / "train" / "cat").iterdir())
    shutil.copy2(next((root / "mini" / "train" / "dog").iterdir()), victim)
    os.utime(victim, ns=(1, 1))
    rebuilt = load_dataset(spec, data_dir=root, cache_dir=cache)
    assert decoded == [50, 50]  # train and test decoded again
    assert len(list(cache.glob("*.pt"))) == 2
    assert not torch.equal(rebuilt.train.images, first.train.images)


def test_missing_imagefolder_split_is_a_clear_error(tmp_path):
    (tmp_path / "broken" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="must hold 'test/'"):
        load_dataset({"kind": "imagefolder", "path": "broken"}, data_dir=tmp_path)


def test_a_truncated_image_is_an_error_naming_the_file(data_root, tmp_path):
    root = tmp_path / "data"
    _copy_subset(data_root / "cifar10-sample", root / "mini", per_class=2)
    victim = sorted((root / "mini" / "train" / "frog").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:200])  # cut short, as a failed copy leaves it
    with pytest.raises(DatasetError, match=rf"cannot read image .*{victim.name}: OSError"):
        load_dataset({"kind": "imagefolder", "path": "mini"}, data_dir=root)


def test_missing_cifar10_offline_names_where_to_put_it(tmp_path):
    with pytest.raises(DatasetError, match=r"CIFAR-10 not found under .*cifar10.*cifar-10-batches-py"):
        load_dataset({"kind": "cifar10"}, data_dir=tmp_path, allow_download=False)


@pytest.mark.parametrize("bad", ["/etc", "../etc", "a/../../etc", "", " x"])
def test_path_guard_rejects_escapes(tmp_path, bad):
    with pytest.raises(DataPathError):
        resolve_under(tmp_path, bad)


def test_path_guard_rejects_symlink_leaving_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(DataPathError, match="symlink"):
        resolve_under(root, "escape")
    assert resolve_under(root, "inside/ok") == root.resolve() / "inside" / "ok"


def test_objectives_imports_no_service_code():
    code = (
        "import sys, objectives, objectives.config, objectives.init\n"
        "assert 'torch' not in sys.modules, 'the registry, config and init kinds must stay torch-free'\n"
        "import objectives.train, objectives.data\n"
        "bad = [m for m in ('optuna', 'sqlalchemy', 'service', 'worker', 'fastapi') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_api_loads_no_training_code():
    code = (
        "import sys\n"
        "from service.api import create_app\n"
        "create_app()\n"
        "bad = [m for m in ('torch', 'torchvision', 'objectives.train', 'objectives.model') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pixel_statistics_are_the_training_split_s_and_computed_once_per_selection(data_root):
    spec = {"kind": "imagefolder", "path": "cifar10-sample", "limit": 600, "val_fraction": 0.2}
    first, again = load_dataset(spec, data_dir=data_root), load_dataset(spec, data_dir=data_root)
    mean, std = pixel_statistics(first.train.images)
    assert torch.equal(first.mean, mean) and torch.equal(first.std, std)
    assert again.mean is first.mean  # the second load reused them
    other = load_dataset({**spec, "classes": ["cat", "dog"]}, data_dir=data_root)
    assert torch.equal(other.mean, pixel_statistics(other.train.images)[0])
