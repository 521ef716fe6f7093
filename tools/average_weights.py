"""Average the weights of a detector's last epochs into one checkpoint (stochastic weight averaging; why it
helps here: detect/average.py). Train with ``--save-period 1`` so each epoch's weights are kept.

    python tools/average_weights.py runs/detect/NAME                 # its last 5 epochs -> weights/average-last5.pt
    python tools/average_weights.py runs/detect/NAME --last 3 --out averaged.pt
    python tools/average_weights.py a.pt b.pt c.pt --out averaged.pt  # checkpoints of one run

The result is a detector like any other (``tools/infer.py --det-weights``, ``detect.val --weights``); an
existing --out is never overwritten.
"""

from __future__ import annotations

import argparse
import sys

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


def main(args) -> int:
    from detect.average import default_output, last_epochs, save_average

    sources = [resolve_path(source) for source in args.sources]
    run = sources[0].parent if sources[0].name == "weights" and sources[0].is_dir() else sources[0]
    out = resolve_path(args.out) if args.out else None
    try:
        if len(sources) == 1 and run.is_dir():
            paths, out = last_epochs(run, args.last), out or default_output(run, args.last)
        else:
            paths = sources  # each checked as it is read
            if out is None:
                raise ValueError(f"{paths[0]}: --out is needed when checkpoint files are given")
        save_average(paths, out)
    except (ValueError, OSError) as error:  # ours name the file; the system's (errno set) come from writing --out
        print(f"{out}: cannot write ({error.strerror})" if getattr(error, "errno", None) else error, file=sys.stderr)
        return 2
    print(f"{out}: the mean of {len(paths)} checkpoints ({', '.join(path.name for path in paths)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
