"""Transfer learning in the training code: class subsets, starting weights, frozen blocks, ResNet-18."""

from __future__ import annotations

import pytest
import torch

from objectives.data import DatasetError, load_dataset
from objectives.evaluate import evaluate
from objectives.init import InitError, TorchvisionInit, init_weights_file, load_initial_weights
from objectives.model import ARCHITECTURES, build_model, normalise
from objectives.registry import OBJECTIVES
from objectives.train import train
from tests.conftest import DATA_ROOT, training_config

SMALL_CNN = {
    "width": 0.125,
    "lr": 0.003,
    "batch_size": 64,
    "aug_strength": 0.2,
    "eval_flip": False,
    "eval_shift": False,
}
FIRST, SECOND = ["airplane", "automobile", "bird"], ["dog", "frog"]


def _data(classes: list[str], per_class: int | None = 40):
    spec = {"kind": "imagefolder", "path": "cifar10-sample", "classes": classes, "val_fraction": 0.2}
    return load_dataset({**spec, "per_class": per_class}, data_dir=DATA_ROOT)


def test_classes_keep_those_folders_labelled_in_the_given_order_in_train_and_test():
    data = _data(["dog", "cat"], per_class=None)
    everything = load_dataset({"kind": "imagefolder", "path": "cifar10-sample"}, data_dir=DATA_ROOT)
    assert data.classes == ["dog", "cat"]
    for split in (data.train, data.val, data.test):
        assert set(split.labels.tolist()) == {0, 1}
    dog, cat = everything.classes.index("dog"), everything.classes.index("cat")
    assert int((data.test.labels == 0).sum()) == int((everything.test.labels == dog).sum())  # every dog test image
    assert int((data.test.labels == 1).sum()) == int((everything.test.labels == cat).sum())


def test_per_class_caps_each_class_s_training_images_the_same_way_every_time():
    data, again = _data(FIRST, per_class=30), _data(FIRST, per_class=30)
    counts = torch.bincount(torch.cat([data.train.labels, data.val.labels]))
    assert counts.tolist() == [30, 30, 30]
    assert torch.equal(data.train.images, again.train.images) and torch.equal(data.val.images, again.val.images)


def test_a_class_the_dataset_lacks_is_an_error_naming_it():
    with pytest.raises(DatasetError, match="'unicorn'"):
        _data(["dog", "unicorn"])


def test_the_registry_s_block_counts_are_the_models():
    for name, objective in OBJECTIVES.items():
        model = build_model(name, {}, num_classes=3)
        assert len(ARCHITECTURES[name].blocks(model)) == objective.blocks
        assert objective.params["freeze"].high == objective.blocks


def test_frozen_blocks_keep_their_weights_and_batchnorm_statistics(tmp_path):
    data = _data(FIRST)
    start = tmp_path / "start.pt"
    train(data, training_config(SMALL_CNN, epochs=1), weights_path=start)  # trained, so the frozen state is not trivial
    before = torch.load(start, weights_only=True)
    after_file = tmp_path / "after.pt"
    train(
        data, training_config({**SMALL_CNN, "freeze": 2}, epochs=1, seed=1), init_weights=start, weights_path=after_file
    )
    after = torch.load(after_file, weights_only=True)
    frozen = [k for k in before if k.split(".")[0] in {str(i) for i in range(8)}]  # blocks 1-2: modules 0-7
    trained = [k for k in before if k.split(".")[0] in {"12", "18"}]  # block 4's conv and the head
    assert any("running_mean" in k for k in frozen)
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in trained if not k.endswith("num_batches_tracked"))


def test_fine_tuning_from_a_file_starts_from_its_weights_with_a_new_head(tmp_path):
    pretrained = tmp_path / "pretrained.pt"
    train(_data(FIRST), training_config(SMALL_CNN, epochs=1), weights_path=pretrained)
    source = torch.load(pretrained, weights_only=True)
    tuned = tmp_path / "tuned.pt"
    head_only = {**SMALL_CNN, "freeze": 4}
    train(_data(SECOND), training_config(head_only, epochs=1), init_weights=pretrained, weights_path=tuned)
    result = torch.load(tuned, weights_only=True)
    assert result["18.weight"].shape == (2, 64) and source["18.weight"].shape == (3, 64)  # 3 classes, then 2
    backbone = [k for k in source if not k.startswith(("18.", "input_"))]
    assert all(torch.equal(source[k], result[k]) for k in backbone)  # started from them, and frozen


