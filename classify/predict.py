"""Running the classifier: the one forward pass that training's validation, calibration, evaluation, score
fusion and the cascade's PyTorch head all use."""

from __future__ import annotations

import numpy as np
import torch

from classify.presets import to_batch


@torch.no_grad()
def probabilities(model: torch.nn.Module, batch: torch.Tensor) -> np.ndarray:
    """Class probabilities (N, classes) of a normalised batch (N, 3, S, S), in evaluation mode."""
    training = model.training
    model.eval()
    device = next(model.parameters()).device
    # channels-last: about 30% faster on CPU for EfficientNet's depthwise convolutions (measured, 96 px)
    output = model(batch.to(device).contiguous(memory_format=torch.channels_last)).softmax(1).cpu().numpy()
    model.train(training)
    return output


def predict_crops(model: torch.nn.Module, crops: np.ndarray, mean, std, batch: int = 64) -> np.ndarray:
    """Class probabilities of a stack of uint8 BGR crops, as ``crop_for_classifier`` cuts them."""
    chunks = [probabilities(model, to_batch(crops[start : start + batch], mean, std))
              for start in range(0, len(crops), batch)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
