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
    assert nested_boxes(np.array([[10, 10, 20, 20]])).tolist() == [False]
    assert nested_boxes(np.zeros((0, 4))).tolist() == []


def test_the_audit_counts_nested_boxes_by_leakage_free_split(tmp_path):
    from mri.audit import nested_box_counts, nested_box_images
    from mri.registry import LabeledImage

    def record(name, boxes):
        return LabeledImage("d", "train", tmp_path / name, np.array(boxes, np.float32).reshape(-1, 4),
                            ["tumor"] * len(boxes), None)

    records = [record("a", [[0.1, 0.1, 0.6, 0.6], [0.2, 0.2, 0.3, 0.3]]), record("b", [[0.1, 0.1, 0.2, 0.2]]),
               record("c", [])]
    assigned = ["test", "test", "train"]
    nested = nested_box_images(records, assigned)
    assert nested == [{"dataset": "d", "split": "test", "path": str(tmp_path / "a"), "nested_boxes": 1, "boxes": 2}]
    assert nested_box_counts(records, assigned, nested) == {"d:test": [1, 3]}
