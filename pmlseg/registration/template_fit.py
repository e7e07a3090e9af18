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


class _Stale(Exception):
    """A written fit that is readable but not for this image."""


def _written_mask(img: sitk.Image, sidecar: Path, key: str) -> tuple[sitk.Image, dict]:
    """The mask ``sidecar`` names under ``key`` on ``img``'s grid, and the sidecar; _Stale when it was made from
    other voxels or for another grid, OSError/ValueError/KeyError/RuntimeError when missing or unreadable."""
    meta = json.loads(sidecar.read_text())
    if meta.get("image") != image_key_json(img):
        raise _Stale(f"template fit {sidecar.name} was made from another image")
    mask = sitk.ReadImage(str(sidecar.parent / meta[key]), sitk.sitkUInt8)
    if mask.GetSize() != img.GetSize():
        raise _Stale(f"template fit {sidecar.name}: mask size {mask.GetSize()}, image {img.GetSize()}")
    mask.CopyInformation(img)  # NIfTI keeps the geometry in float32
    return mask, meta


def use_template_fit(flair: sitk.Image, sidecar: str | Path) -> bool:
    """Let brain_mask(``flair``) return the written fit; False (the fit is then computed when needed) when
    there is none or it was made from another image."""
    sidecar = Path(sidecar)
    img = check_image(flair, "rebaseline FLAIR")
    try:
        mask, meta = _written_mask(img, sidecar, "mask")
        transform = sitk.ReadTransform(str(sidecar.parent / meta["transform"]))
    except _Stale as exc:
        log.warning("%s: fitting again", exc)
        return False
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("template fit not reused (%s): fitting again", str(exc).strip().splitlines()[-1][:120])
        return False
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
    try:
        mask, _ = _written_mask(check_image(flair, "rebaseline FLAIR"), Path(sidecar), "mask_4mm")
    except (_Stale, OSError, ValueError, KeyError, RuntimeError):
        return None
    log.info("rebaseline's 4 mm brain mask reused from its template fit")
    return mask
