import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import plain_detector_copy, run_tool, standardised_detector_copy
from synthetic import YOLO_ENTRY, make_yolo_dataset, write_registry

from detect import train as detect_train
from detect.augment import MRIIntensity
from detect.presets import load_preset
from mri.metrics import (ImageResult, coco_map, detection_metrics, froc, fp_per_image_at_sensitivity, precision_recall_at,
                         ultralytics_map)


def _cli(module, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A detector trained for two epochs on tiny synthetic scans through the real CLI."""
    root = tmp_path_factory.mktemp("detect")
    make_yolo_dataset(root / "yolo_set", per_split={"train": 12, "val": 4, "test": 4}, size=64)
    registry = write_registry(root / "datasets.yaml", {"tiny": YOLO_ENTRY})
    result = _cli("detect.train", "--registry", registry, "--epochs", 2, "--imgsz", 64, "--batch", 4,
                  "--project", root / "runs", "--name", "tiny", "--workers", 0, "--save-period", 1)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return SimpleNamespace(root=root, registry=registry, run=root / "runs" / "tiny")


def test_train_writes_a_run_with_weights_curves_and_resolved_args(trained_run):
    run = trained_run.run
    assert (run / "weights" / "best.pt").is_file() and (run / "weights" / "last.pt").is_file()
    assert (run / "results.csv").read_text().count("\n") == 3  # header and two epochs
    assert (run / "results.png").is_file()  # training vs validation losses and mAP
    import yaml

    saved = yaml.safe_load((run / "cli_args.yaml").read_text())
    assert saved["epochs"] == 2 and saved["hyp"] == "scanner" and saved["merged_data"].endswith("data.yaml")
    assert yaml.safe_load((run / "args.yaml").read_text())["multi_scale"] == 0  # multi-scale is a preset, not the default


def test_fine_tuning_keeps_the_input_a_detector_was_trained_on_unless_told(trained_run, tmp_path):
    """Without --hyp: scanner from scratch (the fixture's run), a standardised .pt stays standardised, and a .pt
    trained on raw slices stays on raw slices with ultralytics' default, since converting one showed no gain on the
    held-out source; --hyp still chooses."""
    plain = plain_detector_copy(trained_run.run / "weights" / "best.pt", tmp_path / "plain.pt")
    standardised = standardised_detector_copy(plain, tmp_path / "standardised.pt")
    assert detect_train.default_preset(str(plain)) == "default"
    assert detect_train.default_preset(str(standardised)) == "standardised"
    assert detect_train.default_preset("yolov5n.yaml") == "scanner"
    result = _cli("detect.train", "--registry", trained_run.registry, "--model", plain, "--epochs", 1, "--imgsz", 64,
                  "--batch", 4, "--project", tmp_path / "runs", "--name", "ft", "--workers", 0, "--no-plots")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "augmentation preset: default" in result.stdout
    import yaml

    assert yaml.safe_load((tmp_path / "runs" / "ft" / "cli_args.yaml").read_text())["hyp"] == "default"


def test_a_second_run_with_the_same_name_never_overwrites(trained_run):
    result = _cli("detect.train", "--registry", trained_run.registry, "--epochs", 1, "--imgsz", 64, "--batch", 4,
                  "--project", trained_run.root / "runs", "--name", "tiny", "--workers", 0, "--fraction", 0.5)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (trained_run.root / "runs" / "tiny-2" / "weights" / "last.pt").is_file()
    assert (trained_run.run / "results.csv").read_text().count("\n") == 3


def test_val_reports_coco_and_ultralytics_map_that_agree(trained_run, tmp_path):
    out = tmp_path / "val"
    result = _cli("detect.val", "--weights", trained_run.run / "weights" / "last.pt", "--registry", trained_run.registry,
                  "--split", "val", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    overall = metrics["overall"]
    assert overall["n_images"] == 4 and set(overall["sens_at_fp"]) == {"0.125", "0.25", "0.5", "1", "2", "4", "8"}
    assert abs(overall["coco"]["map50"] - overall["ultralytics"]["map50"]) < 0.05
    assert set(metrics["per_dataset"]) == {"tiny"}
    assert (out / "froc.png").is_file() and (out / "pr_curve.png").is_file()


def test_val_never_overwrites_an_earlier_result(trained_run, tmp_path):
    out = tmp_path / "val"
    out.mkdir()
    (out / "metrics.json").write_text('{"mine": 1}')
    result = _cli("detect.val", "--weights", trained_run.run / "weights" / "last.pt", "--registry", trained_run.registry,
                  "--split", "val", "--out", out, "--imgsz", 64)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "metrics.json").read_text() == '{"mine": 1}'
    assert json.loads((tmp_path / "val-2" / "metrics.json").read_text())["overall"]["n_images"] == 4


def test_val_on_a_coco_file_given_by_path(trained_run, tmp_path):
    from synthetic import make_coco_dataset

    coco = make_coco_dataset(tmp_path / "export", splits=("test",), per_split=3, size=64)
    result = _cli("detect.val", "--weights", trained_run.run / "weights" / "last.pt",
                  "--data", coco / "test" / "_annotations.coco.json", "--out", tmp_path / "out", "--imgsz", 64)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["overall"]["n_boxes"] == 2


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A two-epoch training cut after its first epoch, as a power cut would leave it."""
    root = tmp_path_factory.mktemp("interrupted")
    data = make_yolo_dataset(root / "data", per_split={"train": 6, "val": 2}, size=64)
    (root / "data.yaml").write_text(f"path: {data}\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    return _train_cut_after_one_epoch(root / "data.yaml", root / "runs")


def _train_cut_after_one_epoch(data_yaml, project):
    from ultralytics import YOLO

    from detect.engine import MRIDetectionTrainer

    def interrupt(trainer):
        if trainer.epoch == 0:
            raise KeyboardInterrupt("simulated power cut")

    model = YOLO("yolov5n.yaml")
    model.add_callback("on_fit_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.train(trainer=MRIDetectionTrainer, data=str(data_yaml), epochs=2, imgsz=64, batch=4,
                    workers=0, device="cpu", project=str(project), name="cut", plots=False)
    assert (Path(project) / "cut" / "weights" / "last.pt").is_file()
    return Path(project) / "cut"


def _copy_run(run, tmp_path):
    import shutil

    return Path(shutil.copytree(run, tmp_path / "moved" / run.name))


def test_resume_continues_an_interrupted_run(interrupted_run, tmp_path):
    import yaml

    run = _copy_run(interrupted_run, tmp_path)  # also moved: the run goes on where it is now
    assert detect_train.main(detect_train.get_args_parser().parse_args(["--resume", str(run), "--workers", "1"])) == 0
    assert (run / "results.csv").read_text().count("\n") == 3
    assert yaml.safe_load((run / "args.yaml").read_text())["workers"] == 1  # ultralytics took this machine's flag
    assert (interrupted_run / "results.csv").read_text().count("\n") == 2


def test_resume_keeps_the_runs_own_preset(interrupted_run, tmp_path, monkeypatch):
    from ultralytics import YOLO

    from detect.engine import PRESET_ENV

    run = _copy_run(interrupted_run, tmp_path)
    (run / "cli_args.yaml").write_text("hyp: boxsafe\nepochs: 2\n")
    seen = {}

    def fake_train(self, **kwargs):
        seen.update(kwargs, preset=os.environ[PRESET_ENV])

    monkeypatch.setattr(YOLO, "train", fake_train)
    monkeypatch.setenv(PRESET_ENV, "mri")
    assert detect_train.main(detect_train.get_args_parser().parse_args(["--resume", str(run)])) == 0
    assert seen["preset"] == "boxsafe" and seen["resume"] is True and seen["save_dir"] == str(run)
    assert "device" not in seen and "workers" not in seen  # not given: the run's own
    given = ["--resume", str(run), "--workers", "5", "--epochs", "99"]
    assert detect_train.main(detect_train.get_args_parser().parse_args(given)) == 0
    assert seen["workers"] == 5 and "device" not in seen and "epochs" not in seen  # the schedule stays the run's own


def test_resume_rebuilds_the_merged_data_when_the_run_moved_to_a_machine_without_it(tiny_registry, tmp_path, capsys):
    import shutil

    from mri.files import write_yaml

    merged = detect_train.merged_training_data(registry=str(tiny_registry))
    run = _train_cut_after_one_epoch(merged.data_yaml, tmp_path / "runs")
    shutil.rmtree(merged.root)  # the next machine has the run folder but not runs/merged/

    resume = detect_train.get_args_parser().parse_args(["--resume", str(run)])
    assert detect_train.main(resume) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(str(run)) and "is gone" in error and "cli_args.yaml" in error and "\n" not in error

    write_yaml(run / "cli_args.yaml", {"registry": str(tiny_registry), "hyp": "standardised",
                                       "split_counts": {"train": 999, "val": 1, "test": 1}})
    assert detect_train.main(resume) == 2  # the rebuilt merge is not the data it trained on
    error = capsys.readouterr().err.strip()
    assert error.startswith(str(run)) and "merge differs" in error and "MRI_DATA_DIR" in error and "\n" not in error

    write_yaml(run / "cli_args.yaml", {"registry": str(tiny_registry), "hyp": "standardised",
                                       "split_counts": dict(merged.counts)})
    assert detect_train.main(resume) == 0
    assert (run / "results.csv").read_text().count("\n") == 3
    assert merged.data_yaml.is_file()


def test_typed_training_keeps_the_three_types(tiny_registry, monkeypatch, tmp_path):
    import yaml
    from ultralytics import YOLO

    from detect.engine import PRESET_ENV

    seen = {}
    monkeypatch.setattr(YOLO, "train", lambda self, **kwargs: seen.update(kwargs))
    monkeypatch.setenv(PRESET_ENV, "mri")  # main() sets it: restored after the test
    args = detect_train.get_args_parser().parse_args(["--registry", str(tiny_registry), "--typed", "--epochs", "1",
                                                      "--project", str(tmp_path)])
    assert detect_train.main(args) == 0
    assert seen["single_cls"] is False and seen["name"].endswith("-typed")
    names = yaml.safe_load(open(seen["data"]))["names"]
    assert list(names.values() if isinstance(names, dict) else names) == ["glioma", "meningioma", "pituitary"]


def test_resume_of_a_finished_run_is_refused_with_how_to_train_on(trained_run, capsys, monkeypatch):
    from ultralytics import YOLO

    monkeypatch.setattr(YOLO, "train", lambda self, **kwargs: pytest.fail("a new training was started"))
    args = detect_train.get_args_parser().parse_args(["--resume", str(trained_run.run)])
    assert detect_train.main(args) == 2
    error = capsys.readouterr().err.strip()
    assert "this run is finished" in error and "--model" in error and "best.pt" in error and "\n" not in error


def test_resume_of_a_truncated_or_missing_checkpoint_is_one_line(interrupted_run, tmp_path, capsys):
    run = _copy_run(interrupted_run, tmp_path)
    last = run / "weights" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    assert detect_train.main(detect_train.get_args_parser().parse_args(["--resume", str(run)])) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(str(last)) and "damaged" in error and "\n" not in error
    assert detect_train.main(detect_train.get_args_parser().parse_args(["--resume", str(tmp_path / "nope")])) == 2
    error = capsys.readouterr().err.strip()
    assert "no weights/last.pt to resume from" in error and "\n" not in error


def test_multi_gpu_device_reaches_ultralytics_ddp(monkeypatch, tiny_registry):
    """On CPU we check the plumbing: '--device 0,1' reaches ultralytics, which launches DDP itself."""
    captured = {}

    def fake_train(self, **kwargs):
        captured.update(kwargs)

    from ultralytics import YOLO

    monkeypatch.setattr(YOLO, "train", fake_train)
    monkeypatch.setattr(detect_train, "check_device", lambda device: None)  # as if this machine had two GPUs
    monkeypatch.setenv("MRI_DETECT_PRESET", "mri")  # main() sets it: restored after the test
    args = detect_train.get_args_parser().parse_args(
        ["--registry", str(tiny_registry), "--device", "0,1", "--batch", "64", "--name", "ddp"])
    assert detect_train.main(args) == 0
    from detect.engine import MRIDetectionTrainer

    assert captured["device"] == "0,1" and captured["batch"] == 64 and captured["trainer"] is MRIDetectionTrainer
    assert captured["amp"] is True and captured["single_cls"] is True


@pytest.mark.parametrize("preset, multi_scale", [("standardised-continue", None),
                                                  ("standardised-multiscale-continue", 0.5)])
def test_continuing_preset_sends_its_schedule_to_ultralytics(monkeypatch, tiny_registry, preset, multi_scale):
    """The -continue presets train with their own optimizer and no warm-up, on standardised slices; the
    multi-scale one also with ultralytics' multi-scale training."""
    captured = {}
    from ultralytics import YOLO

    monkeypatch.setattr(YOLO, "train", lambda self, **kwargs: captured.update(kwargs))
    monkeypatch.setenv("MRI_DETECT_PRESET", "default")  # main() sets it: restored after the test
    args = detect_train.get_args_parser().parse_args(
        ["--registry", str(tiny_registry), "--hyp", preset, "--name", "continue"])
    assert detect_train.main(args) == 0
    assert (captured["optimizer"], captured["lr0"], captured["warmup_epochs"]) == ("SGD", 0.002, 0)
    assert captured.get("multi_scale") == multi_scale
    assert os.environ["MRI_DETECT_PRESET"] == preset
    assert load_preset(os.environ["MRI_DETECT_PRESET"])["input"] == {"standardise": True}


def test_a_multi_scale_preset_on_an_ultralytics_without_the_range_is_one_line(tiny_registry, monkeypatch, capsys):
    """ultralytics 8.3 reads multi_scale as on/off: a multi-scale preset is refused in one line, before any training."""
    import ultralytics.cfg

    monkeypatch.setattr(ultralytics.cfg, "CFG_FRACTION_KEYS", ultralytics.cfg.CFG_FRACTION_KEYS - {"multi_scale"})
    args = detect_train.get_args_parser().parse_args(["--registry", str(tiny_registry), "--name", "old",
                                                      "--hyp", "standardised-multiscale"])
    assert detect_train.main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--hyp standardised-multiscale: multi_scale 0.5 needs" in error
    detect_train.check_multi_scale(load_preset("standardised"), "standardised")  # no multi-scale: nothing to check


def test_a_one_image_last_batch_below_ultralytics_multi_scale_floor_is_one_line(trained_run, tmp_path):
    """Multi-scale at --imgsz 64 goes down to 32 px, where ultralytics refuses a last batch of one image."""
    import yaml

    train_images = yaml.safe_load((trained_run.run / "cli_args.yaml").read_text())["split_counts"]["train"]
    result = _cli("detect.train", "--registry", trained_run.registry, "--epochs", 1, "--imgsz", 64,
                  "--batch", train_images - 1, "--hyp", "standardised-multiscale", "--project", tmp_path / "runs",
                  "--workers", 0, "--no-plots", timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("final batch=1 training at imgsz=32")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("module, flags", [("detect.train", []), ("detect.val", ["--weights", "none.pt"]),
                                           ("classify.train", []), ("classify.val", ["--weights", "none.pt"])])
def test_a_missing_gpu_is_one_line_in_every_entry_point(module, flags):
    result = _cli(module, *flags, "--device", "0", timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "--device 0: no CUDA GPU is available on this machine (use --device cpu)"]


@pytest.mark.parametrize("flags, message", [
    (["--hyp", "nosuch"], "unknown augmentation preset 'nosuch'"),
    (["--model", "missing.pt"], "missing.pt: model weights not found"),
    (["--datasets", "nope"], "unknown dataset 'nope'"),
])
def test_train_bad_input_is_one_clear_line(tiny_registry, flags, message):
    result = _cli("detect.train", "--registry", tiny_registry, *flags, timeout=120)
    assert result.returncode == 2 and message in result.stderr and result.stderr.strip().count("\n") == 0


def test_val_with_missing_or_corrupt_weights(tmp_path, tiny_registry):
    result = _cli("detect.val", "--weights", tmp_path / "none.pt", "--registry", tiny_registry, timeout=120)
    assert result.returncode == 2 and "detector weights not found" in result.stderr
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    result = _cli("detect.val", "--weights", tmp_path / "bad.pt", "--registry", tiny_registry, timeout=120)
    assert result.returncode == 2 and "not a valid ultralytics detector checkpoint" in result.stderr


def test_mri_preset_turns_off_colour_jitter_and_mixup():
    preset = load_preset("mri")
    assert preset["ultralytics"]["hsv_h"] == 0 and preset["ultralytics"]["hsv_s"] == 0
    assert preset["ultralytics"]["mixup"] == 0 and preset["ultralytics"]["degrees"] > 0
    assert preset["intensity"]["gamma"][0] < 1 < preset["intensity"]["gamma"][1]


def test_intensity_augmentation_keeps_gray_and_geometry():
    image = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))
    image = np.repeat(image[:, :, None], 3, axis=2)
    transform = MRIIntensity(p=1.0, contrast=(1.3, 1.3), gamma=(0.7, 0.7), noise_std=5, blur_p=1.0, seed=0)
    labels = transform({"img": image.copy()})
    out = labels["img"]
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    assert not np.array_equal(out, image)


def test_trainer_dataset_applies_intensity_augmentation_also_after_close_mosaic(tmp_path, monkeypatch):
    from detect.engine import PRESET_ENV, MRIDetectionTrainer

    monkeypatch.setenv(PRESET_ENV, "mri")  # the preset with intensity augmentation, whatever earlier tests left

    data = make_yolo_dataset(tmp_path / "data", per_split={"train": 4, "val": 2}, size=64)
    (tmp_path / "data.yaml").write_text(f"path: {data}\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    trainer = MRIDetectionTrainer(overrides={"model": "yolov5n.yaml", "data": str(tmp_path / "data.yaml"), "imgsz": 64,
                                             "project": str(tmp_path / "runs"), "name": "t", "device": "cpu"})
    trainer.model = trainer.get_model(cfg="yolov5n.yaml", verbose=False)
    dataset = trainer.build_dataset(str(data / "images" / "train"), mode="train", batch=4)
    assert any(isinstance(t, MRIIntensity) for t in dataset.transforms.transforms)
    dataset.close_mosaic(trainer.args)
    assert any(isinstance(t, MRIIntensity) for t in dataset.transforms.transforms)
    validation = trainer.build_dataset(str(data / "images" / "val"), mode="val", batch=4)
    assert not any(isinstance(t, MRIIntensity) for t in validation.transforms.transforms)


def test_trainer_scans_labels_only_while_no_other_run_scans_the_same_split(tmp_path, monkeypatch):
    import threading

    from filelock import FileLock
    from ultralytics.models.yolo.detect import DetectionTrainer

    from detect.engine import PRESET_ENV, MRIDetectionTrainer

    monkeypatch.setenv(PRESET_ENV, "default")
    data = make_yolo_dataset(tmp_path / "data", per_split={"train": 4, "val": 2}, size=64)
    (tmp_path / "data.yaml").write_text(f"path: {data}\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    trainer = MRIDetectionTrainer(overrides={"model": "yolov5n.yaml", "data": str(tmp_path / "data.yaml"), "imgsz": 64,
                                             "project": str(tmp_path / "runs"), "name": "t", "device": "cpu"})
    scanning = threading.Event()  # set when ultralytics' own dataset build (the label scan) starts
    monkeypatch.setattr(DetectionTrainer, "build_dataset", lambda *a, **k: scanning.set() or "dataset")
    other_run = FileLock(data / "labels" / "train.cache.lock")  # what a second run holds while it scans this split
    other_run.acquire()
    built = []
    worker = threading.Thread(target=lambda: built.append(trainer.build_dataset(str(data / "images" / "train"))))
    worker.start()
    assert not scanning.wait(timeout=1)  # waits for the other run
    other_run.release()
    worker.join(timeout=60)
    assert scanning.is_set() and built == ["dataset"]


