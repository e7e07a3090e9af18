"""Do a pair's detections depend on another, large new lesion? A ~9 ml PML-like lesion is injected into
a shared real follow-up (benchmarks/pml_injection.py's injector: frontal, subcortical, ill-defined
toward the white matter, satellites), and the detections away from it are compared with those of the
untouched follow-up: GT new/enlarging lesions found, and detections not touching the injected lesion.

    .venv/bin/python benchmarks/large_lesion_invariance.py [--case patient01] [--model NAME]

Both follow-ups are on the rebaseline grid with the data set's reference transform, so only the
injection differs (registration is not re-run).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

SPEC = dict(kind="large_frontal", mni=(-26.0, 28.0, 34.0), radii=(15.0, 13.0, 12.0), seed=5)


def _injector():
    spec = importlib.util.spec_from_file_location("pml_injection", Path(__file__).with_name("pml_injection.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def compare(case: str = "patient01", predictor=None) -> dict:
    """Detections of the clean and the injected follow-up of ``case`` (shared data), away from the injection."""
    import SimpleITK as sitk

    from pmlseg.characterise import location as loc
    from pmlseg.detect.pipeline import detect
    from pmlseg.detect.predictor import Predictor, prepare_pair, to_array

    pml = _injector()
    images, gt = pml.load_case(case)
    bl = images["flair_bl"]
    priors = loc.register_to_template(bl)
    injected, labels, inj_id = pml.inject(images, gt, priors, SPEC, bl)
    inj_mask = sitk.GetImageFromArray((labels == inj_id).astype(np.uint8))
    inj_mask.CopyInformation(bl)
    gt_img = sitk.GetImageFromArray(gt.astype(np.uint16))
    gt_img.CopyInformation(bl)
    predictor = predictor or Predictor(None, "cpu")
    out = {"injected_ml": float((labels == inj_id).sum() * np.prod(bl.GetSpacing()) / 1000)}
    for name, fu in (("clean", images["flair_fu"]), ("injected", injected["flair_fu"])):
        pair = prepare_pair(bl, fu, sitk.Transform(), slice_mm=predictor.config.get("slice_mm"))
        found = detect(pair, predictor)
        on_grid = lambda img: to_array(sitk.Resample(img, pair.grid, sitk.Transform(),  # noqa: E731
                                                     sitk.sitkNearestNeighbor, 0, img.GetPixelID()))
        inj, g = on_grid(inj_mask) > 0, on_grid(gt_img)
        lab = found.labels
        n = int(lab.max())
        touching_inj = {int(i) for i in np.unique(lab[inj & (lab > 0)])}
        others = [i for i in range(1, n + 1) if i not in touching_inj]
        other_mask = np.isin(lab, others)
        out[name] = {"detections_away": len(others),
                     "gt_found": sorted(int(i) for i in np.unique(g[other_mask]) if i),
                     "injected_found": bool(touching_inj)}
    c, i = out["clean"], out["injected"]
    out["gt_found_changed"] = len(set(c["gt_found"]) ^ set(i["gt_found"]))
    out["detections_away_changed"] = abs(c["detections_away"] - i["detections_away"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="patient01")
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    from pmlseg.detect.predictor import Predictor
    from pmlseg.logs import setup_logging

    setup_logging("WARNING")
    r = compare(a.case, Predictor(a.model, "cpu"))
    print(f"{a.case}: injected lesion {r['injected_ml']:.1f} ml")
    for k in ("clean", "injected"):
        print(f"  {k:8s} detections away from the injection {r[k]['detections_away']:2d}, GT lesions found "
              f"{r[k]['gt_found']}, injected lesion found {r[k]['injected_found']}")
    print(f"  GT lesions found/lost by the injection: {r['gt_found_changed']}; "
          f"change in other detections: {r['detections_away_changed']}")


if __name__ == "__main__":
    main()
