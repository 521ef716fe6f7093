"""benchmarks/bench_report.py --only inference: the runtimes table replaces one section and leaves the rest alone."""

import json
import shutil
import subprocess
import sys

from mri import PROJECT_ROOT


def _arm(images_per_s, threads):
    return {"seconds": round(48 / images_per_s, 3), "images": 48, "images_per_s": images_per_s, "pass_seconds": [1.0],
            "peak_rss_mb": 900.0, "threads": threads}


def _bench_report():
    detector, cascade = _arm(40.0, {"detector": 2, "torch": 2}), _arm(33.0, {"detector": 2, "torch": 2, "classifier": 2})
    return {"date": "2026-11-27T00:00:00+00:00", "machine": "x86_64, 2 cores, no GPU", "torch": "2.14.1", "det_weights": "d.pt",
            "n_images": 48, "batch": 16, "conf": 0.25, "passes": 3, "detector_alone": detector,
            "cascade": [{"arch": "tf_efficientnet_lite0", "input_size": 96, **cascade, "time_ratio": 1.21}],
            "plain_ultralytics": _arm(25.0, {"detector": 1, "torch": 1}),
            "backends": [{"backend": "pytorch", "detector": detector, "cascade": cascade, "time_ratio": 1.21},
                         {"backend": "onnx", "detector": _arm(60.0, {"detector": 2, "torch": 1}),
                          "cascade": _arm(50.0, {"detector": 2, "torch": 1, "classifier": 2}), "time_ratio": 1.2}],
            "versions": {"ultralytics": "8.4", "onnxruntime": "1.32", "openvino": None}, "load_average": [0.5, 0.7]}


def test_only_the_inference_section_is_regenerated(tmp_path):
    out = tmp_path / "benchmarks"
    out.mkdir()
    original = (PROJECT_ROOT / "benchmarks" / "REPORT.md").read_text()
    shutil.copyfile(PROJECT_ROOT / "benchmarks" / "REPORT.md", out / "REPORT.md")
    source = tmp_path / "bench"
    source.mkdir()
    (source / "bench_cascade.json").write_text(json.dumps(_bench_report()))
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "bench_report.py"), "--from", str(source),
                             "--out", str(out), "--only", "inference"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = (out / "REPORT.md").read_text()
    heading = "## Inference throughput"
    assert report.split(heading)[0] == original.split(heading)[0]  # everything before it untouched
    section = report.split(heading)[1]
    assert "| plain `YOLO(...).predict` (PyTorch, ultralytics' own threads) | 25.0 |" in section
    assert "| ONNX Runtime | 60.0 | 50.0 | 1.20x | 2.40x | 2.00x | 2 / 2 |" in section
    assert (out / "bench_cascade.json").is_file()


def test_model_card_block_is_written_from_the_measurements(tmp_path):
    """The model card's measured block is regenerated from the JSON files; the rest of the card is kept."""
    source = tmp_path / "bench"
    for name in ("rf_mri4", "br35h"):
        (source / "eval" / name).mkdir(parents=True)
        metrics = json.loads((PROJECT_ROOT / "benchmarks" / f"eval_{name}.json").read_text())
        metrics["detector"]["map50"] = 0.1234 if name == "rf_mri4" else metrics["detector"]["map50"]
        (source / "eval" / name / "metrics.json").write_text(json.dumps(metrics))
    (source / "classify-val").mkdir()
    classify_val = json.loads((PROJECT_ROOT / "benchmarks" / "classify_val.json").read_text())
    classify_val["overall"]["type_accuracy"] = 0.5678
    (source / "classify-val" / "metrics.json").write_text(json.dumps(classify_val))
    card = tmp_path / "card.md"
    card.write_text("# card\n\nhand-written intro\n\n<!-- MEASURED: written by benchmarks/bench_report.py from benchmarks/*.json; "
                    "edits here are overwritten -->\nstale numbers 0.999\n<!-- /MEASURED -->\n\nhand-written outro\n")
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "bench_report.py"), "--from", str(source),
                             "--out", str(tmp_path / "benchmarks"), "--model-card", str(card)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    text = card.read_text()
    assert "stale numbers" not in text and "hand-written intro" in text and text.endswith("hand-written outro\n")
    rf_row = next(line for line in text.splitlines() if line.startswith("| rf_mri4 |"))
    assert rf_row.split(" | ")[2].startswith("0.123 / ")
    assert "type accuracy 0.568" in text and "| br35h |" in text


def test_report_shows_localisation_per_tumor_type_when_evaluations_have_it(tmp_path):
    source = tmp_path / "bench"
    (source / "eval" / "rf_mri4").mkdir(parents=True)
    metrics = json.loads((PROJECT_ROOT / "benchmarks" / "eval_rf_mri4.json").read_text())
    metrics["detector"]["by_type"] = {"glioma": {"n_boxes": 25, "found": 0.44, "touched": 0.52, "area_ratio": 1.038,
                                                 "size": 0.15, "size_missed": 0.118}}
    metrics["cascade"]["by_type"] = {"glioma": {"n_boxes": 25, "found": 0.40, "touched": 0.52, "area_ratio": 0.901}}
    (source / "eval" / "rf_mri4" / "metrics.json").write_text(json.dumps(metrics))
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "bench_report.py"), "--from", str(source),
                             "--out", str(tmp_path / "out"), "--model-card", "none"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert "| rf_mri4 | glioma | 25 | 0.440 / 0.400 | 0.520 / 0.520 | 1.04 / 0.90 | 0.15 | 0.12 |" in report


