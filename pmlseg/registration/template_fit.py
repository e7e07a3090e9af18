"""The rebaseline's ICBM152 template fit (brain mask + affine) as files, made by its own workflow job.

Why: a detection job's first step is this fit (~8 s on 2 cores; pmlseg.registration.preprocess.brain_mask,
reused by the lesion location priors). It needs only the rebaseline, so the workflow's ``template_fit`` job
makes it while the follow-ups are still being registered to the rebaseline, and the detection job starts
from it (``use_template_fit``): a lone patient's run no longer waits for it. The files are only a head
start: a fit that is missing, failed, or made from other voxels than the detection reads (the sidecar keeps
their digest) is ignored and computed as before.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future
from pathlib import Path

import SimpleITK as sitk

from pmlseg.atomic import atomic_path, write_nifti, write_text
from pmlseg.memo import image_key_json
from pmlseg.registration.affine import check_image
from pmlseg.registration.preprocess import brain_mask, fit_brain_mask

log = logging.getLogger(__name__)

# the call the detection (pmlseg.detect.predictor.prepare_pair) and the location priors make
_ARGS, _KWARGS = ("FLAIR",), {"return_transform": True}


def write_template_fit(flair: sitk.Image, sidecar: str | Path, name: str = "rebaseline FLAIR",
                       coarse: Future | None = None) -> None:
    """Fit the template to ``flair`` (as the detection reads it); write the mask and the transform beside
    ``sidecar`` (a JSON naming them and the image's digest, written last: its presence means the fit is whole).
    ``coarse``: set on the way to the 4 mm fit's mask (pmlseg.registration.preprocess.fit_brain_mask), which is
    then written too, for the registrations of the patient's later follow-ups (``coarse_mask``)."""
    sidecar = Path(sidecar)
    sidecar.unlink(missing_ok=True)  # never a stale fit beside a failed one
    mask, transform = fit_brain_mask(flair, *_ARGS, name=name, coarse=coarse, **_KWARGS)  # checks the image
    img = check_image(flair, name)
    stem = sidecar.name.removesuffix(".json")
    files = {"mask": f"{stem}_mask.nii.gz", "transform": f"{stem}_affine.tfm"}
    write_nifti(sidecar.parent / files["mask"], mask)
    if coarse is not None and coarse.exception() is None:
        files["mask_4mm"] = f"{stem}_mask-4mm.nii.gz"
        write_nifti(sidecar.parent / files["mask_4mm"], coarse.result())
    with atomic_path(sidecar.parent / files["transform"], suffix=".tfm") as tmp:
        sitk.WriteTransform(transform, str(tmp))
    write_text(sidecar, json.dumps({"image": image_key_json(img), **files,
                                    "what": "ICBM152 template (FLAIR contrast) -> image affine and brain mask"}) + "\n")


def use_template_fit(flair: sitk.Image, sidecar: str | Path) -> bool:
    """Let brain_mask(``flair``) return the written fit; False (the fit is then computed when needed) when
    there is none or it was made from another image."""
    sidecar = Path(sidecar)
    img = check_image(flair, "rebaseline FLAIR")
    try:
        meta = json.loads(sidecar.read_text())
        if meta.get("image") != image_key_json(img):
            log.warning("template fit %s was made from another image: fitting again", sidecar.name)
            return False
        mask = sitk.ReadImage(str(sidecar.parent / meta["mask"]), sitk.sitkUInt8)
        transform = sitk.ReadTransform(str(sidecar.parent / meta["transform"]))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("template fit not reused (%s): fitting again", str(exc).strip().splitlines()[-1][:120])
        return False
    if mask.GetSize() != img.GetSize():
        log.warning("template fit %s: mask size %s, image %s: fitting again", sidecar.name, mask.GetSize(), img.GetSize())
        return False
    mask.CopyInformation(img)  # NIfTI keeps the geometry in float32
    if transform.GetName() == "AffineTransform":
        transform = sitk.AffineTransform(transform)
    brain_mask.remember((img, *_ARGS), dict(_KWARGS), (mask, transform))
    log.info("rebaseline template fit reused from its workflow job")
    return True


def coarse_mask(flair: sitk.Image, sidecar: str | Path) -> sitk.Image | None:
    """The 4 mm brain mask ``brain_mask(flair, finest_mm=4.0)`` gives, as the first follow-up's registration
    job wrote it beside the rebaseline's template fit; None (the caller fits) when it is not there (yet: it is
    another job's output, so a first run's later follow-ups may start before it) or was made from other voxels.
    Why: every later follow-up's registration restricted its metric with this mask and fitted the template to
    the rebaseline again for it, ~2.5 s before the pair registration could start (issue 17, session 17)."""
    sidecar = Path(sidecar)
    img = check_image(flair, "rebaseline FLAIR")
    try:
        meta = json.loads(sidecar.read_text())
        if meta.get("image") != image_key_json(img) or "mask_4mm" not in meta:
            return None
        mask = sitk.ReadImage(str(sidecar.parent / meta["mask_4mm"]), sitk.sitkUInt8)
    except (OSError, ValueError, RuntimeError):
        return None
    if mask.GetSize() != img.GetSize():
        return None
    mask.CopyInformation(img)  # NIfTI keeps the geometry in float32
    log.info("rebaseline's 4 mm brain mask reused from its template fit")
    return mask