def _noisy_results(seed=0, n=30):
    rng = np.random.default_rng(seed)
    results = []
    for i in range(n):
        gt = np.array([[20, 20, 60, 60]], np.float32) + rng.uniform(0, 30, 4).astype(np.float32)
        shifted = gt + rng.normal(0, 6, gt.shape).astype(np.float32)
        false = np.array([[100, 100, 130, 130]], np.float32)
        results.append(ImageResult(f"i{i}", "d", 200, 200, gt, ["tumor"],
                                   np.concatenate([shifted, false]), rng.uniform(0.1, 1, 2).astype(np.float32),
                                   ["tumor", "tumor"]))
    return results


def test_pycocotools_and_ultralytics_map_agree_on_the_same_predictions():
    results = _noisy_results()
    ours, theirs = coco_map(results), ultralytics_map(results)
    assert 0.2 < ours["map50"] <= 1 and abs(ours["map50"] - theirs["map50"]) < 0.03
    assert abs(ours["map50_95"] - theirs["map50_95"]) < 0.03


def test_weighted_ap50_is_pycocotools_on_the_resampled_images():
    """A bootstrap draw counts an image k times by weight; that must score as the list with k copies would."""
    from mri.metrics import ap50_from_hits, match_greedy

    rng = np.random.default_rng(0)
    results = _noisy_results(n=40)
    results += [ImageResult(f"empty{i}", "d", 200, 200, np.zeros((0, 4), np.float32), [],
                            np.array([[50, 50, 90, 90]], np.float32), np.array([rng.uniform(0.1, 1)], np.float32),
                            ["tumor"]) for i in range(10)]  # slices without a tumor, one false box each
    results = [r for r in results if (r.pred_boxes[:, 2:] > r.pred_boxes[:, :2]).all()]  # as real predictions
    scores = np.concatenate([r.pred_scores for r in results])
    hits = np.concatenate([match_greedy(r)[0] for r in results])
    image_of = np.concatenate([np.full(len(r.pred_scores), i) for i, r in enumerate(results)])
    n_gt = np.array([len(r.gt_boxes) for r in results])
    assert ap50_from_hits(scores, hits, n_gt.sum()) == pytest.approx(coco_map(results)["map50"], abs=1e-9)
    for _ in range(5):
        counts = rng.multinomial(len(results), np.ones(len(results)) / len(results))
        copies = [replace(r, key=f"{r.key}#{k}") for r, count in zip(results, counts) for k in range(count)]
        weighted = ap50_from_hits(scores, hits, counts @ n_gt, counts[image_of])
        assert weighted == pytest.approx(coco_map(copies)["map50"], abs=1e-9)


