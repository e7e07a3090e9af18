"""`pmlseg train-classifier`: fit the detector's second stage, a lesion-level classifier."""

from __future__ import annotations

NAME = "train-classifier"
HELP = "fit the lesion-level classifier (second stage) of a detection model on fresh synthetic pairs"
DESCRIPTION = """Fit the second stage of a detection model: the network's candidates (components of its
probability above 0.2) and the difference image's blobs (2 noise SDs above its median), described by
lesion-level features (size, slice extent, network probability, difference contrast against the image's
noise, follow-up brightness, depth below the brain surface, contrast against the surrounding tissue, ...),
scored by a gradient-boosting classifier.

The cases are synthetic pairs drawn fresh for this purpose (pmlseg.detect.pairs on the training brains,
ICBM152-phantom cases with seeds from 200, and phantom cases with a new PML-like lesion with seeds from
300; never the validation or test seeds); their features are
cached in --cache so an interrupted build resumes. Writes MODEL/lesion_classifier.json and names it,
with its sha256, in MODEL/metadata.json; afterwards fit the operating and review thresholds on the
validation set (benchmarks/detect_froc.py --fit-out, the rule in docs/detection.md). About 10 s per pair
and 25 s per phantom case on 2 CPU cores.
"""


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="model folder (metadata.json, model.pt, inference.json)")
    p.add_argument("--pairs", type=int, default=120, help="synthetic pairs from the training brains")
    p.add_argument("--icbm", type=int, default=30, help="ICBM152-phantom cases")
    p.add_argument("--pml", type=int, default=20, help="ICBM152-phantom cases with a new PML-like lesion")
    p.add_argument("--cache", required=True, help="folder for the per-case features (resumable)")
    p.add_argument("--seed", type=int, default=0, help="the classifier's random state")


def run(args) -> int:
    from pathlib import Path

    from pmlseg.detect.train_classifier import train_classifier
    from pmlseg.errors import PmlsegError
    from pmlseg.paths import shared_data_dir

    if min(args.pairs, args.icbm, args.pml) < 0 or args.pairs + args.icbm + args.pml < 1:
        raise PmlsegError(f"--pairs {args.pairs} --icbm {args.icbm} --pml {args.pml}: need at least one case")
    model = Path(args.model)
    if not (model / "metadata.json").is_file():
        raise PmlsegError(f"{model / 'metadata.json'}: model metadata missing (is {model} a model folder?)")
    out = train_classifier(model, args.pairs, args.icbm, Path(args.cache), shared_data_dir(), args.seed,
                           n_pml=args.pml)
    print(f"wrote {out}")
    return 0
