"""Size and build time of report.html for the real shared pairs, and what fills it.

Each pair's report is built the way the pipeline builds it (pmlseg.report.visit.characterise_and_report)
from the raw scans with the data set's reference transforms (no model: the viewer, not detection, is
measured): the follow-up FLAIR (and T1/T2 where the pair has them) on the rebaseline grid, and the expert
new/enlarging lesions (gt_direction == 1, 26-connected, >= 10 mm^3) as the label map.  The crop mask is
the template brain mask of the rebaseline (what the pipeline's working grid uses).

    .venv/bin/python benchmarks/report_size.py [--cases patient01 patient03] [--out DIR]

Prints, per case: HTML size (MB), the share of the NiiVue bundle, of the embedded volumes (MB each) and of
the PNG crops, the crop size against the full grid, and the build time (s).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def reference_case(pair_dir: Path) -> tuple[dict, sitk.Image, list[dict]]:
    """(images on the rebaseline grid, label map of the expert new/enlarging lesions, lesion rows with
    LPS centroids as lesions.tsv has them) for a shared longitudinal pair."""
    from scipy import ndimage as ndi

    from pmlseg.detect.postprocess import components

    read = lambda name: sitk.Cast(sitk.ReadImage(str(pair_dir / name)), sitk.sitkFloat32)  # noqa: E731
    bl = read("study1_FLAIR.nii.gz")
    to_common = [sitk.ReadTransform(str(pair_dir / f"study{k}_FLAIR_to_common_space.txt")) for k in (1, 2)]
    bl_to_fu = sitk.CompositeTransform([to_common[0].GetInverse(), to_common[1]])  # rebaseline point -> follow-up
    images = {"flair_bl": bl, "flair_fu": sitk.Resample(read("study2_FLAIR.nii.gz"), bl, bl_to_fu)}
    for mod, key in (("T1W", "t1_fu"), ("T2W", "t2_fu")):
        if (pair_dir / f"study2_{mod}.nii.gz").exists():
            intra = sitk.ReadTransform(str(pair_dir / f"study2_{mod}_intrastudy_to_FLAIR.txt"))
            images[key] = sitk.Resample(read(f"study2_{mod}.nii.gz"), bl, sitk.CompositeTransform([intra, bl_to_fu]))
    gt = sitk.Resample(sitk.ReadImage(str(pair_dir / "gt_direction.nii.gz")) == 1, bl, to_common[0].GetInverse(),
                       sitk.sitkNearestNeighbor)
    arr = components(sitk.GetArrayFromImage(gt).transpose(2, 1, 0) > 0, bl.GetSpacing(), 10.0)
    labels = sitk.GetImageFromArray(arr.transpose(2, 1, 0).astype(np.uint16))
    labels.CopyInformation(bl)
    lab = sitk.GetArrayViewFromImage(labels)
    rows = []
    for lid in range(1, int(arr.max()) + 1):
        c = labels.TransformContinuousIndexToPhysicalPoint([float(v) for v in ndi.center_of_mass(lab == lid)[::-1]])
        rows.append({"lesion_id": lid, "volume_mm3": round(float((lab == lid).sum() * np.prod(bl.GetSpacing())), 1),
                     "centroid_x": round(c[0], 1), "centroid_y": round(c[1], 1), "centroid_z": round(c[2], 1),
                     "new_or_enlarging": "new"})
    return images, labels, rows


def build_report(pair_dir: Path, out: Path, crop_mask: sitk.Image | None = None) -> tuple[Path, sitk.Image]:
    """OUT/report.html (+ lesions.tsv, report.pdf) of the pair; returns its path and the label map."""
    from pmlseg.report.visit import characterise_and_report

    images, labels, rows = reference_case(pair_dir)
    characterise_and_report(out, labels, rows, images, {"status": "pass", "detail": "reference transforms"},
                            header={"subject": f"sub-{pair_dir.name}", "session": "ses-02"}, dicom=False,
                            crop_mask=crop_mask)
    return out / "report.html", labels


def main() -> None:
    from pmlseg.paths import shared_data_dir
    from pmlseg.registration.preprocess import brain_mask
    from pmlseg.report.viewer import niivue_js

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["patient01", "patient03"])
    ap.add_argument("--out", default=None, help="keep the reports here (default: a temporary folder)")
    args = ap.parse_args()
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="pmlseg-report-size-"))
    for case in args.cases:
        d = shared_data_dir() / "ljubljana-longitudinal" / case
        brain = brain_mask(sitk.ReadImage(str(d / "study1_FLAIR.nii.gz"), sitk.sitkFloat32), "FLAIR", name=case)
        t = time.perf_counter()
        html, _ = build_report(d, root / case, crop_mask=brain)
        build_s = time.perf_counter() - t
        text = html.read_text()
        payload = json.loads(re.search(r"id=viewer-data>(.*?)</script>", text, re.S).group(1))
        vols = {k: len(v) / 1e6 for k, v in {**payload["volumes"], **payload["overlays"]}.items()}
        pngs = sum(len(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)) / 1e6
        full = sitk.ReadImage(str(d / "study1_FLAIR.nii.gz")).GetSize()
        print(f"{case}: report.html {len(text) / 1e6:.2f} MB (NiiVue {len(niivue_js()) / 1e6:.2f} MB, volumes "
              + ", ".join(f"{k} {v:.2f}" for k, v in vols.items()) + f" MB, {pngs:.2f} MB PNG crops of "
              f"{text.count('class=lesion ')} lesions); crop {payload['crop_size']} of grid {list(full)}; "
              f"built in {build_s:.1f} s -> {html}")


if __name__ == "__main__":
    main()