def _recipe_report(seed: int, arms: list[str]) -> dict:
    scores = {"held_out": {"map50": 0.7, "map50_95": 0.45, "sens_at_1fp": 0.75}}
    return {"date": f"seed {seed} run", "machine": "m", "winner": arms[-1],
            "settings": {"model": "yolov5n", "epochs": 20, "batch": 64, "seed": seed, "fraction": 1.0, "hold_out": ["br35h"]},
            "arms": [{"arm": arm, "train_seconds": 60.0, "scores": scores} for arm in arms]}


def test_report_shows_every_recipe_comparison_given_in_order(tmp_path):
    """Folders and committed JSON files alike, in the order given; a report given as itself is not copied onto itself."""
    source, out = tmp_path / "bench", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    folder = tmp_path / "gpu"
    folder.mkdir()
    (folder / "compare_recipes.json").write_text(json.dumps(_recipe_report(0, ["default@256", "scanner@256"])))
    committed = out / "compare_recipes_cpu.json"
    committed.write_text(json.dumps(_recipe_report(1, ["default@256", "standardised@256"])))
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "bench_report.py"), "--from", str(source),
               "--out", str(out), "--model-card", "none"]
    result = subprocess.run([*command, "--recipes", str(folder), str(committed)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = (out / "REPORT.md").read_text()
    assert report.count("## Detector recipes at equal budget") == 1
    assert report.index("seed 0 run") < report.index("`scanner@256` (chosen)") < report.index("seed 1 run") \
        < report.index("`standardised@256` (chosen)")
    assert json.loads((out / "compare_recipes_gpu.json").read_text())["settings"]["seed"] == 0  # kept beside it
    assert json.loads(committed.read_text())["settings"]["seed"] == 1
    tables = report[report.index("## Detector recipes"):]
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)  # nothing given: the section stays
    assert again.returncode == 0, again.stderr[-2000:]
    assert tables.split("\n## ")[0] in (out / "REPORT.md").read_text()


def test_sections_whose_reports_are_not_found_are_kept_as_they_were(tmp_path):
    """`make bench` on a machine without the held-out and classifier runs keeps those sections, and says so."""
    source, out = tmp_path / "bench", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    held_out = "## The cascade on a source it never saw (`python tools/evaluate.py --data SOURCE --split all`)\n\nheld-out table\n"
    classifiers = "## Classifier comparison (`python benchmarks/compare_classifiers.py`)\n\nseed experiment table\n"
    (out / "REPORT.md").write_text(f"# Benchmark report\n\n{held_out}\n{classifiers}")
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "bench_report.py"), "--from", str(source),
                             "--out", str(out), "--model-card", "none", "--heldout", str(tmp_path / "absent-heldout"),
                             "--compare", str(tmp_path / "absent-compare")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = (out / "REPORT.md").read_text()
    assert "held-out table" in report and "seed experiment table" in report
    assert "absent-heldout: no report found there" in result.stderr and "absent-compare: no report found" in result.stderr


def test_a_report_names_the_gpu_it_ran_on(monkeypatch):
    """Reports from a GPU machine say which GPU (timings and budgets differ between them); a CPU run says so."""
    import torch

    from mri.reporting import machine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"NVIDIA H200 #{index}")
    assert machine("1,0").endswith("device 1,0 (NVIDIA H200 #1)")
    assert machine("cuda:2").endswith("device cuda:2 (NVIDIA H200 #2)")
    assert machine("cuda").endswith("device cuda (NVIDIA H200 #0)")
    assert machine("cpu").endswith("no GPU")

    def broken(index):
        raise Exception("CUDA call failed lazily")

    monkeypatch.setattr(torch.cuda, "get_device_name", broken)
    assert machine("0").endswith("device 0")  # a label never fails the measurement it labels
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert machine("0").endswith("device 0")


def test_recipe_reports_that_would_replace_each_other_or_are_partly_missing_are_refused(tmp_path):
    """Two reports kept under one name, or a list of which only some exist, stop before anything is written."""
    source, out = tmp_path / "bench", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    first, second = tmp_path / "a" / "run", tmp_path / "b" / "run"
    for folder in (first, second):
        folder.mkdir(parents=True)
        (folder / "compare_recipes.json").write_text(json.dumps(_recipe_report(0, ["default@256"])))
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "bench_report.py"), "--from", str(source),
               "--out", str(out), "--model-card", "none", "--recipes"]
    clash = subprocess.run([*command, str(first), str(second)], capture_output=True, text=True, timeout=120)
    assert clash.returncode == 2 and "would be kept as compare_recipes_run.json" in clash.stderr
    partial = subprocess.run([*command, str(first), str(tmp_path / "gone")], capture_output=True, text=True, timeout=120)
    assert partial.returncode == 2 and "gone" in partial.stderr and "give all or none" in partial.stderr
    assert not list(out.iterdir())
    fine = subprocess.run([*command, str(first)], capture_output=True, text=True, timeout=120)
    assert fine.returncode == 0, fine.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["REPORT.md", "compare_recipes_run.json"]
