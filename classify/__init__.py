"""The second head: an EfficientNet classifier that confirms each detected crop and names its type."""

# Output order of every classifier: index 0 is "no tumor", then the project's tumor types.
NO_TUMOR = "no_tumor"
