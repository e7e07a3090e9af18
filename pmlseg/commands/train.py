"""`pmlseg train`: train the new/enlarging lesion detector on synthetic pairs."""

from __future__ import annotations

NAME = "train"
HELP = "train the new/enlarging lesion detector on synthetic pairs from real brains"
DESCRIPTION = """Train the 2.5D MONAI detector used by `pmlseg detect`.

Reads the real brains and lesion masks in the shared data (ljubljana-cross-sectional MNI brains and
lesion masks, one raw FLAIR; see docs/detection.md), synthesises baseline/follow-up pairs with new,
enlarging, stable and shrinking lesions on the fly, and writes OUT/model.pt, OUT/inference.json and
OUT/metadata.json (recipe, versions, sha256 of the weights). Checkpoints are rewritten every few
minutes, so an interrupted run still leaves a usable model. CPU is enough (about an hour); on a GPU
(--device cuda, float16 autocast) give the pair generator several worker processes (--workers), since
making pairs, not the network, then limits the speed.
"""


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="model folder to write, e.g. models/detect-2p5d")
    p.add_argument("--config", help="JSON file overriding recipe keys (minutes, batch_size, lr, seed, ...) and "
                                    "network keys under \"network\"")
    p.add_argument("--minutes", type=float, help="wall-clock training budget (overrides the recipe)")
    p.add_argument("--init", help="start from these weights (model.pt) instead of random")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="where the network trains (default cpu; auto = cuda when available)")
    p.add_argument("--workers", type=int, help="processes making training pairs (overrides the recipe; default 1)")


def run(args) -> int:
    import copy
    import json
    from pathlib import Path

    from pmlseg.detect.network import DEFAULT_CONFIG
    from pmlseg.detect.predictor import pick_device
    from pmlseg.detect.train import DEFAULT_RECIPE, train
    from pmlseg.errors import PmlsegError
    from pmlseg.paths import shared_data_dir

    recipe = copy.deepcopy(DEFAULT_RECIPE)
    config = copy.deepcopy(DEFAULT_CONFIG)
    if args.config:
        try:
            over = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as exc:
            raise PmlsegError(f"{args.config}: cannot read JSON config ({exc})") from exc
        config.update(over.pop("network", {}))
        recipe.update(over)
    if args.minutes:
        recipe["minutes"] = args.minutes
    if args.workers:
        if args.workers < 1:
            raise PmlsegError(f"--workers {args.workers}: need at least 1")
        recipe["workers"] = args.workers
    train(Path(args.out), recipe, config, shared_data_dir(), Path(args.init) if args.init else None,
          device=pick_device(args.device))
    return 0
