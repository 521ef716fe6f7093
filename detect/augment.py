"""Intensity augmentation for MRI that ultralytics lacks: contrast, gamma, noise and blur."""

from __future__ import annotations

import cv2
import numpy as np

from mri.intensity import add_gray_noise, contrast_gamma


class MRIIntensity:
    """An ultralytics transform (``labels -> labels``) that changes only ``labels['img']`` intensities."""

    def __init__(self, p=0.5, contrast=(1.0, 1.0), gamma=(1.0, 1.0), noise_std=0.0, blur_p=0.0, seed=None):
        self.p, self.contrast, self.gamma = float(p), tuple(contrast), tuple(gamma)
        self.noise_std, self.blur_p = float(noise_std), float(blur_p)
        self.rng = np.random.default_rng(seed)

    def __call__(self, labels: dict) -> dict:
        if self.rng.random() < self.p:
            labels["img"] = self.apply(labels["img"])
        return labels

    def apply(self, image: np.ndarray) -> np.ndarray:
        gain = self.rng.uniform(*self.contrast)
        gamma = np.exp(self.rng.uniform(np.log(self.gamma[0]), np.log(self.gamma[1])))
        out = contrast_gamma(image, gain, gamma)
        if self.blur_p and self.rng.random() < self.blur_p:
            out = cv2.GaussianBlur(out, (0, 0), sigmaX=self.rng.uniform(0.5, 1.2))
        if self.noise_std > 0:
            out = add_gray_noise(out, self.rng.uniform(0, self.noise_std), self.rng)
        return np.ascontiguousarray(out)
