import json

from conftest import run_tool


def _evaluation(folder, split, map50, map50_95, type_accuracy, types=("glioma",), which="test"):
    folder.mkdir(parents=True)
    cascade = {"map50": map50, "map50_95": map50_95, "type_accuracy": type_accuracy,
               "by_type": {kind: {"n_boxes": 1} for kind in types}}
    (folder / "metrics.json").write_text(json.dumps({"data": [split], "split": which, "cascade": cascade}))
    return folder


def _detect_val(folder, map50, map50_95, which="test"):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"split": which, "weights": "/x/best.pt",
                                                     "overall": {"coco": {"map50": map50, "map50_95": map50_95}}}))
    return folder


def test_a_release_meeting_every_target_passes_and_untyped_splits_skip_type_accuracy(tmp_path, capsys):
    typed = _evaluation(tmp_path / "rf", "rf_mri4", 0.88, 0.61, 0.95)
    untyped = _evaluation(tmp_path / "br", "br35h", 0.85, 0.60, None, types=("tumor",))
    assert run_tool("check_targets", typed, untyped, "--detect-val", _detect_val(tmp_path / "val", 0.86, 0.60)) == 0
    out = capsys.readouterr().out
    assert "pass  rf_mri4 test cascade type accuracy: 0.9500 (at least 0.9300)" in out
    assert "br35h test cascade type accuracy" not in out and "7 of 7 targets met: all checked" in out


def test_one_missed_floor_fails_the_release_and_says_which(tmp_path, capsys):
    rsna = _evaluation(tmp_path / "rsna", "rsna_axial", 0.887, 0.595, 0.859)
    assert run_tool("check_targets", rsna) == 1
    out = capsys.readouterr().out
    assert "FAIL  rsna_axial test cascade type accuracy: 0.8590 (at least 0.9300)" in out
    assert "not checked  the detector alone" in out  # said, not silently passed
    assert run_tool("check_targets", rsna, "--type-accuracy", "-1") == 0  # not checked
    just_under = _evaluation(tmp_path / "br", "br35h", 0.84996, 0.60, None, types=("tumor",))
    assert run_tool("check_targets", just_under) == 1  # 0.850 when rounded, still under
    assert "FAIL  br35h test cascade mAP50: 0.84996 (at least 0.8500)" in capsys.readouterr().out


def test_a_typed_split_without_a_type_figure_fails(tmp_path, capsys):
    untyped_cascade = _evaluation(tmp_path / "rf", "rf_mri4", 0.88, 0.61, None)  # its boxes have types
    assert run_tool("check_targets", untyped_cascade) == 1
    assert "FAIL  rf_mri4 test cascade type accuracy: n/a" in capsys.readouterr().out


def test_the_detector_alone_is_checked_against_its_own_floors(tmp_path, capsys):
    split = _evaluation(tmp_path / "rf", "rf_mri4", 0.88, 0.61, 0.95)
    val = _detect_val(tmp_path / "val", 0.834, 0.585)
    assert run_tool("check_targets", split, "--detect-val", val) == 1
    assert "FAIL  detector alone (best.pt, single-scale, all test splits) mAP50: 0.8340" in capsys.readouterr().out
    assert run_tool("check_targets", split, "--detect-val", val, "--detector", "0.83", "0.58") == 0


def test_scores_of_another_split_are_refused_not_passed(tmp_path, capsys):
    validation = _evaluation(tmp_path / "rf-val", "rf_mri4", 0.95, 0.70, 0.99, which="val")
    assert run_tool("check_targets", validation) == 2
    assert "scores the 'val' split" in capsys.readouterr().err
    test = _evaluation(tmp_path / "rf", "rf_mri4", 0.88, 0.61, 0.95)
    assert run_tool("check_targets", test, "--detect-val", _detect_val(tmp_path / "dv", 0.9, 0.6, which="val")) == 2


def test_a_missing_or_foreign_metrics_file_is_one_line(tmp_path, capsys):
    assert run_tool("check_targets", tmp_path / "nowhere") == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(str(tmp_path / "nowhere" / "metrics.json")) and "\n" not in error
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text('{"split": "test", "overall": {}}')
    assert run_tool("check_targets", tmp_path / "other") == 2
    assert "not written by tools/evaluate.py" in capsys.readouterr().err