def test_weights_of_another_shape_are_refused_naming_the_tensor(tmp_path):
    narrow = tmp_path / "narrow.pt"
    torch.save(build_model("cnn", {"width": 0.125}, num_classes=3).state_dict(), narrow)
    with pytest.raises(InitError, match=r"'0\.weight'.*shape \(8, 3, 3, 3\)"):
        load_initial_weights(build_model("cnn", {"width": 0.25}, num_classes=3), narrow, head="18.")
    with pytest.raises(InitError, match="not a readable state_dict"):
        (tmp_path / "junk.pt").write_bytes(b"not a torch file")
        load_initial_weights(build_model("cnn", {}, num_classes=3), tmp_path / "junk.pt", head="18.")


def test_saved_weights_load_with_weights_only_and_reproduce_the_test_accuracy(tmp_path):
    data = _data(FIRST)
    saved = tmp_path / "model.pt"
    result = train(data, training_config(SMALL_CNN, epochs=1), weights_path=saved)
    model = build_model("cnn", SMALL_CNN, num_classes=3)  # as the README shows
    model.load_state_dict(torch.load(saved, weights_only=True))
    model.eval()
    with torch.no_grad():
        predicted = model(normalise(model, data.test.images)).argmax(1)
    assert float((predicted == data.test.labels).float().mean()) == pytest.approx(result.test_accuracy, abs=1e-6)
    mean, std = model.get_buffer("input_mean"), model.get_buffer("input_std")
    assert evaluate(model, data.test, mean, std) == pytest.approx(result.test_accuracy, abs=1e-6)


def test_torchvision_weights_come_from_torch_s_hub_cache(tmp_path, monkeypatch):
    """No network here: the file is made in the hub-cache layout, as torchvision would download it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    init = TorchvisionInit(kind="torchvision", weights="ResNet18_Weights.IMAGENET1K_V1")
    where = {"objective": "resnet18", "data_dir": DATA_ROOT, "artifact_dir": tmp_path, "allow_download": False}
    with pytest.raises(InitError, match="hub cache"):
        init_weights_file(init, **where)
    from torchvision.models import get_weight, resnet18

    file = tmp_path / "torch" / "hub" / "checkpoints" / OBJECTIVES["resnet18"].torchvision_weights[init.weights]
    assert get_weight(init.weights).url.endswith("/" + file.name)  # the name torchvision downloads to
    file.parent.mkdir(parents=True)
    imagenet = resnet18(num_classes=1000)
    torch.save(imagenet.state_dict(), file)
    assert init_weights_file(init, **where) == file
    model = build_model("resnet18", {"small_stem": False}, num_classes=5)
    assert load_initial_weights(model, file, head="fc.") == ["fc.weight", "fc.bias"]  # a new head for 5 classes
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], imagenet.state_dict()["layer4.1.conv2.weight"])
    with pytest.raises(InitError, match=r"'conv1\.weight'.*shape \(64, 3, 7, 7\)"):  # the small stem is 3x3
        load_initial_weights(build_model("resnet18", {}, num_classes=5), file, head="fc.")


def test_resnet18_trains_with_its_small_stem_and_a_frozen_stem():
    data = _data(SECOND, per_class=20)
    result = train(
        data, training_config({"batch_size": 32, "freeze": 1, "eval_flip": False}, epochs=1, objective="resnet18")
    )
    assert result.epochs == 1 and 0.0 <= result.test_accuracy <= 1.0


def test_the_classifier_head_starts_afresh_even_with_as_many_classes(tmp_path):
    source = build_model("cnn", {}, num_classes=3)
    torch.save(source.state_dict(), tmp_path / "source.pt")
    torch.manual_seed(123)
    target = build_model("cnn", {}, num_classes=3)
    fresh_head = target.state_dict()["18.weight"].clone()
    assert load_initial_weights(target, tmp_path / "source.pt", head="18.") == ["18.weight", "18.bias"]
    assert torch.equal(target.state_dict()["18.weight"], fresh_head)
    assert torch.equal(target.state_dict()["0.weight"], source.state_dict()["0.weight"])
