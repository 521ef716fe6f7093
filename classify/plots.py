"""Figures of a classifier run: training vs validation curves, confusion matrix, augmentation gallery."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_history(history: list[dict], path: Path) -> Path:
    """Loss and tumor F1 per epoch, training vs validation."""
    epochs = [h["epoch"] + 1 for h in history]
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [h["train"]["loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["val"]["loss"] for h in history], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_f1.plot(epochs, [h["train"].get("tumor_f1") for h in history], "o-", label="train")
    ax_f1.plot(epochs, [h["val"]["tumor_f1"] for h in history], "o-", label="validation")
    ax_f1.set(xlabel="epoch", ylabel="tumor-vs-not F1", title="F1", ylim=(0, 1.01))
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_f1):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_matrix(probabilities: np.ndarray, labels: np.ndarray, classes: list[str], threshold: float) -> np.ndarray:
    """Rows: truth (classes, then 'tumor (type unknown)'); columns: prediction (classes)."""
    n = len(classes)
    tumor = (1 - probabilities[:, 0]) >= threshold
    predicted = np.where(tumor, probabilities[:, 1:].argmax(1) + 1, 0)
    matrix = np.zeros((n + 1, n), np.int64)
    for truth, guess in zip(labels, predicted):
        matrix[int(truth), int(guess)] += 1
    return matrix


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path) -> Path:
    rows = [*classes, "tumor (type unknown)"][: matrix.shape[0]]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.imshow(matrix / np.maximum(matrix.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="predicted", ylabel="truth", title="Confusion matrix (test crops)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_gallery(crops: np.ndarray, transform, path: Path, columns: int = 8, seed: int = 0) -> Path:
    """Each row: an original crop, then augmented versions of it (as the classifier sees them in training)."""
    import cv2

    rng = np.random.default_rng(seed)
    rows = []
    for crop in crops[: columns]:
        rows.append(np.hstack([crop, *[transform.augment(crop, rng) for _ in range(columns - 1)]]))
    grid = np.vstack(rows) if rows else np.zeros((8, 8, 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid)
    return path
