"""`hpo pretrained`: this machine's catalogue, for people and as JSON."""

from __future__ import annotations

import json

from cli.main import main


def test_the_catalogue_lists_what_is_installed_here(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no torchvision file in this hub cache
    assert main(["pretrained", "--json"]) == 0
    entries = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert entries["efficientnet_lite0.imagenet"]["available"] is True
    assert entries["resnet18.imagenet"]["available"] is False
    assert main(["pretrained"]) == 0
    table = capsys.readouterr().out
    assert "efficientnet_lite0.imagenet" in table and "(pixel - 127) / 128" in table
