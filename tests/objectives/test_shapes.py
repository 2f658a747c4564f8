"""Weight shapes without torch: the computed shapes are the models', the file reader reads what
torch.save wrote (and builds nothing else), and a file that does not fit is named."""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict

import pytest
import torch
from torch import nn

from objectives.init import InitError, check_weights_fit
from objectives.model import build_model
from objectives.registry import OBJECTIVES
from objectives.shapes import NORMALISATION, backbone_shapes
from objectives.state_file import StateFileError, read_state_shapes


def _backbone_of(objective: str, params: dict, classes: int = 7) -> dict:
    head = OBJECTIVES[objective].head
    state = build_model(objective, params, num_classes=classes).state_dict()
    return {k: tuple(v.shape) for k, v in state.items() if not k.startswith(head) and k not in NORMALISATION}


@pytest.mark.parametrize(
    ("objective", "params"),
    [
        ("cnn", {"width": 0.03}),
        ("cnn", {"width": 0.25}),
        ("cnn", {"width": 0.3}),
        ("cnn", {"width": 1.0}),
        ("resnet18", {"small_stem": True}),
        ("resnet18", {"small_stem": False}),
    ],
)
def test_the_computed_shapes_are_the_model_s_own_in_its_order(objective, params):
    computed = backbone_shapes(objective, params)
    assert list(computed.items()) == list(_backbone_of(objective, params).items())


def test_the_reader_gives_the_shapes_torch_saved(tmp_path):
    state = build_model("cnn", {"width": 0.5}, num_classes=3).state_dict()
    state["extra.bf16"] = torch.zeros(2, 5, dtype=torch.bfloat16)
    state["extra.parameter"] = nn.Parameter(torch.ones(4))
    state["extra.view"] = torch.arange(12).reshape(3, 4)[1:]  # a view: an offset into a shared storage
    torch.save(state, tmp_path / "w.pt")
    assert read_state_shapes(tmp_path / "w.pt") == {k: tuple(v.shape) for k, v in state.items()}
    torch.save({"model": {"a": torch.zeros(3, 1)}, "epoch": 4}, tmp_path / "checkpoint.pt")
    assert read_state_shapes(tmp_path / "checkpoint.pt") == {"a": (3, 1)}


def test_files_that_are_not_state_dicts_are_refused_naming_why(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(StateFileError, match=r"junk\.pt is not a readable state_dict"):
        read_state_shapes(tmp_path / "junk.pt")
    with zipfile.ZipFile(tmp_path / "zip.pt", "w") as archive:
        archive.writestr("w/notes.txt", "no pickle here")
    with pytest.raises(StateFileError, match=r"without data\.pkl"):
        read_state_shapes(tmp_path / "zip.pt")
    with zipfile.ZipFile(tmp_path / "big.pt", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("w/data.pkl", pickle.dumps(list(range(2_000_000)), protocol=2))  # 9 MB, a few kB zipped
    with pytest.raises(StateFileError, match=r"big\.pt is not a state_dict \(its data\.pkl is 9 MB\)"):
        read_state_shapes(tmp_path / "big.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(StateFileError, match="does not hold a state_dict"):
        read_state_shapes(tmp_path / "list.pt")


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: what a hostile file would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_naming_other_callables_runs_nothing_and_is_left_to_torch(tmp_path):
    marker = tmp_path / "ran"
    with zipfile.ZipFile(tmp_path / "hostile.pt", "w") as archive:
        archive.writestr("w/data.pkl", pickle.dumps(OrderedDict(x=_RunsCode(str(marker))), protocol=2))
    assert read_state_shapes(tmp_path / "hostile.pt") is None
    assert not marker.exists()
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps({"x": 1}, protocol=2))  # torch's pre-zip format is a pickle
    assert read_state_shapes(tmp_path / "legacy.pt") is None


def test_weights_that_do_not_fit_are_named_and_a_new_head_is_fine(tmp_path):
    torch.save(build_model("cnn", {"width": 0.125}, num_classes=3).state_dict(), tmp_path / "narrow.pt")
    check_weights_fit(tmp_path / "narrow.pt", "cnn", {"width": 0.125})  # its own 3-class head is never used
    with pytest.raises(InitError, match=r"'0\.weight' in narrow\.pt has shape \(8, 3, 3, 3\), the model needs \(16,"):
        check_weights_fit(tmp_path / "narrow.pt", "cnn", {})  # the default width, 0.25
    with pytest.raises(InitError, match=r"holds 'bn1\.bias', which this model lacks"):
        torch.save(build_model("resnet18", {}, num_classes=3).state_dict(), tmp_path / "resnet.pt")
        check_weights_fit(tmp_path / "resnet.pt", "cnn", {})
    with pytest.raises(InitError, match=r"'conv1\.weight'.*\(64, 3, 3, 3\), the model needs \(64, 3, 7, 7\)"):
        check_weights_fit(tmp_path / "resnet.pt", "resnet18", {"small_stem": False})
