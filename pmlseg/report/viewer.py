"""The report's interactive viewer: NiiVue (vendored, pinned, checksum-checked) with the rebaseline and the
follow-up side by side, fed with compressed NIfTI volumes embedded in the page.

Why this shape: a reader confirms a new lesion by comparing the same place on both scans, offline, from one
file.  So the page carries the viewer library itself (vendor/niivue.umd.js, whose sha256 is checked here on
every build: a silently changed library would change what readers see) and every volume as base64 .nii.gz,
cropped to the brain (plus a margin) at the rebaseline's native resolution and stored as 8-bit after a
robust per-volume rescale, which keeps a typical report a few MB.  All volumes share one cropped grid (the
rebaseline's), so NiiVue never resamples and one crosshair position in mm means the same voxel everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pmlseg.errors import PmlsegError
from pmlseg.registration.grid import bounding_box

VENDOR = Path(__file__).with_name("vendor")
NIIVUE_VERSION = "0.68.1"
NIIVUE_SHA256 = "eb805352d555858708b5eb52a4b65f8eea37ddb7bc868506ac992126584b7784"
VIEWER_JS = Path(__file__).with_name("viewer.js")
# background images the viewer can show: (key in the report's images dict, label); follow-up side only
# for T1/T2/DWI, as the pipeline writes those in the rebaseline's space (baseline_space/)
FOLLOWUP_EXTRA = (("t1_fu", "T1"), ("t2_fu", "T2"), ("dwi_fu", "DWI"))
MARGIN_MM = 10.0
VOLUME_BUDGET_MB = 9.0  # embedded volumes (base64); beyond it, follow-up T1/T2/DWI at half resolution


@lru_cache(maxsize=1)
def niivue_js() -> str:
    """The vendored NiiVue bundle, refused unless its sha256 is the pinned one."""
    path = VENDOR / "niivue.umd.js"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PmlsegError(f"{path}: vendored NiiVue missing ({exc.strerror}); reinstall pmlseg") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != NIIVUE_SHA256:
        raise PmlsegError(f"{path}: sha256 {digest} is not the pinned NiiVue {NIIVUE_VERSION} "
                          f"({NIIVUE_SHA256}); the file was changed (see pmlseg/report/vendor/README.md)")
    return data.decode("utf-8")


def crop_box(reference: sitk.Image, crop_mask: sitk.Image | None, *masks: sitk.Image | None) -> tuple[list, list]:
    """(index, size) in SimpleITK x, y, z order: the brain (``crop_mask``, else the head foreground) and every
    voxel of ``masks``, grown by MARGIN_MM in plane and one slice through plane."""
    if crop_mask is None:
        from pmlseg.registration.affine import head_foreground

        crop_mask = head_foreground(reference)
    keep = sitk.GetArrayViewFromImage(crop_mask) > 0
    for m in masks:
        if m is not None:
            keep = keep | (sitk.GetArrayViewFromImage(m) > 0)
    margin = np.ceil(MARGIN_MM / np.array(reference.GetSpacing())).astype(int)
    margin[2] = 1
    box = bounding_box(keep, margin[::-1])  # array order z, y, x
    if box is None:
        return [0, 0, 0], list(reference.GetSize())
    return [s.start for s in box[::-1]], [s.stop - s.start for s in box[::-1]]


def _to_u8(image: sitk.Image, inside: np.ndarray) -> sitk.Image:
    """8-bit copy: 0 at the 0.5th percentile of the cropped volume's non-zero voxels, 255 at 1.2 x the
    99.5th (bright lesions keep their contrast); geometry unchanged."""
    a = sitk.GetArrayFromImage(image).astype(np.float32)
    vals = a[inside & (a > 0)] if np.any(inside & (a > 0)) else a.ravel()
    lo, hi = np.percentile(vals, [0.5, 99.5])
    hi = lo + 1.2 * max(hi - lo, 1e-6)
    out = sitk.GetImageFromArray(np.round(np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8))
    out.CopyInformation(image)
    return out


def _on_grid(mask: sitk.Image, ref: sitk.Image) -> sitk.Image:
    """``mask`` on ``ref``'s grid (nearest neighbour) unless it is already there."""
    same = (mask.GetSize() == ref.GetSize() and np.allclose(mask.GetOrigin(), ref.GetOrigin(), atol=1e-3)
            and np.allclose(mask.GetSpacing(), ref.GetSpacing(), atol=1e-5)
            and np.allclose(mask.GetDirection(), ref.GetDirection(), atol=1e-5))
    return mask if same else sitk.Resample(mask, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)


