"""tools/bench_report.py --only inference: the runtimes table replaces one section and leaves the rest alone."""

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
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "tools" / "bench_report.py"), "--from", str(source),
                             "--out", str(out), "--only", "inference"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = (out / "REPORT.md").read_text()
    heading = "## Inference throughput"
    assert report.split(heading)[0] == original.split(heading)[0]  # everything before it untouched
    section = report.split(heading)[1]
    assert "| plain `YOLO(...).predict` (PyTorch, ultralytics' own threads) | 25.0 |" in section
    assert "| ONNX Runtime | 60.0 | 50.0 | 1.20x | 2.40x | 2.00x | 2 / 2 |" in section
    assert (out / "bench_cascade.json").is_file()
