"""How the App draws a review dataset: one colour per field and the label layers shown by default.

Saved with the dataset (``dataset.app_config``), so every App session, and anyone who opens the
dataset with ``fo.launch_app``, sees truth in green, the detector in red and the cascade in blue.
"""

from __future__ import annotations

FIELD_COLOURS = {  # in drawing order, top first: the App draws fields listed earlier over later ones
    "ground_truth": "#00e676",  # green: the labels being curated
    "cascade": "#2979ff",  # blue: detector boxes with the classifier's type and verdict
    "detector": "#ff1744",  # red: every detector box (seen where the cascade's box is filtered out)
}
SHOWN_FIELDS = list(FIELD_COLOURS)  # all three: evaluation patches hold ground_truth and one of the predictions


def configure_app(dataset) -> None:
    """Store the colour scheme and the default label layers with ``dataset``."""
    import fiftyone as fo

    dataset.app_config.color_scheme = fo.ColorScheme(
        color_by="field",
        fields=[{"path": path, "fieldColor": colour} for path, colour in FIELD_COLOURS.items()],
    )
    present = [path for path in SHOWN_FIELDS if dataset.has_sample_field(path)]
    dataset.app_config.active_fields = fo.ActiveFields(paths=present)
    groups = dataset.app_config.sidebar_groups or fo.DatasetAppConfig.default_sidebar_groups(dataset)
    for group in groups:
        if group.name == "labels":
            group.paths = present + [p for p in group.paths if p not in present]
    dataset.app_config.sidebar_groups = groups
    dataset.save()
