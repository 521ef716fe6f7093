"""Average the weights of a detector's last epochs into one checkpoint (stochastic weight averaging; why it
helps here: detect/average.py). Train with ``--save-period 1`` so each epoch's weights are kept.

    python tools/average_weights.py runs/detect/NAME                 # its last 5 epochs -> weights/average-last5.pt
    python tools/average_weights.py runs/detect/NAME --last 3 --out averaged.pt
    python tools/average_weights.py a.pt b.pt c.pt --out averaged.pt  # any checkpoints of one run

The result is a detector like any other (``tools/infer.py --det-weights``, ``detect.val --weights``); an
existing --out is never overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mri.offline  # noqa: F401
from mri.cli import resolve_path


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="one training run folder (its weights/epochN.pt), or checkpoint files")
    parser.add_argument("--last", type=int, default=5, help="with a run folder: how many of its last epochs to average")
    parser.add_argument("--out", default=None,
                        help="the averaged checkpoint (default with a run folder: RUN/weights/average-lastK.pt)")
    parser.add_argument("--seed", type=int, default=0, help="unused (nothing is random); kept for a uniform CLI")
    return parser


def chosen_checkpoints(args) -> tuple[list[Path], Path]:
    """The files to average and where the result goes; ValueError in one line when the request does not fit."""
    from detect.average import epoch_checkpoints

    sources = [resolve_path(source) for source in args.sources]
    if len(sources) == 1 and sources[0].is_dir():
        run = sources[0]
        epochs = epoch_checkpoints(run)
        if args.last < 1 or len(epochs) < args.last:
            raise ValueError(f"{run}: {len(epochs)} per-epoch checkpoints (weights/epochN.pt), --last {args.last} "
                             f"asked for (train with --save-period 1 to keep them)")
        return epochs[-args.last:], resolve_path(args.out) if args.out else run / "weights" / f"average-last{args.last}.pt"
    if args.out is None:
        raise ValueError("--out is needed when checkpoint files are given")
    folders = [source for source in sources if source.is_dir()]
    if folders:
        raise ValueError(f"{folders[0]}: give one run folder, or checkpoint files, not both")
    return sources, resolve_path(args.out)


def main(args) -> int:
    from detect.average import save_average

    try:
        paths, out = chosen_checkpoints(args)
        save_average(paths, out)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(error, file=sys.stderr)
        return 2
    names = ", ".join(path.name for path in paths)
    print(f"{out}: the mean of {len(paths)} checkpoints ({names})")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
