"""Training and evaluation of the crop classifier: loss, one epoch, metrics, threshold calibration."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from classify.crop_data import CropSet
from classify.presets import CropTransform
from mri.metrics import f1_score, overall_and_per_dataset


class CropDataset(Dataset):
    """Crops with a preset; augmentation is seeded by (seed, epoch, index), so runs repeat exactly."""

    def __init__(self, crops: CropSet, transform: CropTransform, seed: int = 0):
        self.crops, self.transform, self.seed, self.epoch = crops, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.transform(self.crops.images[index], rng), int(self.crops.labels[index])


def cascade_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over (no tumor, types); a tumor of unknown type (label == n_classes) only has to be
    *some* tumor: its loss is -log P(any type)."""
    n_classes = logits.shape[1]
    untyped = labels == n_classes
    losses = []
    if (~untyped).any():
        losses.append(F.cross_entropy(logits[~untyped], labels[~untyped], reduction="none", label_smoothing=label_smoothing))
    if untyped.any():
        log_probs = logits[untyped].log_softmax(dim=1)
        losses.append(-torch.logsumexp(log_probs[:, 1:], dim=1))
    return torch.cat(losses).mean()


def train_one_epoch(model, loader, optimizer, scheduler, device, label_smoothing=0.05, progress=True) -> dict:
    from tqdm import tqdm

    model.train()
    total, count, probabilities, labels_seen = 0.0, 0, [], []
    for images, labels in tqdm(loader, desc="train", unit="batch", leave=False, disable=not progress):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(images)
        loss = cascade_loss(logits, labels, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(labels)
        count += len(labels)
        probabilities.append(logits.detach().softmax(1).cpu().numpy())
        labels_seen.append(labels.cpu().numpy())
    figures = classification_metrics(np.concatenate(probabilities), np.concatenate(labels_seen)) if count else {}
    return {"loss": total / max(count, 1), **{k: figures[k] for k in ("tumor_f1", "type_accuracy") if k in figures}}


def loss_of_probabilities(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """``cascade_loss`` of predicted probabilities (their logarithms are valid logits for it)."""
    if not len(labels):
        return 0.0
    log_probabilities = torch.from_numpy(np.log(np.clip(probabilities, 1e-12, None)))
    return float(cascade_loss(log_probabilities, torch.from_numpy(np.asarray(labels, np.int64))))


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties averaged); None when one class is missing."""
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    start = 0
    for end in range(1, len(scores) + 1):
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def binary_figures(scores: np.ndarray, truth: np.ndarray, threshold: float) -> dict:
    predicted = scores >= threshold
    tp, fp, fn = int((predicted & truth).sum()), int((predicted & ~truth).sum()), int((~predicted & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"tumor_f1": f1_score(tp, fp, fn), "tumor_precision": precision, "tumor_recall": recall}


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict:
    """Tumor-vs-not F1/precision/recall/ROC-AUC at ``threshold`` on P(tumor), and type accuracy/macro-F1."""
    n_classes = probabilities.shape[1]
    tumor_score = 1.0 - probabilities[:, 0]
    truth = labels != 0
    figures = {"n": int(len(labels)), "threshold": float(threshold), **binary_figures(tumor_score, truth, threshold),
               "roc_auc": roc_auc(tumor_score, truth)}
    typed = (labels >= 1) & (labels < n_classes)
    if typed.any():
        predicted_type = probabilities[typed, 1:].argmax(1) + 1
        actual = labels[typed]
        figures["type_accuracy"] = float((predicted_type == actual).mean())
        per_type = []
        for cls in range(1, n_classes):
            tp = int(((predicted_type == cls) & (actual == cls)).sum())
            fp = int(((predicted_type == cls) & (actual != cls)).sum())
            fn = int(((predicted_type != cls) & (actual == cls)).sum())
            if tp + fn:
                per_type.append(f1_score(tp, fp, fn))
        figures["type_macro_f1"] = float(np.mean(per_type)) if per_type else None
        figures["n_typed"] = int(typed.sum())
    else:
        figures.update(type_accuracy=None, type_macro_f1=None, n_typed=0)
    return figures


def calibrate_thresholds(probabilities: np.ndarray, labels: np.ndarray, min_sensitivity: float = 0.95) -> dict:
    """Decision thresholds on P(tumor) from validation crops: the max-F1 one, and the highest one that
    keeps tumor sensitivity at or above ``min_sensitivity`` (the default)."""
    scores, truth = 1.0 - probabilities[:, 0], labels != 0
    candidates = np.unique(np.concatenate([scores, [0.5]]))
    best_f1, best_t = -1.0, 0.5
    sensitive_t = float(candidates.min()) if len(candidates) else 0.5
    for threshold in candidates:
        figures = binary_figures(scores, truth, threshold)
        if figures["tumor_f1"] > best_f1:
            best_f1, best_t = figures["tumor_f1"], float(threshold)
        if figures["tumor_recall"] >= min_sensitivity:
            sensitive_t = max(sensitive_t, float(threshold))
    # A tumor finder should not drop tumors to look tidy: the shipped default is the sensitive threshold.
    return {"max_f1": best_t, f"sensitivity_{min_sensitivity:g}": sensitive_t, "default": sensitive_t}


def metrics_by_dataset(probabilities, labels, datasets, threshold) -> dict:
    def compute(indices):
        indices = np.asarray(indices, int)
        return classification_metrics(probabilities[indices], labels[indices], threshold)

    return overall_and_per_dataset(compute, list(range(len(labels))), datasets.tolist())


class Stopwatch:
    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start


def fit(model, train_set: CropSet, val_set: CropSet, args, device, context, on_epoch_end, start_epoch: int = 0,
        optimizer_state=None, scheduler_state=None, history=None):
    """Train for ``args.epochs`` epochs (from ``start_epoch``); call ``on_epoch_end(epoch, model, optimizer,
    scheduler, history)`` on the main process after each epoch. Returns the history."""
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from classify.models import normalisation
    from classify.predict import predict_crops

    mean, std = normalisation(args.arch)
    train_data = CropDataset(train_set, CropTransform(args.hyp, mean, std), args.seed)
    sampler = DistributedSampler(train_data, context.world_size, context.rank, shuffle=True, seed=args.seed) \
        if context.enabled else None
    generator = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(train_data, batch_size=args.batch, shuffle=sampler is None, sampler=sampler,
                              num_workers=args.workers, drop_last=len(train_data) > args.batch, generator=generator)
    model = model.to(device)
    network = DistributedDataParallel(model) if context.enabled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = max(1, len(train_loader)) * args.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    if scheduler_state is not None:
        scheduler.load_state_dict(scheduler_state)
    history = list(history or [])
    for epoch in range(start_epoch, args.epochs):
        train_data.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        watch = Stopwatch()
        train_figures = train_one_epoch(network, train_loader, optimizer, scheduler, device, args.label_smoothing,
                                        progress=context.is_main)
        if context.is_main:
            probabilities = predict_crops(model, val_set.images, mean, std, args.batch * 2)
            loss = loss_of_probabilities(probabilities, val_set.labels)
            val_figures = {"loss": loss, **classification_metrics(probabilities, val_set.labels)}
            history.append({"epoch": epoch, "train": train_figures, "val": val_figures, "seconds": watch.seconds()})
            print(f"epoch {epoch + 1}/{args.epochs}: train loss {train_figures['loss']:.4f} "
                  f"F1 {train_figures.get('tumor_f1', 0):.3f} | val loss {loss:.4f} F1 {val_figures['tumor_f1']:.3f} "
                  f"type acc {val_figures['type_accuracy'] or 0:.3f} | {watch.seconds():.0f} s", flush=True)
            on_epoch_end(epoch, model, optimizer, scheduler, history)
    return history