def test_no_predictions_score_zero_with_an_interval():
    from mri.metrics import map50_interval

    blind = [replace(r, pred_boxes=np.zeros((0, 4), np.float32), pred_scores=np.zeros(0, np.float32), pred_classes=[])
             for r in _noisy_results(n=10)]
    assert detection_metrics(blind, 0.25)["map50_ci95"] == [0.0, 0.0] == map50_interval(blind)
    assert map50_interval([ImageResult("a", "d", 100, 100, np.zeros((0, 4), np.float32), [])]) is None


def test_metrics_by_native_resolution_show_a_detector_that_is_blind_on_low_resolution_slices():
    """Found on every 512-px slice, on none under 256 px: the overall figure hides it, the breakdown shows it."""
    from detect.evaluate import evaluate_results

    def slice_of(key, width, height, found):
        gt = np.array([[20, 20, 60, 60]], np.float32)
        return ImageResult(key, "d", width, height, gt, ["tumor"], gt.copy() if found else np.zeros((0, 4), np.float32),
                           np.array([0.9] * found, np.float32), ["tumor"] * found)

    results = ([slice_of(f"big{i}", 512, 480, True) for i in range(6)]
               + [slice_of(f"small{i}", 225, 225, False) for i in range(4)]
               + [slice_of("edge", 100, 256, True), slice_of("just-under", 511, 511, True)])
    by_resolution = evaluate_results(results, 0.25)["by_resolution"]
    assert list(by_resolution) == ["under 256 px", "256-511 px", "512 px and up"]
    assert [by_resolution[b]["n_images"] for b in by_resolution] == [4, 2, 6]
    assert by_resolution["512 px and up"]["coco"]["map50"] == 1.0
    assert by_resolution["under 256 px"]["coco"]["map50"] == 0.0

    only_large = evaluate_results(results[:6], 0.25)["by_resolution"]
    assert list(only_large) == ["512 px and up"]  # a size no slice has is left out, not reported as 0


