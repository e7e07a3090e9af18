"""The one prepared command for a lent GPU: train detector variants for ~8 minutes with many pair
workers, time GPU inference on a real case, and bring the checkpoints back.

The GPU machine has torch but not monai, and no shared data; so, here first:

    .venv/bin/python benchmarks/gpu_lease.py pack          # -> .gpu/ (git-ignored via .git/info/exclude)

writes .gpu/sources.npz (the training brains and lesion library, pack_sources), .gpu/case.npz (patient01's
rebaseline/follow-up prepared on the working grid, for the inference timing) and the monai wheel. Then,
with the device tool (carry [".gpu"], timeout 600 s):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/*.whl && \
      PYTHONPATH=/tmp/site:$PWD python3 benchmarks/gpu_lease.py run --minutes 7.5

which trains the variants in VARIANTS concurrently (each from the shipped weights, each with its own
share of the CPU cores as pair workers), times Predictor.probability on the real case for each (median
of 5 after a warm-up) and writes $OUT/results.tar (each variant's model folder + timings.json + logs).
Score the checkpoints here with benchmarks/detect_eval.py and benchmarks/detect_froc.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GPU_DIR = ROOT / ".gpu"
SHIPPED = ROOT / "models" / "newlesion-2p5d"

# what each variant changes from the shipped recipe (all start from the shipped weights)
VARIANTS = {
    "a_longer": {},
    "b_visible": {"visible_change": 0.12},
    # T2W input (docs/detection.md "Phase 12"); "network" keys go to the inference config, not the recipe
    "c_t2": {"network": {"t2_input": True}, "t2_dropout": 0.5},
}
GPU_RECIPE = {"batch_size": 32, "lr": 1e-3, "pool_size": 8, "replace_every": 12, "checkpoint_minutes": 2.0}


def pack(args) -> None:
    from pmlseg.detect.predictor import prepare_pair, read_image
    from pmlseg.detect.train import DEFAULT_RECIPE, pack_sources
    from pmlseg.paths import shared_data_dir

    GPU_DIR.mkdir(exist_ok=True)
    shared = shared_data_dir()
    t = time.time()
    pack_sources(DEFAULT_RECIPE, shared, GPU_DIR / "sources.npz")
    print(f"sources.npz {os.path.getsize(GPU_DIR / 'sources.npz') / 1e6:.1f} MB ({time.time() - t:.0f} s)")
    case = shared / "ljubljana-longitudinal" / args.case
    pair = prepare_pair(read_image(case / "study1_FLAIR.nii.gz", "rebaseline"),
                        read_image(case / "study2_FLAIR.nii.gz", "follow-up"))
    np.savez_compressed(GPU_DIR / "case.npz", bl=pair.bl.astype(np.float16), fu=pair.fu.astype(np.float16),
                        mask=pair.mask)
    print(f"case.npz {args.case} grid {pair.bl.shape}")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d",
                    str(GPU_DIR), f"monai=={__import__('monai').__version__}"], check=True)
    print("packed:", sorted(p.name for p in GPU_DIR.iterdir()))


def train_one(args) -> None:
    from pmlseg.detect.network import DEFAULT_CONFIG
    from pmlseg.detect.train import DEFAULT_RECIPE, train
    from pmlseg.logs import setup_logging

    setup_logging("INFO")
    variant = copy.deepcopy(VARIANTS[args.variant])
    network = variant.pop("network", {})
    recipe = {**copy.deepcopy(DEFAULT_RECIPE), **GPU_RECIPE, **variant,
              "minutes": args.minutes, "workers": args.workers, "seed": 100 + sorted(VARIANTS).index(args.variant),
              "sources_bundle": str(GPU_DIR / "sources.npz")}
    config = {**DEFAULT_CONFIG, **json.loads((SHIPPED / "inference.json").read_text()), **network}
    train(Path(args.out), recipe, config, Path("/nonexistent"), SHIPPED / "model.pt", device=args.device)


def time_inference(model_dir: Path, case: dict, device: str, repeats: int = 5) -> dict:
    import torch

    from pmlseg.detect.predictor import Predictor

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    pred = Predictor(model_dir, device=device)
    pred.probability(case["bl"], case["fu"], case["mask"])  # warm-up (cuDNN autotune, allocations)
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        pred.probability(case["bl"], case["fu"], case["mask"])
        sync()
        times.append(time.perf_counter() - t)
    return {"median_s": round(float(np.median(times)), 3), "all_s": [round(x, 3) for x in times],
            "grid": list(case["bl"].shape), "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu"}


def run(args) -> None:
    out = Path(os.environ.get("OUT", "/tmp/out"))
    work = Path("/tmp/gpu_lease")
    work.mkdir(parents=True, exist_ok=True)
    ncpu = os.cpu_count() or 2
    workers = args.workers or max(1, (ncpu - len(VARIANTS)) // len(VARIANTS))
    print(f"{ncpu} CPUs: {len(VARIANTS)} variants x {workers} pair workers, {args.minutes} min", flush=True)
    procs = {}
    for v in VARIANTS:
        log = open(work / f"{v}.log", "w")
        procs[v] = subprocess.Popen([sys.executable, __file__, "train-one", "--variant", v, "--out",
                                     str(work / v), "--minutes", str(args.minutes), "--workers", str(workers),
                                     "--device", args.device],
                                    stdout=log, stderr=subprocess.STDOUT)
    for v, p in procs.items():
        p.wait()
        print(f"{v}: exit {p.returncode}", flush=True)
        print("".join(open(work / f"{v}.log").readlines()[-3:]), flush=True)
    z = np.load(GPU_DIR / "case.npz")
    case = {"bl": z["bl"].astype(np.float32), "fu": z["fu"].astype(np.float32), "mask": z["mask"]}
    timings = {}
    for name, d in [("shipped", SHIPPED)] + [(v, work / v) for v in VARIANTS]:
        try:
            timings[name] = time_inference(d, case, args.device)
        except Exception as exc:  # report and go on: the checkpoints matter more than one timing
            timings[name] = {"error": repr(exc)}
        print(name, timings[name], flush=True)
    (work / "timings.json").write_text(json.dumps(timings, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / "results.tar", "w") as tar:
        tar.add(work, arcname="gpu_lease")
    print("wrote", out / "results.tar", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="prepare .gpu/ here (sources, a real case, the monai wheel)")
    p.add_argument("--case", default="patient01")
    p = sub.add_parser("run", help="on the GPU machine: train the variants, time inference, write $OUT")
    p.add_argument("--minutes", type=float, default=7.5)
    p.add_argument("--workers", type=int, help="pair workers per variant (default: the CPUs shared out)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a local rehearsal")
    p = sub.add_parser("train-one", help="(internal) train one variant")
    p.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = ap.parse_args()
    {"pack": pack, "run": run, "train-one": train_one}[args.cmd](args)


if __name__ == "__main__":
    main()
