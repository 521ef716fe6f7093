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


STANDARDISE_PERCENTILES = (0.5, 99.5)
BACKGROUND_LEVEL = 8  # gray levels at or below this are air (JPEG noise around 0 included)
MIN_FOREGROUND = 0.02  # below this share of foreground pixels the slice is left as it is


def standardise(image: np.ndarray, percentiles: tuple[float, float] = STANDARDISE_PERCENTILES) -> np.ndarray:
    """A uint8 slice with its foreground's 0.5th-99.5th percentile window stretched to 0-255.

    Scanners, sequences and exports window MRI differently (a dim slice, a bright one, a clipped one); this
    maps each slice's own tissue range to the same range, the way nnU-Net-style pipelines normalise MRI per
    image, and ignores the air around the head so that a small brain on a big field of view is stretched
    like a large one. Monotonic and the same for every channel (gray slices stored as BGR stay gray). Both
    heads call it, in training and at inference, when their checkpoint says they were trained with it.
    """
    image = np.ascontiguousarray(image)
    gray = image if image.ndim == 2 else image[..., 0]
    counts = np.bincount(gray.ravel(), minlength=256)[BACKGROUND_LEVEL + 1 :]
    total = int(counts.sum())
    if total < MIN_FOREGROUND * gray.size:
        return image
    cumulative = np.cumsum(counts) / total
    low, high = (BACKGROUND_LEVEL + 1 + int(np.searchsorted(cumulative, p / 100.0)) for p in percentiles)
    if high <= low:
        return image
    levels = (np.arange(256, dtype=np.float32) - low) * (255.0 / (high - low))
    return cv2.LUT(image, np.clip(np.rint(levels), 0, 255).astype(np.uint8))
