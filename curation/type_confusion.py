"""Which type the cascade gives each typed tumor it found: a confusion table and a mark on every wrong one."""

from __future__ import annotations

from collections import defaultdict


def score_types(dataset, eval_key: str, typed: list[str]) -> dict[str, dict[str, int]]:
    """Confusion counts ``{true type: {predicted type: n}}`` of the ground-truth boxes ``eval_key`` matched.

    Only boxes whose label is one of ``typed`` count (a source that only says "tumor" has no type to
    get wrong). Each counted ground-truth box gets ``predicted_type`` and ``type_error``; the others None.
    """
    truth_labels, truth_results, truth_matches, pred_ids, pred_labels = dataset.values([
        "ground_truth.detections.label", f"ground_truth.detections.{eval_key}",
        f"ground_truth.detections.{eval_key}_id", "cascade.detections.id", "cascade.detections.label"])
    confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    predicted_types, errors = [], []
    for labels, results, matches, ids, predicted in zip(truth_labels, truth_results, truth_matches, pred_ids, pred_labels):
        if labels is None:
            predicted_types.append(None)
            errors.append(None)
            continue
        type_of = dict(zip(ids or [], predicted or []))
        sample_types, sample_errors = [], []
        for label, result, match in zip(labels, results or [None] * len(labels), matches or [None] * len(labels)):
            predicted_type = type_of.get(match) if result == "tp" and label in typed else None
            if predicted_type is not None:
                confusion[label][predicted_type] += 1
            sample_types.append(predicted_type)
            sample_errors.append(None if predicted_type is None else predicted_type != label)
        predicted_types.append(sample_types)
        errors.append(sample_errors)
    dataset.set_values("ground_truth.detections.predicted_type", predicted_types)
    dataset.set_values("ground_truth.detections.type_error", errors)
    return {truth: dict(row) for truth, row in sorted(confusion.items())}


def format_confusion(confusion: dict[str, dict[str, int]]) -> str:
    """The confusion counts as a small text table (rows: true type, columns: predicted type)."""
    if not confusion:
        return "no typed tumor was found"
    columns = sorted({p for row in confusion.values() for p in row} | set(confusion))
    width = max(len(c) for c in [*columns, "truth \\ predicted"]) + 2
    lines = ["truth \\ predicted".ljust(width) + "".join(c.rjust(width) for c in columns)]
    for truth, row in confusion.items():
        lines.append(truth.ljust(width) + "".join(str(row.get(c, 0)).rjust(width) for c in columns))
    right = sum(row.get(truth, 0) for truth, row in confusion.items())
    total = sum(sum(row.values()) for row in confusion.values())
    lines.append(f"{total - right} type errors among {total} typed tumors found ({right / total:.3f} right)")
    return "\n".join(lines)
