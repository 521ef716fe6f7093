"""Grad-CAM for the crop classifier: where in the crop the evidence for the predicted type lies."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def grad_cam(model, batch: torch.Tensor, classes: list[int]) -> list[np.ndarray]:
    """One [0, 1] heatmap (crop-sized) per input, for the given output class of each.

    Works for any model with ``forward_features`` (a spatial map) and ``forward_head`` (timm models and
    our baseline CNN).
    """
    model.eval()
    with torch.enable_grad():
        features = model.forward_features(batch).detach().requires_grad_(True)
        logits = model.forward_head(features)
        chosen = logits[torch.arange(len(classes)), torch.as_tensor(classes)]
        (gradients,) = torch.autograd.grad(chosen.sum(), features)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cams = F.relu((weights * features).sum(dim=1, keepdim=True))
    cams = F.interpolate(cams, size=batch.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    result = []
    for cam in cams.detach().cpu().numpy():
        span = cam.max() - cam.min()
        result.append((cam - cam.min()) / span if span > 0 else np.zeros_like(cam))
    return result
