"""A follow-up's same-session registrations (its T1/T2/DWI -> its FLAIR) made by its registration job.

Why: the detection job registered them (~10 s of CPU for T1, T2 and DWI) in a thread beside the network, and
on 2 cores the two slowed each other; the follow-up's registration job has spare CPU while it registers the
pair. That job (`pmlseg register ... --same-session OUT.json IMAGE...`) writes each transform with a digest of
the voxels it was computed from; the detection seeds ``intra_visit_transform``'s memo from it when
both images' digests match what it reads, and registers as before otherwise (missing, failed, other voxels).
The same-session registration itself (``intra_visit_transform``) and how an optional image is read live here too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pmlseg.atomic import atomic_path, write_text
from pmlseg.memo import by_image_content, image_key_json

log = logging.getLogger(__name__)


# a patient's detection job meets each visit's T1/T2/DWI in up to three cases (as the follow-up against the
# rebaseline and the previous visit, as the baseline of the next visit): register each once (~9 s each)
@by_image_content(maxsize=16, ignore=("fixed_name", "moving_name"))
def intra_visit_transform(flair, img, *, fixed_name: str, moving_name: str):
    """Same-session rigid transform (FLAIR points -> ``img`` points), from the scanner coordinates."""
    from pmlseg.registration.affine import register_affine

    return register_affine(flair, img, init="identity", rigid_only=True, fixed_name=fixed_name,
                           moving_name=moving_name).transform


def read_optional(path: str | Path):
    """An optional image as float32 3D (DWI: its first volume, b0)."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    if img.GetDimension() == 4:
        size = list(img.GetSize())
        img = sitk.Extract(img, size[:3] + [0], [0, 0, 0, 0])
    return sitk.Cast(img, sitk.sitkFloat32)


def write_same_session(flair_path: str, images: list[str], sidecar: str | Path) -> None:
    """Register each of ``images`` to the FLAIR of its session, as the detection would; write the transforms
    beside ``sidecar`` and, last, the sidecar (the FLAIR's and each image's digest, the transform files)."""
    import SimpleITK as sitk

    from pmlseg.detect.predictor import read_image

    sidecar = Path(sidecar)
    sidecar.unlink(missing_ok=True)  # never a stale set beside a failed one
    flair = read_image(flair_path, "FLAIR")
    stem = sidecar.name.removesuffix(".json")
    entries = []
    for i, path in enumerate(images):
        img = read_optional(path)
        tfm = intra_visit_transform(flair, img, fixed_name="followup FLAIR", moving_name=Path(path).name)
        name = f"{stem}_{i}_rigid.tfm"
        with atomic_path(sidecar.parent / name, suffix=".tfm") as tmp:
            sitk.WriteTransform(tfm, str(tmp))
        entries.append({"image": image_key_json(img), "transform": name})
    write_text(sidecar, json.dumps({"flair": image_key_json(flair), "images": entries,
                                    "what": "same-session rigid transforms, FLAIR points -> image points"}) + "\n")


def use_same_session(sidecar: str | Path, flair, images: list) -> int:
    """Seed intra_visit_transform with the written transform of every one of ``images`` (as read for the
    detection) registered to ``flair``; returns how many were found."""
    import SimpleITK as sitk

    sidecar = Path(sidecar)
    try:
        meta = json.loads(sidecar.read_text())
        if meta.get("flair") != image_key_json(flair):
            log.warning("same-session registrations %s were made for another FLAIR: registering again", sidecar.name)
            return 0
        written = {json.dumps(e["image"]): e["transform"] for e in meta["images"]}
        found = 0
        for img in images:
            name = written.get(json.dumps(image_key_json(img)))
            if name is not None:
                intra_visit_transform.remember((flair, img), {}, sitk.ReadTransform(str(sidecar.parent / name)))
                found += 1
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        log.warning("same-session registrations not reused (%s): registering again",
                    str(exc).strip().splitlines()[-1][:120])
        return 0
    return found
