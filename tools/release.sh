#!/usr/bin/env bash
# The exact commands behind the shipped weights and benchmarks/REPORT.md, in order. On this project's
# 2-core CPU machine the whole sequence takes about 2.5 hours; every step writes its own run folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

# 1. Leakage-free split (committed as splits/leakage_free.csv).
$PY tools/audit.py --out runs/audit --write-splits

# 2. Detector: YOLOv5n from scratch, 320 px, all shared datasets, a 1.45-hour budget (ultralytics fits
#    the epoch count and learning-rate schedule to it after each epoch).
$PY -m detect.train --epochs 30 --hours 1.45 --imgsz 320 --name yolov5n-320

# 3. Classifier: EfficientNet-Lite0 with ImageNet weights, 96 px crops, hard negatives mined from the
#    detector's false positives on the training scans.
$PY -m classify.train --arch tf_efficientnet_lite0 --input-size 96 --epochs 4 \
    --hard-negatives runs/detect/yolov5n-320 --name lite0-96-hn

# 4. The seed experiment: baseline CNN vs EfficientNet-B4 from scratch vs Lite0 transfer, same budget.
$PY tools/compare_classifiers.py --input-size 64 --epochs 3 --max-train-crops 4000 --out runs/bench/compare_classifiers

# 5. Ship: weights/detector.pt and weights/classifier.pt (fp16).
$PY tools/export_weights.py --detector runs/detect/yolov5n-320/weights/best.pt --classifier runs/classify/lite0-96-hn/best.pt

# 6. Measure the release into runs/bench-<time>/ and write benchmarks/REPORT.md.
#    The cascade benchmark also times the 64 px Lite0 of step 4, to show what the input size costs.
make bench COMPARE_DIR=runs/bench/compare_classifiers \
    BENCH_CLS="weights/classifier.pt runs/bench/compare_classifiers/tf_efficientnet_lite0/best.pt"
