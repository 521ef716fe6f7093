"""Curating labels and inspecting mistakes in the fiftyone App.

Fields of a review dataset (one sample per registry image):
``ground_truth`` (editable boxes, project class names), ``detector`` and ``cascade`` (predictions; cascade
boxes carry ``det_score``, ``tumor_prob`` and ``kept``), ``gt_tumor`` and ``cascade_tumor`` (the same boxes
all labelled "tumor", derived by ``evaluate`` for class-agnostic scoring), ``dataset``, ``split`` (leakage-free), ``source_split``,
``patient``, ``dup_group`` (audit near-duplicate group, -1 for none) and ``dup_cross_split``. Tags: the source
dataset and the split.
"""

DEFAULT_DATASET = "mri-tumors"