def test_val_bins_slices_by_their_size_on_disk_not_the_inference_size(trained_run, tmp_path):
    """A 64-px detector on 520-px slices: they are scored as 512 px and up, not as the 64 px it sees."""
    import json

    data = make_yolo_dataset(tmp_path / "large", per_split={"train": 1, "val": 1, "test": 3}, size=520)
    result = _cli("detect.val", "--weights", trained_run.run / "weights" / "best.pt", "--data", data / "data.yaml",
                  "--out", tmp_path / "val")
    assert result.returncode == 0, result.stderr[-2000:]
    by_resolution = json.loads((tmp_path / "val" / "metrics.json").read_text())["by_resolution"]
    assert list(by_resolution) == ["512 px and up"] and by_resolution["512 px and up"]["n_images"] == 3
    assert "slices 512 px and up:" in result.stdout


def test_map50_interval_draws_patients_not_slices():
    """Ten near-identical slices per patient are one observation, not ten: drawn slice by slice the interval
    would be far too narrow."""
    from mri.metrics import map50_interval

    rng = np.random.default_rng(0)
    slices = []
    for patient, one in enumerate(_noisy_results(n=40)):
        shift = rng.normal(0, 0.01, len(one.pred_scores)).astype(np.float32)  # no score ties between slices
        slices += [replace(one, key=f"p{patient}s{s}", unit=f"p{patient}", pred_scores=one.pred_scores + shift * s)
                   for s in range(10)]
    by_patient = map50_interval(slices)
    by_slice = map50_interval([replace(r, unit="") for r in slices])
    assert by_patient[0] < coco_map(slices)["map50"] < by_patient[1]
    assert by_patient[1] - by_patient[0] > 2 * (by_slice[1] - by_slice[0])


