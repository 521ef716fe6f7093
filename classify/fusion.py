"""One score per cascade box from the detector's confidence and the classifier's P(tumor).

A logistic regression on the two log-odds, fitted on validation scans' detector proposals (target: the
proposal overlaps a tumor at IoU >= 0.5), replaces a fixed rule such as their geometric mean: it learns how
much to trust each head. The fitted coefficients travel in the classifier checkpoint under ``fusion``.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def _features(det_scores, tumor_probs) -> np.ndarray:
    det = np.clip(np.asarray(det_scores, np.float64), EPS, 1 - EPS)
    tumor = np.clip(np.asarray(tumor_probs, np.float64), EPS, 1 - EPS)
    return np.stack([np.ones_like(det), np.log(det / (1 - det)), np.log(tumor / (1 - tumor))], axis=1)


def fit_fusion(det_scores, tumor_probs, is_tumor, l2: float = 1e-3, iterations: int = 50) -> dict:
    """Fit P(tumor box) = sigmoid(b + w_det * logit(det) + w_cls * logit(P(tumor))) by Newton's method.

    Needs both outcomes among the proposals; raises ``ValueError`` otherwise.
    """
    x = _features(det_scores, tumor_probs)
    y = np.asarray(is_tumor, np.float64)
    if len(y) == 0 or y.min() == y.max():
        raise ValueError("fusion needs validation proposals that are tumors and proposals that are not")
    weights = np.zeros(3)
    penalty = l2 * np.diag([0.0, 1.0, 1.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-x @ weights))
        gradient = x.T @ (p - y) + penalty @ weights
        hessian = (x * (p * (1 - p))[:, None]).T @ x + penalty + 1e-9 * np.eye(3)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"intercept": float(weights[0]), "det_logit": float(weights[1]), "tumor_logit": float(weights[2]),
            "n": int(len(y)), "positives": int(y.sum())}


def fused_score(det_scores, tumor_probs, fusion: dict | None) -> np.ndarray:
    """The ranking score of cascade boxes: the fitted fusion, or the geometric mean where none was fitted."""
    if not fusion:
        return np.sqrt(np.asarray(det_scores, np.float64) * np.asarray(tumor_probs, np.float64))
    weights = np.array([fusion["intercept"], fusion["det_logit"], fusion["tumor_logit"]])
    return 1.0 / (1.0 + np.exp(-_features(det_scores, tumor_probs) @ weights))