def nifti_base64(image: sitk.Image) -> str:
    """A SimpleITK image as base64 .nii.gz (ITK writes the RAS sform NiiVue reads)."""
    with tempfile.TemporaryDirectory(prefix="pmlseg-viewer-") as tmp:
        path = Path(tmp) / "v.nii.gz"
        sitk.WriteImage(image, str(path), True)
        return base64.b64encode(path.read_bytes()).decode()


def viewer_payload(images: dict, labels: sitk.Image, possible: sitk.Image | None = None,
                   crop_mask: sitk.Image | None = None) -> dict | None:
    """Everything the viewer needs, JSON-ready: base64 volumes on one cropped grid, the crop origin (to map
    viewer voxels back to the rebaseline grid) and its spacing.  None without both FLAIRs.

    The FLAIR pair is always at the rebaseline's resolution; a follow-up T1/T2/DWI that would take the
    volumes past VOLUME_BUDGET_MB (a 3D 1 mm FLAIR rebaseline makes every volume ~3.5 MB) is embedded at half
    resolution along the axes finer than 2 mm (listed under 'reduced'), which keeps such reports < 15 MB."""
    if images.get("flair_bl") is None or images.get("flair_fu") is None:
        return None
    ref = images["flair_bl"]
    if possible is not None:
        possible = _on_grid(possible, ref)
    index, size = crop_box(ref, crop_mask, labels, possible)
    roi = lambda im: sitk.RegionOfInterest(im, size, index)  # noqa: E731
    inside = np.ones(size[::-1], bool)
    if crop_mask is not None:
        inside = sitk.GetArrayViewFromImage(roi(crop_mask)) > 0
    backgrounds = {"flair_bl": "FLAIR", "flair_fu": "FLAIR", **dict(FOLLOWUP_EXTRA)}
    volumes, reduced = {}, []
    for k in (k for k in backgrounds if images.get(k) is not None):
        u8 = _to_u8(roi(images[k]), inside)
        volumes[k] = nifti_base64(u8)
        if k not in ("flair_bl", "flair_fu") and sum(map(len, volumes.values())) > VOLUME_BUDGET_MB * 1e6:
            volumes[k] = nifti_base64(sitk.BinShrink(u8, [2 if sp < 2.0 else 1 for sp in u8.GetSpacing()]))
            reduced.append(k)
    overlays = {}
    for key, lab in (("new", labels), ("possible", possible)):
        binary = sitk.Cast(roi(lab) > 0, sitk.sitkUInt8) if lab is not None else None
        if binary is not None and (key == "new" or np.any(sitk.GetArrayViewFromImage(binary))):
            overlays[key] = nifti_base64(binary)  # an empty "possible" map gets no overlay and no toggle
    return {"volumes": volumes, "labels": {k: backgrounds[k] for k in volumes}, "reduced": reduced,
            "overlays": overlays, "crop_index": index, "crop_size": size, "spacing": list(ref.GetSpacing())}


def lesion_targets(lesions: list[dict], labels: sitk.Image) -> dict[str, list[float]]:
    """Each lesion's centre in LPS mm: the centroid columns of lesions.tsv when present, else the centroid
    of its label in ``labels``."""
    from scipy import ndimage as ndi

    arr = sitk.GetArrayViewFromImage(labels)
    out = {}
    for d in lesions:
        lid = d["lesion_id"]
        try:
            out[str(lid)] = [float(d[f"centroid_{a}"]) for a in "xyz"]
            continue
        except (KeyError, TypeError, ValueError):
            pass
        lid = int(lid) if str(lid).isdigit() else None  # P<n>: a possible lesion, not in ``labels``
        if lid is not None and (arr == lid).any():
            c = ndi.center_of_mass(arr == lid)
            out[str(lid)] = list(labels.TransformContinuousIndexToPhysicalPoint([float(v) for v in c[::-1]]))
    return out


def viewer_js() -> str:
    return VIEWER_JS.read_text()