def test_paired_difference_sees_a_small_gain_that_separate_intervals_cannot():
    from mri.metrics import map50_interval, paired_map50_difference

    baseline = _noisy_results(n=80)
    better = [replace(r, pred_boxes=r.gt_boxes[[0, 0]], pred_scores=np.array([0.95, 0.01], np.float32))
              if i % 10 == 0 else r for i, r in enumerate(baseline)]  # the same boxes, and 8 more tumors found
    paired = paired_map50_difference(better, baseline)
    assert paired["difference"] == pytest.approx(coco_map(better)["map50"] - coco_map(baseline)["map50"])
    assert paired["ci95"][0] > 0
    alone, base = map50_interval(better), map50_interval(baseline)
    assert alone[0] < base[1]  # each on its own: the intervals overlap
    assert paired_map50_difference(baseline, baseline) == {"difference": 0.0, "ci95": [0.0, 0.0]}
    with pytest.raises(ValueError, match="same images"):
        paired_map50_difference(better, baseline[::-1])


def test_perfect_predictions_score_one():
    results = [ImageResult("a", "d", 100, 100, np.array([[10, 10, 50, 50]], np.float32), ["tumor"],
                           np.array([[10, 10, 50, 50]], np.float32), np.array([0.9], np.float32), ["tumor"])]
    assert coco_map(results)["map50"] == pytest.approx(1.0)
    assert froc(results)["sens_at_fp"]["0.125"] == 1.0
    assert fp_per_image_at_sensitivity(results, 0.9) == 0.0


