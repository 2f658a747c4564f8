"""``hpo train --config FILE.json [--set key=value ...] [--json]``: train one config by hand."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cli.errors import CliError, describe_errors
from objectives.config import HOLDOUT_RESULT, ImageFolderDataset, TrainingConfig
from objectives.curves import EpochMetrics
from service.settings import get_settings


def add_parser(subparsers: Any) -> None:
    """Register the ``train`` subcommand."""
    parser = subparsers.add_parser("train", help="train one config (e.g. the config of a best trial)")
    parser.add_argument("--config", required=True, type=Path, help="training config JSON file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one entry of params (value parsed as JSON when it can be)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--save", type=Path, metavar="FILE", help="save the trained weights (a state_dict)")
    parser.add_argument(
        "--refit", action="store_true", help="train on all training images (no validation): the model to ship"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="where to train (default: where the trial trained, the config's device; else CUDA when present)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads (use a trial's metrics.threads to reproduce it bit for bit)",
    )
    parser.set_defaults(run=run)


def load_config(path: Path, overrides: list[str]) -> TrainingConfig:
    """Read, override and validate a training config; CliError names what is wrong."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"config file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CliError(f"{path} must hold a JSON object")
    params = dict(raw.get("params") or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set expects KEY=VALUE, got {item!r}")
        params[key] = _parse_value(value)
    try:
        return TrainingConfig.model_validate({**raw, "params": params})
    except ValidationError as exc:
        raise CliError(f"invalid config {path}:\n{describe_errors(exc.errors())}") from None


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run(args: argparse.Namespace) -> int:
    """Train the config and print its result."""
    config = load_config(args.config, args.overrides)
    output = train_config(config, refit=args.refit, save=args.save, threads=args.threads, device=args.device)
    print_result(output, as_json=args.json)
    return 0


def train_config(
    config: TrainingConfig, *, refit: bool, save: Path | None, threads: int | None, device: str | None = None
) -> dict[str, Any]:
    """Train ``config`` here (``refit``: on all its training images), save the weights; returns the result.

    ``device``: "cpu" or "cuda"; None: the config's (where its trial trained), else CUDA when
    present. Progress goes to stderr; CliError names a dataset, starting weights or a device
    that cannot be had."""
    if refit:
        config = config.refit()
    from objectives.data import DatasetError, load_dataset
    from objectives.init import InitError, init_weights_file
    from objectives.paths import DataPathError
    from objectives.train import train

    settings = get_settings()
    where_to = training_device(device, config.device)
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    where = config.dataset.path if isinstance(config.dataset, ImageFolderDataset) else "HPO_DATA_DIR/cifar10"
    print(f"hpo train: loading {config.dataset.kind} {where} on {where_to}", file=sys.stderr)
    try:
        data = load_dataset(
            config.dataset.model_dump(),
            data_dir=settings.data_dir,
            device=where_to,
            cache_dir=settings.cache_dir,
            allow_download=settings.allow_download,
        )
        init_weights = init_weights_file(
            config.init,
            objective=config.objective,
            data_dir=settings.data_dir,
            artifact_dir=settings.artifact_dir,
            allow_download=settings.allow_download,
        )
    except (DatasetError, InitError, DataPathError, OSError) as exc:
        raise CliError(str(exc)) from None
    folds = f"{len(data.folds)} folds of " if len(data.folds) > 1 else ""
    print(
        f"hpo train: {folds}{len(data.train)} train / {len(data.val)} val, {len(data.test)} test images, "
        f"{config.epochs} epochs",
        file=sys.stderr,
    )

    def progress(curve: list[EpochMetrics]) -> None:
        last = curve[-1]
        print(
            f"  epoch {last.epoch:>3}/{config.epochs}  loss {last.train_loss:.4f}  val_loss {last.val_loss:.4f}  "
            f"val_accuracy {last.val_accuracy:.4f}  {last.seconds:.1f} s",
            file=sys.stderr,
        )

    result = train(
        data,
        config,
        device=where_to,
        on_epoch=progress,
        init_weights=init_weights,
        weights_path=save,
        cache_dir=settings.cache_dir,
    )
    output = {**result.as_dict(), "config": config.model_dump(mode="json")}
    if refit:
        output["val_accuracy"] = None  # nothing was held out
    if save:
        output["model"] = str(save)
    return output


def training_device(asked: str | None, recorded: str | None) -> str:
    """``--device`` if given (CliError if it is cuda and there is none), else where the trial
    trained if this host has it (a note on stderr if not), else CUDA when present."""
    import torch

    has_cuda = torch.cuda.is_available()
    if asked == "cuda" and not has_cuda:
        raise CliError("--device cuda: no CUDA device is visible here; use --device cpu")
    if asked is not None:
        return asked
    if recorded == "cuda" and not has_cuda:
        print("hpo train: the trial trained on cuda; none here, so on cpu (results will differ)", file=sys.stderr)
        return "cpu"
    return recorded or ("cuda" if has_cuda else "cpu")


def print_result(output: dict[str, Any], *, as_json: bool) -> None:
    """A training result for people, or as one JSON object."""
    if as_json:
        print(json.dumps(output))
    else:
        for key in HOLDOUT_RESULT:
            value = output[key]
            print(f"{key:>18}: {value:.4f}" if isinstance(value, float) else f"{key:>18}: {value}")
        if output.get("fold_val_accuracies"):
            folds = ", ".join(f"{a:.4f}" for a in output["fold_val_accuracies"])
            print(f"{'folds':>18}: val {folds} (std {output['val_accuracy_std']:.4f})")
        if output.get("model"):
            print(f"{'model':>18}: {output['model']}")
