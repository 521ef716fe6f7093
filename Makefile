# Set-up, tests, demo and benchmarks. Every target creates .venv/ first if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo audit bench bench-quality compare compare-recipes clean-venv

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) tools/infer.py --source demo/scans

audit: setup
	$(PY) tools/audit.py --out runs/audit

clean-venv:
	rm -rf $(VENV)

# Measure this release into a new folder, then write benchmarks/REPORT.md from it.
BENCH_DIR ?= runs/bench-$(shell date -u +%Y%m%d-%H%M%S)
COMPARE_DIR ?= runs/bench/compare_classifiers
RECIPES_DIR ?= runs/bench/compare_recipes
HELDOUT_DIR ?= runs/bench/heldout-cascade
REPORT_FLAGS ?= --recipes $(RECIPES_DIR) --heldout $(HELDOUT_DIR)
BENCH_CLS ?= weights/classifier.pt
bench: setup
	for d in rf_mri4 br35h rsna_axial; do $(PY) tools/evaluate.py --data $$d --split test --out $(BENCH_DIR)/eval/$$d || exit 1; done
	$(PY) -m detect.val --weights weights/detector.pt --out $(BENCH_DIR)/detect-val
	$(PY) -m classify.val --weights weights/classifier.pt --out $(BENCH_DIR)/classify-val
	$(PY) benchmarks/bench_audit.py --out $(BENCH_DIR)/bench-audit
	$(PY) benchmarks/bench_detect.py --out $(BENCH_DIR)/bench-detect
	$(PY) benchmarks/bench_cascade.py --cls-weights $(BENCH_CLS) --out $(BENCH_DIR)/bench-cascade
	$(PY) benchmarks/bench_report.py --from $(BENCH_DIR) --compare $(COMPARE_DIR) $(REPORT_FLAGS)

# Quality only (evaluations; about 15 minutes on 2 cores): the timing sections of REPORT.md stay as measured.
bench-quality: setup
	for d in rf_mri4 br35h rsna_axial; do $(PY) tools/evaluate.py --data $$d --split test --out $(BENCH_DIR)/eval/$$d || exit 1; done
	$(PY) -m detect.val --weights weights/detector.pt --out $(BENCH_DIR)/detect-val
	$(PY) -m classify.val --weights weights/classifier.pt --out $(BENCH_DIR)/classify-val
	$(PY) benchmarks/bench_report.py --from $(BENCH_DIR) --compare $(COMPARE_DIR) $(REPORT_FLAGS)

# The seed experiment: three classifiers on the same crops, 128 px, 8 epochs, trained without br35h and
# scored on it too (about 1.5 hours on 2 CPU cores; add --device 0 on a GPU).
CLASSIFIER_FLAGS ?= --max-train-crops 3000
compare: setup
	$(PY) benchmarks/compare_classifiers.py $(CLASSIFIER_FLAGS) --out $(COMPARE_DIR)

# Detector recipes at equal budget, chosen on a held-out source (br35h). Sized for 2 CPU cores (about
# 1.6 hours); the comparison that chose detect.train's default came from RECIPE_FLAGS="--epochs 20 --batch 64
# --average-last 5 --seed S" with MRI_DATA_DIR set to a compact copy (tools/compact_data.py), about 1 hour a seed
# on 2 cores; add --device 0 --jobs 3 on a GPU.
RECIPE_FLAGS ?= --epochs 10 --fraction 0.5
compare-recipes: setup
	$(PY) benchmarks/compare_recipes.py $(RECIPE_FLAGS) --out runs/bench/compare_recipes