def test_froc_counts_false_positives_per_image():
    gt = np.array([[10, 10, 50, 50]], np.float32)
    miss = np.array([[60, 60, 90, 90]], np.float32)
    results = [
        ImageResult("a", "d", 100, 100, gt, ["tumor"], np.concatenate([miss, gt]), np.array([0.9, 0.5], np.float32)),
        ImageResult("b", "d", 100, 100, np.zeros((0, 4), np.float32), [], miss, np.array([0.8], np.float32)),
    ]
    curve = froc(results)["sens_at_fp"]
    assert curve["0.5"] == 0.0 and curve["1"] == 1.0  # the hit comes after two false positives (1 per image)
    assert fp_per_image_at_sensitivity(results, 0.9) == 1.0
    figures = precision_recall_at(results, conf=0.7)
    assert figures["precision"] == 0.0 and figures["recall"] == 0.0


def _slice(scale: float, offset: float) -> np.ndarray:
    """A synthetic head on air: a bright disc of tissue with a brighter blob, intensities scaled and shifted."""
    yy, xx = np.mgrid[:96, :96]
    tissue = np.where((yy - 48) ** 2 + (xx - 48) ** 2 < 35**2, 60.0 + 0.5 * xx, 0.0)
    tissue[(yy - 40) ** 2 + (xx - 55) ** 2 < 8**2] = 150.0
    image = np.where(tissue > 0, tissue * scale + offset, 0.0)
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def test_standardise_makes_a_dim_and_a_bright_export_of_a_slice_alike():
    from mri.intensity import standardise

    dim, bright = _slice(0.6, 10), _slice(1.4, 20)
    assert np.abs(dim.astype(int) - bright.astype(int)).mean() > 20
    a, b = standardise(dim), standardise(bright)
    assert a.shape == dim.shape and a.dtype == np.uint8
    assert np.array_equal(a[..., 0], a[..., 2])  # gray stays gray
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 4
    assert a.max() == 255 and (a[:5, :5] == 0).all()  # tissue fills the range, air stays black


