"""Shared foundations of the MRI tumor cascade: offline set-up, the dataset registry, scan reading,
merging registry data for training, and the duplicate/leakage audit."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
