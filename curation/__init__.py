"""Curating labels and inspecting mistakes in the fiftyone App.

Fields of a review dataset (one sample per registry image): ``ground_truth`` (editable boxes, project
class names; evaluation adds ``best_det_iou``, ``predicted_type``, ``type_error`` and fiftyone's
``eval_*`` and ``mistakenness*`` attributes to each box), ``detector`` and ``cascade`` (predictions;
cascade boxes carry ``det_score``, ``tumor_prob``, ``type_prob`` and ``kept``; both carry ``best_iou``),
``tumor_verdict`` (image-level, for hardness), ``dataset``, ``split`` (leakage-free), ``source_split``,
``patient``, ``record_key``, ``labels_loaded`` (the boxes as last loaded, to tell edits from source
changes), ``dup_group`` (audit near-duplicate group, -1 for none), ``dup_cross_split`` and ``dup_places``.
Tags: the source dataset and the split, plus the curator's own (``exclude``, ``bad_label``).
"""

import contextlib
import logging

DEFAULT_DATASET = "mri-tumors"


@contextlib.contextmanager
def quiet_fiftyone():
    """Silence fiftyone's progress messages (each evaluation, metadata pass and brain run logs its own)."""
    logger = logging.getLogger("fiftyone")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