def test_standardise_leaves_an_empty_slice_alone():
    from mri.intensity import standardise

    blank = np.zeros((32, 32, 3), np.uint8)
    assert np.array_equal(standardise(blank), blank)


def test_preset_input_section_is_checked(tmp_path):
    assert load_preset("standardised")["input"] == {"standardise": True}
    assert load_preset("default")["input"] == {}
    bad = tmp_path / "bad.yaml"
    bad.write_text("input:\n  normalise: true\n")
    with pytest.raises(ValueError, match="'input' section"):
        load_preset(str(bad))


def test_standardised_preset_trains_on_standardised_slices_and_marks_its_weights(tmp_path, monkeypatch):
    """The dataset hands standardised images to training and validation, the checkpoints say so, and
    predict_boxes then standardises what it is given, so inference sees what training saw."""
    from detect.engine import PRESET_ENV, MRIDetectionTrainer
    from detect.model import load_detector, mark_standardised, predict_boxes, trained_standardised
    from mri.intensity import standardise

    monkeypatch.setenv(PRESET_ENV, "standardised")
    data = make_yolo_dataset(tmp_path / "data", per_split={"train": 4, "val": 2}, size=64)
    (tmp_path / "data.yaml").write_text(f"path: {data}\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    trainer = MRIDetectionTrainer(overrides={"model": "yolov5n.yaml", "data": str(tmp_path / "data.yaml"), "imgsz": 64,
                                             "project": str(tmp_path / "runs"), "name": "t", "device": "cpu"})
    trainer.model = trainer.get_model(cfg="yolov5n.yaml", verbose=False)
    from detect.engine import _mark_checkpoints_standardised

    assert _mark_checkpoints_standardised in trainer.callbacks["on_model_save"]  # each epoch's last.pt, not only the end
    for mode in ("train", "val"):
        dataset = trainer.build_dataset(str(data / "images" / mode), mode=mode, batch=2)
        raw = type(dataset).load_image(dataset, 0)[0]  # ultralytics' own loading, unwrapped
        image = dataset.load_image(0)[0]
        assert not np.array_equal(image, raw) and np.array_equal(image, standardise(raw))

    weights = tmp_path / "plain.pt"
    trainer.model.args = trainer.args
    import torch

    torch.save({"model": trainer.model.half(), "train_args": {"imgsz": 64}}, weights)
    assert not trained_standardised(load_detector(weights))
    mark_standardised(weights)
    model = load_detector(weights)
    assert trained_standardised(model)
    seen = []
    monkeypatch.setattr(model, "predict", lambda images, **kwargs: seen.extend(images) or [])
    dim = _slice(0.5, 5)
    predict_boxes(model, [dim], 64, 0.25, "cpu")
    assert np.array_equal(seen[0], standardise(dim))


def test_training_with_the_standardised_preset_marks_every_checkpoint(tmp_path):
    """Marked at every save, so an interrupted run's last.pt says it too (inference must standardise for it)."""
    from detect.model import load_detector, trained_standardised

    make_yolo_dataset(tmp_path / "yolo_set", per_split={"train": 8, "val": 4, "test": 2}, size=64)
    registry = write_registry(tmp_path / "datasets.yaml", {"tiny": YOLO_ENTRY})
    result = _cli("detect.train", "--registry", registry, "--hyp", "standardised", "--epochs", 2, "--imgsz", 64,
                  "--batch", 4, "--project", tmp_path / "runs", "--name", "std", "--workers", 0, "--save-period", 1)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    weights = tmp_path / "runs" / "std" / "weights"
    for name in ("best.pt", "last.pt", "epoch0.pt", "epoch1.pt"):  # --save-period's files too
        assert trained_standardised(load_detector(weights / name)), name


def _ema_weights(checkpoint):
    from detect.model import checkpoint_state

    state = checkpoint_state(checkpoint)
    return (state.get("ema") or state["model"]).float().state_dict()


