"""The equal-budget recipe comparison: arms, held-out data, winner, report."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from detect.average import AVERAGED_KEY
from detect.compare import Arm, averaged_weights, pick_winner, render, train_command
from detect.model import checkpoint_state
from mri.merge import merge_datasets
from mri.registry import load_registry
from mri.splits import registry_records
from synthetic import COCO_ENTRY, YOLO_ENTRY, write_registry

PROJECT = Path(__file__).resolve().parents[1]


def test_arm_spec_names_preset_and_size():
    assert Arm.parse("boxsafe@320", 256) == Arm("boxsafe", 320)
    assert Arm.parse("default", 256).name == "default@256"
    with pytest.raises(ValueError, match="PRESET@IMGSZ"):
        Arm.parse("boxsafe@big", 256)


def test_an_arm_can_be_scored_at_another_size_than_it_trained_at(tmp_path):
    arm = Arm.parse("standardised@416:256", 320)
    assert arm == Arm("standardised", 416, None, 256) and arm.name == "standardised@416:256"
    assert arm.scoring_imgsz == 256 and Arm.parse("standardised@416", 320).scoring_imgsz == 416
    assert arm.training == Arm("standardised", 416)  # trained like standardised@416, into its folder
    settings = {"model": "yolov5n", "epochs": 7, "batch": 16, "fraction": 1.0, "seed": 0, "device": "cpu",
                "workers": 0, "hold_out": ["br35h"], "registry": None}
    command = train_command(arm, tmp_path, settings)
    assert command[command.index("--imgsz") + 1] == "416" and command[command.index("--name") + 1] == "standardised@416"
    assert Arm.parse("standardised@416:256+yolov5s", 320).name == "standardised@416:256+yolov5s"
    for spec in ("standardised@416:", "standardised@:256", "standardised@416:big", "standardised@416:256:128"):
        with pytest.raises(ValueError, match="PRESET@IMGSZ:RUN_IMGSZ"):
            Arm.parse(spec, 256)


def test_an_arm_scored_at_two_sizes_is_trained_once(tmp_path, monkeypatch):
    import detect.compare as compare

    trained = []
    monkeypatch.setattr(compare, "train_arm", lambda arm, out, settings: trained.append(arm) or {"arm": arm.name})
    arms = [Arm("default", 256), Arm("standardised", 416), Arm("standardised", 416, None, 256)]
    records = compare.train_arms(arms, tmp_path, {}, jobs=2)
    assert sorted(a.name for a in trained) == ["default@256", "standardised@416"]
    assert records["standardised@416:256"] is records["standardised@416"]


def test_an_arm_can_name_its_own_model_for_a_model_size_comparison(tmp_path):
    arm = Arm.parse("standardised+yolov5s", 256)
    assert arm == Arm("standardised", 256, "yolov5s") and arm.name == "standardised@256+yolov5s"
    settings = {"model": "yolov5n", "epochs": 7, "batch": 16, "fraction": 1.0, "seed": 0, "device": "cpu",
                "workers": 0, "hold_out": ["br35h"], "registry": None}
    models = [c[c.index("--model") + 1] for c in (train_command(a, tmp_path, settings) for a in (Arm("standardised", 256), arm))]
    assert models == ["yolov5n", "yolov5s"]
    for spec in ("standardised+", "standardised+../weights/x.pt", "standardised+yolov5s@320", "standardised@+yolov5s",
                 "standardised+a+b", "standardised+C:x"):  # the name is a folder name: a plain model name only
        with pytest.raises(ValueError, match="PRESET@IMGSZ\\+MODEL"):
            Arm.parse(spec, 256)


def test_a_missing_model_stops_the_comparison_before_any_arm_trains(tiny_registry, tmp_path):
    out = tmp_path / "compare"
    result = subprocess.run([sys.executable, "benchmarks/compare_recipes.py", "--registry", str(tiny_registry),
                             "--hold-out", "tiny_coco", "--arms", "default", "scanner", "--model", "missing.pt", "--out", str(out)],
                            cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "missing.pt" in result.stderr
    assert not (out / "arms").exists()


def test_every_arm_trains_with_the_same_budget_and_never_validates_midway(tmp_path):
    settings = {"model": "yolov5n", "epochs": 7, "batch": 16, "fraction": 0.5, "seed": 3, "device": "cpu",
                "workers": 0, "hold_out": ["br35h"], "registry": None}
    commands = [train_command(Arm(p, 256), tmp_path, settings) for p in ("default", "mri")]
    budget = lambda c: [c[i + 1] for i, flag in enumerate(c) if flag in ("--epochs", "--fraction", "--seed", "--imgsz", "--batch")]
    assert budget(commands[0]) == budget(commands[1]) == ["256", "7", "16", "0.5", "3"]
    for command in commands:
        assert "--no-val" in command and command[command.index("--hold-out") + 1] == "br35h"
    assert commands[0][commands[0].index("--hyp") + 1] == "default"
    assert "--save-period" not in commands[0]  # epoch files only when averaging is asked for
    averaging = train_command(Arm("default", 256), tmp_path, {**settings, "average_last": 5})
    assert averaging[averaging.index("--save-period") + 1] == "1"


def test_average_last_is_checked_before_any_arm_trains(tiny_registry, tmp_path):
    for k in ("-1", "3"):  # the arms train 2 epochs
        out = tmp_path / f"compare{k}"
        result = subprocess.run([sys.executable, "benchmarks/compare_recipes.py", "--registry", str(tiny_registry),
                                 "--hold-out", "tiny_coco", "--epochs", "2", "--average-last", k, "--out", str(out)],
                                cwd=PROJECT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and f"--average-last {k}" in result.stderr and not (out / "arms").exists()


def test_averaging_an_arm_trained_without_epoch_files_says_so(tmp_path):
    (tmp_path / "arms" / "default@256" / "weights").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="arm default@256: .*0 per-epoch checkpoints"):
        averaged_weights(Arm("default", 256), tmp_path, 5)


def test_the_winner_is_chosen_on_the_held_out_source_not_in_distribution():
    rows = [
        {"arm": "default@256", "train_seconds": 1.0, "scores": {"in_distribution": {"map50": 0.9, "map50_95": 0.6, "sens_at_1fp": 0.9},
                                                                "held_out": {"map50": 0.6, "map50_95": 0.40, "sens_at_1fp": 0.7}}},
        {"arm": "scanner@256", "train_seconds": 1.0, "scores": {"in_distribution": {"map50": 0.8, "map50_95": 0.5, "sens_at_1fp": 0.8},
                                                                "held_out": {"map50": 0.6, "map50_95": 0.45, "sens_at_1fp": 0.7}}},
    ]
    assert pick_winner(rows) == "scanner@256"
    averaged = {**rows[0], "arm": "default@256~avg5", "scores": {"held_out": {"map50": 0.7, "map50_95": 0.5, "sens_at_1fp": 0.8}}}
    assert pick_winner([*rows, averaged]) == "scanner@256"  # recipes compete; an averaged row is shown beside its arm
    scanner_averaged = {**rows[1], "arm": "scanner@256~avg5", "scores": {"held_out": {"map50": 0.65, "map50_95": 0.52,
                                                                                     "sens_at_1fp": 0.8}}}
    table = render({"date": "d", "machine": "m", "arms": [*rows, averaged, scanner_averaged], "winner": "scanner@256",
                    "settings": {"model": "yolov5n", "epochs": 1, "batch": 1, "seed": 0, "fraction": 1.0, "hold_out": ["x"]}})
    assert "| `scanner@256` (chosen) | 0.800 | 0.500 | 0.800 | 0.600 | 0.450 | 0.700 | +0.000 / +0.050 |" in table
    # an averaged arm is set against the baseline's averaged weights, not its last.pt; those against its last.pt
    assert "| `scanner@256~avg5` | n/a | n/a | n/a | 0.650 | 0.520 | 0.800 | -0.050 / +0.020 |" in table
    assert "| `default@256~avg5` | n/a | n/a | n/a | 0.700 | 0.500 | 0.800 | +0.100 / +0.100 |" in table


def _registry_with_links(tmp_path, tiny_registry) -> Path:
    """The tiny registry plus an audit assignment in which one YOLO training image is a copy of a COCO image."""
    registry = load_registry(tiny_registry)
    records = registry.images()
    yolo = next(r for r in records if r.dataset == "tiny_yolo" and r.split == "train" and r.classes)
    coco = next(r for r in records if r.dataset == "tiny_coco")
    rows = [{"dataset": r.dataset, "source_split": r.source_split, "file": r.path.name, "split": r.split,
             "group": "shared" if r in (yolo, coco) else r.key} for r in records]
    with open(tmp_path / "assignment.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_registry(tiny_registry, {"tiny_yolo": YOLO_ENTRY, "tiny_coco": COCO_ENTRY},
                   split_rules={"assignment": "assignment.csv"})
    return yolo.path


def test_holding_out_a_source_also_drops_images_the_audit_linked_to_it(tiny_registry, tmp_path):
    linked = _registry_with_links(tmp_path, tiny_registry)
    registry = load_registry(tiny_registry)
    kept, _ = registry_records(registry, hold_out=["tiny_coco"])
    assert {r.dataset for r in kept} == {"tiny_yolo"}
    assert linked not in {r.path for r in kept}
    assert len(kept) == len(registry.images(["tiny_yolo"])) - 1
    merged = merge_datasets(registry, hold_out=["tiny_coco"], out_dir=tmp_path / "merged")
    assert "without-tiny_coco" in merged.root.name and sum(merged.counts.values()) == len(kept)


@pytest.mark.slow
def test_compare_recipes_trains_scores_and_resumes(tiny_registry, tmp_path):
    _registry_with_links(tmp_path, tiny_registry)
    out = tmp_path / "compare"
    command = [sys.executable, "benchmarks/compare_recipes.py", "--registry", str(tiny_registry), "--hold-out", "tiny_coco",
               "--arms", "default", "boxsafe@64", "boxsafe@64:96", "--imgsz", "96", "--epochs", "2", "--batch", "4", "--workers", "0",
               "--average-last", "2", "--jobs", "2", "--out", str(out)]  # both arms at once: one merged dataset, one label cache
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "compare_recipes.json").read_text())
    rows = ["default@96", "boxsafe@64", "boxsafe@64:96",  # boxsafe@64 scored at its own size and at 96 px
            "default@96~avg2", "boxsafe@64~avg2", "boxsafe@64:96~avg2"]  # each arm also as its last 2 epochs averaged
    assert [row["arm"] for row in report["arms"]] == rows and report["winner"] in rows
    assert report["winner"] in rows[:3]  # a recipe; the averaged rows are shown beside it
    for arm in ("default@96", "boxsafe@64"):
        averaged = checkpoint_state(out / "arms" / arm / "weights" / "average-last2.pt")
        assert [Path(p).parent.parent.name + "/" + Path(p).name for p in averaged[AVERAGED_KEY]] == [
            f"{arm}/epoch0.pt", f"{arm}/epoch1.pt"]
    for row in report["arms"]:
        assert row["scores"]["held_out"]["n_images"] == 9  # every image of the held-out source
        assert 0.0 <= row["scores"]["in_distribution"]["map50"] <= 1.0
    moved = out.rename(tmp_path / "trained-elsewhere")  # e.g. trained on a GPU machine, scored here
    again = subprocess.run([sys.executable, "benchmarks/compare_recipes.py", "--resume", str(moved)], cwd=PROJECT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    # the same arms at their own sizes (not this call's default --imgsz), none trained again
    assert sorted(p.name for p in (moved / "arms").iterdir()) == ["boxsafe@64", "default@96"]
    assert (moved / "logs" / "default@96.log").read_text().count("training data") == 1
