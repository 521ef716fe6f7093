import json

from conftest import run_tool


def _evaluation(folder, split, map50, map50_95, type_accuracy):
    folder.mkdir(parents=True)
    cascade = {"map50": map50, "map50_95": map50_95, "type_accuracy": type_accuracy}
    (folder / "metrics.json").write_text(json.dumps({"data": [split], "split": "test", "cascade": cascade}))
    return folder


def test_a_release_meeting_every_target_passes_and_untyped_splits_skip_type_accuracy(tmp_path, capsys):
    typed = _evaluation(tmp_path / "rf", "rf_mri4", 0.88, 0.61, 0.95)
    untyped = _evaluation(tmp_path / "br", "br35h", 0.85, 0.60, None)
    assert run_tool("check_targets", typed, untyped) == 0
    out = capsys.readouterr().out
    assert "pass  rf_mri4 test cascade type accuracy: 0.950 (at least 0.930)" in out
    assert "br35h test cascade type accuracy" not in out and "5 of 5 targets met: all" in out


def test_one_missed_floor_fails_the_release_and_says_which(tmp_path, capsys):
    rsna = _evaluation(tmp_path / "rsna", "rsna_axial", 0.887, 0.595, 0.859)
    assert run_tool("check_targets", rsna) == 1
    assert "FAIL  rsna_axial test cascade type accuracy: 0.859 (at least 0.930)" in capsys.readouterr().out
    assert run_tool("check_targets", rsna, "--type-accuracy", "-1") == 0  # not checked


def test_the_detector_alone_is_checked_against_its_own_floors(tmp_path, capsys):
    split = _evaluation(tmp_path / "rf", "rf_mri4", 0.88, 0.61, 0.95)
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "metrics.json").write_text(json.dumps({"overall": {"coco": {"map50": 0.834, "map50_95": 0.585}}}))
    assert run_tool("check_targets", split, "--detect-val", tmp_path / "val") == 1
    assert "FAIL  detector alone mAP50: 0.834 (at least 0.840)" in capsys.readouterr().out
    assert run_tool("check_targets", split, "--detect-val", tmp_path / "val", "--detector", "0.83", "0.58") == 0


def test_a_missing_or_foreign_metrics_file_is_one_line(tmp_path, capsys):
    assert run_tool("check_targets", tmp_path / "nowhere") == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(str(tmp_path / "nowhere" / "metrics.json")) and "\n" not in error
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text('{"overall": {}}')
    assert run_tool("check_targets", tmp_path / "other") == 2
    assert "not written by tools/evaluate.py" in capsys.readouterr().err
