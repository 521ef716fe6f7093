"""Named augmentation presets for classifier crops; ``eval`` is deterministic, an unknown name raises.

Each preset turns a (S, S, 3) uint8 BGR crop into a normalised (3, S, S) float tensor (RGB order).
``mri`` imitates scanner and protocol variation: rotation, flips, zoom, shift, shear (spatial distortion),
contrast, brightness, gamma, noise and blur. ``light`` keeps only the flips and small rotations.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from mri.intensity import add_gray_noise, contrast_gamma

PRESETS = {
    "mri": {
        "rotate": 20.0,  # degrees, either way
        "flip_lr": 0.5, "flip_ud": 0.2, "rot90": 0.0,
        "zoom": (0.85, 1.2),  # scale factor range
        "shift": 0.06,  # fraction of the crop side
        "shear": 5.0,  # degrees
        "contrast": (0.75, 1.35), "brightness": 0.12,  # gain, and offset as a fraction of 255
        "gamma": (0.7, 1.5),
        "noise_std": 8.0,  # maximum Gaussian noise sigma on the 0-255 scale
        "blur_p": 0.2,
    },
    "light": {"rotate": 10.0, "flip_lr": 0.5, "flip_ud": 0.0, "rot90": 0.0, "zoom": (1.0, 1.0), "shift": 0.0,
              "shear": 0.0, "contrast": (1.0, 1.0), "brightness": 0.0, "gamma": (1.0, 1.0), "noise_std": 0.0,
              "blur_p": 0.0},
    "eval": None,
}


class CropTransform:
    """Callable preset: ``transform(crop, rng) -> tensor``; ``eval`` ignores ``rng``."""

    def __init__(self, name: str, mean, std):
        if name not in PRESETS:
            raise ValueError(f"unknown augmentation preset '{name}' (known: {', '.join(PRESETS)})")
        self.name, self.settings = name, PRESETS[name]
        self.mean = np.asarray(mean, np.float32) * 255.0
        self.std = np.asarray(std, np.float32) * 255.0

    def augment(self, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The augmented uint8 crop (what the gallery shows)."""
        if self.settings is None:
            return crop
        s = self.settings
        size = crop.shape[0]
        angle = rng.uniform(-s["rotate"], s["rotate"])
        zoom = rng.uniform(*s["zoom"])
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, zoom)
        shear = np.tan(np.radians(rng.uniform(-s["shear"], s["shear"])))
        matrix[0, 1] += shear
        matrix[0, 2] -= shear * size / 2
        matrix[:, 2] += rng.uniform(-s["shift"], s["shift"], 2) * size
        out = cv2.warpAffine(crop, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        if rng.random() < s["flip_lr"]:
            out = out[:, ::-1]
        if rng.random() < s["flip_ud"]:
            out = out[::-1]
        gain = rng.uniform(*s["contrast"])
        offset = rng.uniform(-s["brightness"], s["brightness"]) * 255
        gamma = np.exp(rng.uniform(np.log(s["gamma"][0]), np.log(s["gamma"][1])))
        out = contrast_gamma(out, gain, gamma, offset)
        if rng.random() < s["blur_p"]:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.0))
        if s["noise_std"] > 0:
            out = add_gray_noise(out, rng.uniform(0, s["noise_std"]), rng)
        return np.ascontiguousarray(out)

    def to_tensor(self, crop: np.ndarray) -> torch.Tensor:
        rgb = crop[:, :, ::-1].astype(np.float32)
        return torch.from_numpy(((rgb - self.mean) / self.std).transpose(2, 0, 1).copy())

    def __call__(self, crop: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        return self.to_tensor(self.augment(crop, rng or np.random.default_rng()))


def to_batch(crops: np.ndarray, mean, std) -> torch.Tensor:
    """Deterministic (eval) tensors for a stack of crops: what inference feeds the classifier."""
    rgb = crops[..., ::-1].astype(np.float32)
    normalised = (rgb - np.asarray(mean, np.float32) * 255.0) / (np.asarray(std, np.float32) * 255.0)
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(0, 3, 1, 2)))
