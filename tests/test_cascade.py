"""The cascade itself: crops cut together equal OpenCV's and the classifier's own, one forward pass for the
classifier, the contract, prefetching, threads and top-k."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import cascade_scans, synthetic_scan

from cascade.backends import classifier_contract
from cascade.pipeline import Cascade, prefetched
from classify.crops import CropRule, crops_for_boxes, crops_for_boxes_batched


@pytest.mark.parametrize("rule", [CropRule(size=32, context=0.25, min_side=24), CropRule(size=96, context=0.1, min_side=8)])
def test_crops_cut_together_equal_opencv_crops_within_rounding(rule):
    rng = np.random.default_rng(0)
    images = [synthetic_scan(96, seed=1), synthetic_scan(200, seed=2)[:150], synthetic_scan(64, seed=3)]
    boxes = []
    for image in images:
        height, width = image.shape[:2]
        x1, y1 = rng.uniform(-20, width, 12), rng.uniform(-20, height, 12)  # some boxes leave the image
        size_x, size_y = rng.uniform(1, width * 0.8, 12), rng.uniform(1, height * 0.8, 12)  # crops enlarged and shrunk
        boxes.append(np.stack([x1, y1, x1 + size_x, y1 + size_y], 1).astype(np.float32))
    boxes[2] = boxes[2][:0]  # an image without boxes
    expected = np.concatenate([crops_for_boxes(image, b, rule) for image, b in zip(images, boxes)])
    got = crops_for_boxes_batched(images, boxes, rule).permute(0, 2, 3, 1).numpy()
    assert got.shape == expected.shape == (24, rule.size, rule.size, 3)
    assert np.abs(np.round(got) - expected.astype(np.float32)).max() <= 1.0


def test_contract_carries_every_key_but_the_weights():
    checkpoint = {"model": {"w": torch.zeros(2)}, "optimizer": {}, "arch": "baseline", "classes": ["no_tumor", "glioma"],
                  "input_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "crop_rule": {"size": 32},
                  "thresholds": {"default": 0.4}, "fusion": {"det_logit": 1.0, "tumor_logit": 2.0, "intercept": -1.5},
                  "args": {"out": Path("x")}, "calibration": torch.tensor([0.5, 0.25]), "n": np.int64(3)}
    contract = classifier_contract(checkpoint)
    assert set(contract) == set(checkpoint) - {"model", "optimizer"}
    assert contract["fusion"] == {"det_logit": 1.0, "tumor_logit": 2.0, "intercept": -1.5} and contract["args"] == {"out": "x"}
    assert contract["calibration"] == [0.5, 0.25] and contract["n"] == 3
    assert json.loads(json.dumps(contract)) == contract


def test_prefetched_keeps_order_and_raises_the_loaders_error():
    assert [loaded for _, loaded in prefetched(range(5), lambda x: x * 10)] == [0, 10, 20, 30, 40]

    def load(x):
        if x == 2:
            raise OSError("bad scan")
        return x

    with pytest.raises(OSError, match="bad scan"):
        list(prefetched(range(4), load))


def test_cascade_keeps_every_thread_after_ultralytics_predict(tiny_weights):
    cascade = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001)
    torch.set_num_threads(1)  # as ultralytics leaves it on small CPUs
    cascade.run(cascade_scans())
    assert torch.get_num_threads() == max(1, os.cpu_count() or 1)
    assert cascade.threads()["torch"] == torch.get_num_threads()


def test_top_k_classifies_only_the_best_boxes_and_those_at_the_operating_point(tiny_weights):
    cascade = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001)
    images = cascade_scans()
    everything = cascade.run(images)
    limited = cascade.run(images, top_k=1)
    for full, top in zip(everything, limited):
        assert [d.box for d in full] == [d.box for d in top]
        assert [d.classified for d in top] == [i < 1 for i in range(len(top))]
        if top:
            assert top[0].tumor_prob == pytest.approx(full[0].tumor_prob, abs=1e-5)
        assert all(np.isnan(d.tumor_prob) and not d.kept for d in top[1:])
    scores = [d.det_score for image in everything for d in image]
    middle = float(np.median(scores))
    above = cascade.run(images, top_k=0, always_above=middle)
    assert all(d.classified == (d.det_score >= middle) for image in above for d in image)


def test_cascade_crops_are_crop_for_classifier_crops(tiny_weights):
    from classify.crops import crop_for_classifier

    cascade = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001)
    images = cascade_scans()
    results = cascade.run(images, keep_crops=True)
    assert any(results)
    for image, detections in zip(images, results):
        for detection in detections:
            assert np.array_equal(detection.crop, crop_for_classifier(image, detection.box, cascade.rule))


def test_the_cascade_runs_the_classifier_as_training_and_evaluation_do(tiny_weights):
    """One forward pass: the cascade's probabilities for its crops are classify.predict's for the same crops."""
    from classify.checkpoint import load_checkpoint, model_from_checkpoint
    from classify.predict import predict_crops

    cascade = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001)
    results = cascade.run(cascade_scans(), keep_crops=True)
    detections = [d for image in results for d in image]
    assert detections
    checkpoint = load_checkpoint(tiny_weights["cls"])
    expected = predict_crops(model_from_checkpoint(checkpoint), np.stack([d.crop for d in detections]),
                             checkpoint["mean"], checkpoint["std"])
    assert [d.tumor_prob for d in detections] == pytest.approx(list(1.0 - expected[:, 0]), abs=1e-5)


def test_test_time_augmentation_gives_boxes_in_the_image_and_needs_pytorch_weights(tiny_weights, tmp_path):
    from cascade.pipeline import WeightsError

    cascade = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001, tta=True)
    images = cascade_scans()
    for image, (boxes, scores) in zip(images, cascade.detect(images)):
        height, width = image.shape[:2]
        assert np.all(np.diff(scores) <= 0) and np.all(boxes >= -1) and np.all(boxes[:, [0, 2]] <= width + 1)
        assert np.all(boxes[:, [1, 3]] <= height + 1)
    exported = tmp_path / "detector.onnx"
    exported.write_bytes(b"")
    with pytest.raises(WeightsError, match="--tta"):
        Cascade.load(exported, tiny_weights["cls"], tta=True)


def test_a_classifier_trained_on_standardised_slices_gets_its_crops_from_standardised_slices(tiny_weights, tmp_path):
    """The crop rule in the checkpoint decides: the cascade cuts the crops from the standardised slice, as
    training did, and the detector is not affected (its own checkpoint decides for it)."""
    from classify.checkpoint import load_checkpoint, save_checkpoint
    from classify.crops import crop_for_classifier
    from mri.intensity import standardise

    checkpoint = load_checkpoint(tiny_weights["cls"], calibrated=False)
    checkpoint["crop_rule"] = {**checkpoint["crop_rule"], "standardise": True}
    save_checkpoint(tmp_path / "standardised.pt", checkpoint)
    plain = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001)
    cascade = Cascade.load(tiny_weights["det"], tmp_path / "standardised.pt", conf=0.001)
    # the tiny detector trained with --hyp standardised, so it standardises too
    assert cascade.standardise == {"detector": True, "classifier": True} and not plain.standardise["classifier"]
    images = [(image * 0.5).astype(np.uint8) for image in cascade_scans()]  # dim slices: standardising changes them
    results = cascade.run(images, keep_crops=True)
    assert [[d.box for d in r] for r in results] == [[d.box for d in r] for r in plain.run(images)]
    detections = [(image, d) for image, found in zip(images, results) for d in found]
    assert detections
    for image, detection in detections:
        expected = crop_for_classifier(standardise(image), detection.box, cascade.rule)
        assert np.array_equal(detection.crop, expected)
        assert not np.array_equal(detection.crop, crop_for_classifier(image, detection.box, cascade.rule))
