"""Exported heads (ONNX, OpenVINO) give the cascade's results; crops cut together equal OpenCV's; threads stay."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import synthetic_scan

from cascade.backends import CONTRACT_KEY, classifier_contract, load_classifier
from cascade.pipeline import Cascade, WeightsError, prefetched
from classify.crops import CropRule, crops_for_boxes, crops_for_boxes_batched
from mri import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "tools"))
import export  # noqa: E402

SHIPPED = {"det": PROJECT_ROOT / "weights" / "detector.pt", "cls": PROJECT_ROOT / "weights" / "classifier.pt"}
DEMO_SCANS = sorted((PROJECT_ROOT / "demo" / "scans").glob("*.jpg"))


def _scans():
    return [synthetic_scan(96, ((0.3, 0.3, 0.5, 0.5),), seed=i) for i in range(3)] + [synthetic_scan(128, (), seed=7)]


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


def _assert_same_results(reference, other, corner_px=2.0, prob=0.01):
    for expected, got in zip(reference, other, strict=True):
        expected_kept = [d for d in expected if d.kept]
        got_kept = [d for d in got if d.kept]
        assert len(expected_kept) == len(got_kept)
        for a, b in zip(expected_kept, got_kept):
            assert np.abs(np.array(a.box) - np.array(b.box)).max() <= corner_px
            assert abs(a.tumor_prob - b.tumor_prob) <= prob and a.type == b.type


@pytest.fixture(scope="module")
def exported(tiny_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    onnx = out / "onnx"
    onnx.mkdir()
    return {"onnx": {"det": export.export_detector(tiny_weights["det"], onnx),
                     "cls": export.export_classifier(tiny_weights["cls"], onnx)}, "root": out}


@pytest.mark.slow
def test_onnx_export_carries_the_contract_and_gives_the_same_results(tiny_weights, exported):
    import onnx

    files = exported["onnx"]
    assert files["det"].name == "detector.onnx" and files["cls"].name == "classifier.onnx"
    props = {p.key: p.value for p in onnx.load(str(files["cls"])).metadata_props}
    contract = json.loads(props[CONTRACT_KEY])
    checkpoint = torch.load(tiny_weights["cls"], map_location="cpu", weights_only=True)
    for key in ("classes", "input_size", "mean", "std", "crop_rule", "thresholds", "arch"):
        assert contract[key] == json.loads(json.dumps(checkpoint[key]))
    head = load_classifier(files["cls"], torch.device("cpu"))
    batch = torch.randn(5, 3, contract["input_size"], contract["input_size"])  # dynamic batch
    assert head(batch).shape == (5, len(contract["classes"]))

    images = _scans()
    reference = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001).run(images)
    onnx_run = Cascade.load(files["det"], files["cls"], conf=0.001).run(images)
    assert sum(len(d) for d in reference) > 0
    _assert_same_results(reference, onnx_run)
    mixed = Cascade.load(tiny_weights["det"], files["cls"], conf=0.001).run(images)  # one head of each kind
    _assert_same_results(reference, mixed)


@pytest.mark.slow
def test_openvino_export_gives_the_same_results(tiny_weights, exported):
    folder = exported["root"] / "openvino"
    folder.mkdir()
    det = export.export_detector(tiny_weights["det"], folder, "openvino")
    cls = export.export_classifier(tiny_weights["cls"], folder, "openvino")
    assert det.name == "detector_openvino_model" and (det / "detector.xml").is_file() and (det / "metadata.yaml").is_file()
    assert (cls / "classifier.xml").is_file()
    images = _scans()
    reference = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001).run(images)
    _assert_same_results(reference, Cascade.load(det, cls, conf=0.001).run(images))
    assert "openvino_telemetry" in sys.modules and sys.modules["openvino_telemetry"] is None  # its usage events stay off


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED["det"].is_file() or not DEMO_SCANS, reason="shipped weights or demo scans absent")
def test_shipped_weights_exported_to_onnx_keep_the_demo_results(tmp_path):
    from mri.scan_io import read_scan

    det, cls = export.export_detector(SHIPPED["det"], tmp_path), export.export_classifier(SHIPPED["cls"], tmp_path)
    images = [read_scan(path)[0].image for path in DEMO_SCANS]
    reference = Cascade.load(SHIPPED["det"], SHIPPED["cls"]).run(images)
    assert any(d.kept for image in reference for d in image)
    _assert_same_results(reference, Cascade.load(det, cls).run(images))


def test_cascade_keeps_every_thread_after_ultralytics_predict(tiny_weights):
    cascade = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001)
    torch.set_num_threads(1)  # as ultralytics leaves it on small CPUs
    cascade.run(_scans())
    assert torch.get_num_threads() == max(1, os.cpu_count() or 1)
    assert cascade.threads()["torch"] == torch.get_num_threads()


def test_top_k_classifies_only_the_best_boxes_and_those_at_the_operating_point(tiny_weights):
    cascade = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001)
    images = _scans()
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


def test_unusable_exported_weights_fail_in_one_line(tiny_weights, tmp_path):
    import onnx

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="junk.onnx: not a readable ONNX model"):
        Cascade.load(tiny_weights["det"], junk)
    with pytest.raises(WeightsError, match="junk.onnx: not a readable ONNX model"):
        Cascade.load(junk, tiny_weights["cls"])
    bare = tmp_path / "bare.onnx"  # a real ONNX model without our contract
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(bare))
    with pytest.raises(WeightsError, match=f"no {CONTRACT_KEY} in its metadata"):
        Cascade.load(tiny_weights["det"], bare)
    with pytest.raises(WeightsError, match="not a detector exported by ultralytics"):
        Cascade.load(bare, tiny_weights["cls"])
    with pytest.raises(WeightsError, match="weights not found"):
        Cascade.load(tmp_path / "none.onnx", tiny_weights["cls"])


def test_export_cli_refuses_missing_weights_in_one_line(tmp_path):
    import subprocess

    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "tools" / "export.py"), "--det-weights", str(tmp_path / "none.pt"),
                             "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'none.pt'}: detector weights not found "
                                                  "(train one with `python -m detect.train`)"]
    assert not out.exists()


def test_cascade_crops_are_crop_for_classifier_crops(tiny_weights):
    from classify.crops import crop_for_classifier

    cascade = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001)
    images = _scans()
    results = cascade.run(images, keep_crops=True)
    assert any(results)
    for image, detections in zip(images, results):
        for detection in detections:
            assert np.array_equal(detection.crop, crop_for_classifier(image, detection.box, cascade.rule))


def test_export_weights_ships_an_fp16_classifier_that_gives_the_same_results(tiny_weights, tmp_path):
    import export_weights

    out = tmp_path / "weights"
    args = export_weights.get_args_parser().parse_args(["--detector", str(tiny_weights["det"]),
                                                         "--classifier", str(tiny_weights["cls"]), "--out", str(out)])
    assert export_weights.main(args) == 0
    shipped = torch.load(out / "classifier.pt", map_location="cpu", weights_only=True)
    assert not {"optimizer", "scheduler"} & set(shipped)
    assert {v.dtype for v in shipped["model"].values() if v.is_floating_point()} == {torch.float16}
    assert (out / "detector.pt").read_bytes() == Path(tiny_weights["det"]).read_bytes()
    images = _scans()
    full = Cascade.load(tiny_weights["det"], tiny_weights["cls"], conf=0.001).run(images)
    half = Cascade.load(out / "detector.pt", out / "classifier.pt", conf=0.001).run(images)
    assert [len(d) for d in full] == [len(d) for d in half]
    for a, b in zip(full, half):
        assert [d.tumor_prob for d in b] == pytest.approx([d.tumor_prob for d in a], abs=0.02)
