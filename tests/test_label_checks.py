import numpy as np

from mri.label_checks import nested_boxes


def test_a_core_box_inside_a_lesion_box_is_nested_and_the_lesion_is_not():
    lesion, core, elsewhere = [10, 10, 60, 60], [20, 20, 35, 35], [70, 70, 90, 90]
    assert nested_boxes(np.array([lesion, core, elsewhere])).tolist() == [False, True, False]


def test_overlap_short_of_the_threshold_is_not_nesting():
    # half of the small box lies inside the large one: two lesions that touch, not two conventions
    touching = np.array([[0, 0, 50, 50], [45, 10, 55, 20]])
    assert not nested_boxes(touching).any()
    assert nested_boxes(touching, min_inside=0.5).tolist() == [False, True]


def test_duplicates_and_lone_boxes_are_not_nested():
    assert not nested_boxes(np.array([[10, 10, 20, 20], [10, 10, 20, 20]])).any()
    assert not nested_boxes(np.array([[10, 10, 20, 20], [10, 10, 20, 19.5]])).any()  # one box drawn twice
    # a duplicated core inside a lesion: both copies are inside the lesion, neither inside the other
    assert nested_boxes(np.array([[0, 0, 50, 50], [10, 10, 20, 20], [10, 10, 20, 20]])).tolist() == [False, True, True]
    assert nested_boxes(np.array([[10, 10, 20, 20]])).tolist() == [False]
    assert nested_boxes(np.zeros((0, 4))).tolist() == []


def test_three_levels_flag_every_box_but_the_outermost():
    lesion, oedema_core, core = [0, 0, 60, 60], [10, 10, 40, 40], [20, 20, 30, 30]
    assert nested_boxes(np.array([core, lesion, oedema_core])).tolist() == [True, False, True]


def test_empty_and_flipped_boxes_are_never_nested_nor_nest_others():
    assert not nested_boxes(np.array([[10, 10, 10, 20], [0, 0, 50, 50]])).any()  # zero area
    assert not nested_boxes(np.array([[60, 60, 0, 0], [10, 10, 20, 20]])).any()  # x2 < x1: no area


def test_the_audit_counts_nested_boxes_by_leakage_free_split(tmp_path):
    from mri.audit import nested_box_counts, nested_box_images, render_markdown
    from mri.registry import LabeledImage

    def record(name, boxes):
        return LabeledImage("d", "train", tmp_path / name, np.array(boxes, np.float32).reshape(-1, 4),
                            ["tumor"] * len(boxes), None)

    records = [record("a", [[0.1, 0.1, 0.6, 0.6], [0.2, 0.2, 0.3, 0.3]]), record("b", [[0.1, 0.1, 0.2, 0.2]]),
               record("c", [])]
    assigned = ["test", "test", "train"]
    nested = nested_box_images(records, assigned)
    assert nested == [{"dataset": "d", "split": "test", "source_split": "train", "path": str(tmp_path / "a"),
                       "nested_boxes": 1, "boxes": 2}]
    per_split = nested_box_counts(records, assigned, nested)
    assert per_split == {"d:test": [1, 3]}
    report = {"n_images": 3, "images_per_dataset": {"d": 3}, "timings": {"total_s": 0.1}, "duplicate_groups": [],
              "patients_in_multiple_splits": [], "unreadable": [], "nested_boxes_per_split": per_split,
              "summary": {"duplicate_groups": 0, "images_in_duplicate_groups": 0, "cross_split_groups": 0,
                          "cross_split_groups_within_dataset": {}, "cross_dataset_groups": {},
                          "cross_dataset_tumor_free_groups": 0, "images_moved_by_leakage_free_split": {},
                          "leakage_free_split_sizes": {"test": 2, "train": 1}}}
    assert "| d:test | 1 | 3 |" in render_markdown(report)
    assert "inside another" not in render_markdown({**report, "nested_boxes_per_split": {}})
