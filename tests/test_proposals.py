"""The second head trained on what it will see: detector proposals labelled by IoU, and the score fusion."""

import numpy as np
import pytest

from classify.crop_data import CropRecipe, build_split, label_proposals, proposal_labels
from classify.crops import CropRule
from classify.fusion import fit_fusion, fused_score
from mri.metrics import ImageResult
from mri.registry import load_registry


def _result(key="set/train/a.jpg", preds=(), scores=()):
    return ImageResult(key=key, dataset="set", width=100, height=100,
                       gt_boxes=np.array([[20, 20, 40, 40]], np.float32), gt_classes=["pituitary"],
                       pred_boxes=np.array(preds, np.float32).reshape(-1, 4), pred_scores=np.array(scores, np.float32))


def test_proposals_are_labelled_by_overlap_with_ground_truth():
    result = _result(preds=[[20, 20, 40, 40], [24, 20, 44, 40], [60, 60, 80, 80]], scores=[0.9, 0.8, 0.7])
    # IoU 1.0 -> the tumor's type; IoU 0.67 -> also that tumor; no overlap -> "no tumor"
    assert proposal_labels(result) == ["pituitary", "pituitary", None]
    ambiguous = _result(preds=[[30, 20, 50, 40]], scores=[0.9])  # IoU 1/3: neither
    assert proposal_labels(ambiguous) == [False]


def test_label_proposals_keeps_the_top_boxes_above_the_confidence_floor():
    recipe = CropRecipe(proposals_per_scan=2, proposal_min_conf=0.1)
    result = _result(preds=[[60, 60, 80, 80], [20, 20, 40, 40], [0, 0, 10, 10], [5, 70, 15, 80]],
                     scores=[0.5, 0.95, 0.3, 0.05])
    labelled = label_proposals([result, _result(key="set/train/empty.jpg")], recipe)
    assert list(labelled) == ["set/train/a.jpg"]  # an image without proposals adds nothing
    assert labelled["set/train/a.jpg"] == [([20.0, 20.0, 40.0, 40.0], "pituitary"), ([60.0, 60.0, 80.0, 80.0], None)]


def test_proposal_crops_join_the_training_set_with_their_labels(tiny_registry):
    registry = load_registry(tiny_registry)
    records = [r for r in registry.images(["tiny_yolo"], ["train"]) if r.classes][:1]
    record = records[0]
    width, height = 96, 96
    gt = record.boxes[0] * np.array([width, height, width, height])
    proposals = {record.key: [(gt.tolist(), record.classes[0]), ([0.0, 0.0, 10.0, 10.0], None)]}
    crops, _ = build_split(records, registry, CropRule(size=32), True, 0,
                           proposals=proposals)
    kinds = list(crops.kinds)
    assert kinds.count("proposal") == 1 and kinds.count("hard") == 1
    assert crops.labels[kinds.index("proposal")] == registry.classes.index(record.classes[0]) + 1
    assert crops.labels[kinds.index("hard")] == 0


def test_fusion_learns_to_trust_the_head_that_separates_tumors():
    rng = np.random.default_rng(0)
    is_tumor = rng.random(2000) < 0.3
    det = np.clip(rng.uniform(0.05, 0.9, 2000), 0, 1)  # the detector's score says nothing here
    tumor = np.where(is_tumor, rng.beta(6, 2, 2000), rng.beta(2, 6, 2000))  # the classifier does
    fusion = fit_fusion(det, tumor, is_tumor)
    assert fusion["tumor_logit"] > 0.5 > abs(fusion["det_logit"])
    assert fusion["n"] == 2000 and fusion["positives"] == int(is_tumor.sum())
    fused = fused_score(det, tumor, fusion)
    assert ((fused > 0.5) == is_tumor).mean() > 0.8 and np.all((fused > 0) & (fused < 1))


def test_without_a_fitted_fusion_the_score_is_the_geometric_mean():
    assert fused_score([0.25, 1.0], [1.0, 0.36], None) == pytest.approx([0.5, 0.6])


def test_fusion_needs_both_outcomes():
    with pytest.raises(ValueError, match="tumors and proposals that are not"):
        fit_fusion([0.5, 0.6], [0.5, 0.6], [True, True])