def test_averaging_the_last_epochs_gives_their_mean_and_a_detector_that_scores(trained_run, tmp_path):
    import torch

    from detect.average import AVERAGED_KEY
    from detect.model import INPUT_KEY, STANDARDISED, checkpoint_state, load_detector, predict_boxes

    run = tmp_path / "run"  # three epochs of a standardised run: the last two differ by 0.5 in every weight
    (run / "weights").mkdir(parents=True)
    for n, copy_as in ((0, 0), (1, 2)):
        standardised_detector_copy(trained_run.run / "weights" / f"epoch{n}.pt", run / "weights" / f"epoch{copy_as}.pt")
    state = checkpoint_state(run / "weights" / "epoch2.pt")
    with torch.no_grad():
        for tensor in state["ema"].state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.5)
    torch.save(state, run / "weights" / "epoch10.pt")  # the last two are epoch2 and epoch10 by number, not by name
    out = tmp_path / "averaged.pt"
    assert run_tool("average_weights", run, "--last", 2, "--out", out) == 0
    before, after, averaged = (_ema_weights(path) for path in
                               (run / "weights" / "epoch2.pt", run / "weights" / "epoch10.pt", out))
    for name, tensor in before.items():
        if tensor.is_floating_point():
            np.testing.assert_allclose(averaged[name], tensor + 0.25, rtol=2e-3, atol=2e-3)
            assert not np.allclose(averaged[name], after[name], atol=0.1)
    state = checkpoint_state(out)
    assert [Path(path).name for path in state[AVERAGED_KEY]] == ["epoch2.pt", "epoch10.pt"]
    assert state[INPUT_KEY] == STANDARDISED and state["optimizer"] is None
    assert averaged[next(iter(before))].dtype == torch.float32  # _ema_weights converts; the file holds fp16
    assert next(state["model"].parameters()).dtype == torch.float16 and state["train_args"]["imgsz"] == 64
    single = tmp_path / "single.pt"  # the mean of one checkpoint is that checkpoint: same boxes, same scores
    assert run_tool("average_weights", run / "weights" / "epoch2.pt", "--out", single) == 0
    scan = [np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)]
    (boxes, scores), = predict_boxes(load_detector(single), scan, 64, 0.001, "cpu")
    (source_boxes, source_scores), = predict_boxes(load_detector(run / "weights" / "epoch2.pt"), scan, 64, 0.001, "cpu")
    assert len(scores) and np.array_equal(boxes, source_boxes) and np.array_equal(scores, source_scores)
    result = _cli("detect.val", "--weights", out, "--registry", trained_run.registry, "--out", tmp_path / "val")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "map50" in json.loads((tmp_path / "val" / "metrics.json").read_text())["overall"]["coco"]


def test_averaging_refuses_checkpoints_of_another_kind_naming_the_file(trained_run, tmp_path, capsys):
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from detect.model import checkpoint_state

    raw_input = plain_detector_copy(trained_run.run / "weights" / "epoch1.pt", tmp_path / "raw.pt")
    epoch = standardised_detector_copy(raw_input, tmp_path / "epoch1.pt")  # the same epoch, standardised input
    state = checkpoint_state(epoch)
    state["ema"] = DetectionModel("yolov5n.yaml", nc=80, verbose=False)  # another architecture (80-class head)
    torch.save(state, tmp_path / "coco80.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    for other, problem in (("raw.pt", "raw input"), ("coco80.pt", "not the same architecture"),
                           ("text.pt", "not a readable ultralytics checkpoint")):
        assert run_tool("average_weights", epoch, tmp_path / other, "--out", tmp_path / f"avg-{other}") == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(str(tmp_path / other)) and problem in error and "\n" not in error
        assert not (tmp_path / f"avg-{other}").exists()


def test_averaging_never_overwrites_and_says_what_is_missing(trained_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "mine.pt"
    out.write_bytes(b"a user's file")
    assert run_tool("average_weights", trained_run.run, "--last", 2, "--out", out) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"a user's file"
    assert run_tool("average_weights", trained_run.run, "--last", 5, "--out", tmp_path / "five.pt") == 2
    assert "--save-period 1" in capsys.readouterr().err and not (tmp_path / "five.pt").exists()
    gap = tmp_path / "gap"  # epochs 0 and 2 kept, 1 lost (killed between last.pt and epoch1.pt)
    (gap / "weights").mkdir(parents=True)
    shutil.copy(trained_run.run / "weights" / "epoch0.pt", gap / "weights" / "epoch0.pt")
    shutil.copy(trained_run.run / "weights" / "epoch1.pt", gap / "weights" / "epoch2.pt")
    shutil.copy(trained_run.run / "weights" / "epoch1.pt", gap / "weights" / "epoch3.pt")
    assert run_tool("average_weights", gap / "weights", "--last", 3) == 2  # the weights/ folder means its run
    assert "not evenly spaced" in capsys.readouterr().err
    assert run_tool("average_weights", tmp_path / "typo", "--out", tmp_path / "x.pt") == 2
    assert capsys.readouterr().err.startswith(str(tmp_path / "typo"))
    (tmp_path / "a-file").write_text("")
    assert run_tool("average_weights", gap, "--last", 2, "--out", tmp_path / "a-file" / "x.pt") == 2
    error = capsys.readouterr().err
    assert error.startswith(str(tmp_path / "a-file" / "x.pt") + ": cannot write") and error.count("\n") == 1
    assert run_tool("average_weights", trained_run.run / "weights" / "epoch1.pt", trained_run.run / "weights" / "epoch1.pt",
                    "--out", tmp_path / "twice.pt") == 2
    assert "given twice" in capsys.readouterr().err


def test_averaging_refuses_another_runs_checkpoints(trained_run, tmp_path, capsys):
    import torch

    from detect.model import checkpoint_state

    epoch = trained_run.run / "weights" / "epoch1.pt"
    state = checkpoint_state(epoch)
    state["train_args"] = {**state["train_args"], "name": "another-run"}
    torch.save(state, tmp_path / "other.pt")
    assert run_tool("average_weights", epoch, tmp_path / "other.pt", "--out", tmp_path / "avg.pt") == 2
    assert "from run 'another-run'" in capsys.readouterr().err and not (tmp_path / "avg.pt").exists()
