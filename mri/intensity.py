"""Intensity changes shared by the detector's and the classifier's augmentation (scanner and protocol variation)."""

from __future__ import annotations

import cv2
import numpy as np


def contrast_gamma(image: np.ndarray, gain: float, gamma: float, offset: float = 0.0) -> np.ndarray:
    """A uint8 image with its contrast scaled by ``gain`` about its mean, shifted by ``offset`` (0-255 scale),
    then gamma-corrected; one look-up table, so the cost does not grow with the image."""
    image = np.ascontiguousarray(image)
    mean = float(image.mean())
    levels = np.clip((np.arange(256, dtype=np.float32) - mean) * gain + mean + offset, 0, 255)
    levels = 255.0 * (levels / 255.0) ** gamma
    return cv2.LUT(image, np.clip(levels, 0, 255).astype(np.uint8))


def add_gray_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The same Gaussian noise on every channel (the slices are gray), clipped to uint8."""
    noise = rng.normal(0, sigma, image.shape[:2]).astype(np.float32)[:, :, None]
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
