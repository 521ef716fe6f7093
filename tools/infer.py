"""Find brain tumors in MRI slices: detector, then classifier on every detected crop.

    python tools/infer.py --source demo/scans                    # the shipped weights in weights/
    python tools/infer.py --source scan.nii.gz --axis 2          # every axial slice of a volume
    python tools/infer.py --source dicom_series/ --cam           # Grad-CAM inside each kept box
    python tools/infer.py --source 'scans/**/*.png' --show-rejected --save-crops

PATH may be an image, a folder (searched recursively), a glob, a DICOM file or series folder, or a NIfTI
volume. Writes, to a new run folder (runs/infer/<name>, never overwriting): boxed images in images/
(colour per type; type, detector score and classifier P(tumor) on each box), results.json and results.csv
(one record per box: image, slice, box in pixels, type, both scores, kept or rejected), and the files it
skipped with the reason. Exit code 0 when at least one slice was processed, 1 when none could be,
2 when the weights are missing or invalid.
"""

from __future__ import annotations

import argparse
import sys
import time

import mri.offline  # noqa: F401  (offline environment before any heavy import)
from mri import PROJECT_ROOT

DEFAULT_DET = PROJECT_ROOT / "weights" / "detector.pt"
DEFAULT_CLS = PROJECT_ROOT / "weights" / "classifier.pt"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="image, folder, glob, DICOM file/series or NIfTI volume")
    parser.add_argument("--det-weights", default=str(DEFAULT_DET))
    parser.add_argument("--cls-weights", default=str(DEFAULT_CLS))
    parser.add_argument("--conf", type=float, default=0.25, help="detector confidence threshold")
    parser.add_argument("--cls-threshold", type=float, default=None,
                        help="classifier P(tumor) needed to keep a box (default: the checkpoint's calibrated one)")
    parser.add_argument("--imgsz", type=int, default=None, help="detector input size (default: its training size)")
    parser.add_argument("--axis", type=int, default=2, choices=[0, 1, 2], help="NIfTI slicing axis (RAS+: 2 = axial)")
    parser.add_argument("--slice", type=int, default=None, help="only this slice of each volume")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="detector test-time augmentation (ultralytics': as is, 0.83x flipped, 0.67x), about 2x "
                             "the detector's time; default: on for PyTorch detector weights, which support it (README)")
    parser.add_argument("--batch", type=int, default=8, help="slices per detector batch")
    parser.add_argument("--out", default=None, help="output folder (default: a new runs/infer/<source name>)")
    parser.add_argument("--save-crops", action="store_true", help="also save each classifier crop")
    parser.add_argument("--show-rejected", action="store_true", help="draw boxes the classifier rejected, dashed")
    parser.add_argument("--cam", action="store_true", help="overlay Grad-CAM of the classifier inside kept boxes")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(args) -> int:
    from cascade.pipeline import Cascade, WeightsError
    from cascade.report import InferenceWriter
    from cascade.sources import SourceError, iter_scans
    from mri.cli import DeviceError, seed_everything
    from mri.files import OutputError

    seed_everything(args.seed)
    try:
        cascade = Cascade.load(args.det_weights, args.cls_weights, args.conf, args.imgsz, args.device, args.cls_threshold,
                               args.tta)
        args.tta = cascade.tta  # saved resolved
    except (WeightsError, DeviceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        scans = iter_scans(args.source, args.axis, args.slice)
        writer = InferenceWriter.create(cascade, out=args.out, arguments=vars(args), source=args.source,
                                        det_weights=args.det_weights, cls_weights=args.cls_weights,
                                        save_crops=args.save_crops, cam=args.cam, show_rejected=args.show_rejected)
        start = time.perf_counter()
        writer.process(cascade, scans, args.batch)
    except (SourceError, OutputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summary = writer.finish(time.perf_counter() - start)
    print(summary)
    return 0 if writer.n_processed else 1


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
