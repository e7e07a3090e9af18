"""One longitudinal space per patient: every visit and modality registered to the rebaseline FLAIR.

Why via the visit's FLAIR: a follow-up T1 and the rebaseline FLAIR differ in contrast, scanner and
time at once; the follow-up T1 -> follow-up FLAIR step (same session, mostly scanner-coordinate
aligned: rigid, the header alignment competing as a start) and the follow-up FLAIR -> rebaseline
FLAIR step (same contrast) are each easy, and
their composition (sitk.CompositeTransform) is resampled once, so no image is interpolated twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from pmlseg.atomic import atomic_path
from pmlseg.errors import PmlsegError
from pmlseg.logs import progress
from pmlseg.registration.affine import register_affine
from pmlseg.registration.preprocess import brain_mask
from pmlseg.registration.qc import registration_qc
from pmlseg.tables import write_tsv

log = logging.getLogger(__name__)

FLAIR = "FLAIR"


@dataclass
class LongitudinalSpace:
    """Transforms (rebaseline FLAIR points -> each image's points) and one QC row per registered pair."""

    rebaseline: str
    reference: Path
    transforms: dict[tuple[str, str], sitk.Transform] = field(default_factory=dict)
    transform_files: dict[tuple[str, str], Path] = field(default_factory=dict)
    qc: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r["passed"] for r in self.qc)

    def resample(self, session: str, modality: str, image: sitk.Image, *, is_label: bool = False) -> sitk.Image:
        """``image`` (``session``'s ``modality``) on the rebaseline FLAIR grid, interpolated once."""
        ref = sitk.ReadImage(str(self.reference))
        interp = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
        return sitk.Resample(image, ref, self.transforms[(session, modality)], interp, 0.0, image.GetPixelID())


def choose_rebaseline(visits: dict[str, dict[str, str | Path]], rebaseline: str | None = None) -> str:
    """The visit named ``rebaseline`` (e.g. from the clinical table) or the earliest visit with a FLAIR."""
    if rebaseline is not None:
        if rebaseline not in visits:
            raise PmlsegError(f"rebaseline visit {rebaseline!r} not among the visits {sorted(visits)}")
        if FLAIR not in visits[rebaseline]:
            raise PmlsegError(f"rebaseline visit {rebaseline!r} has no FLAIR")
        return rebaseline
    with_flair = sorted(s for s, mods in visits.items() if FLAIR in mods)
    if not with_flair:
        raise PmlsegError(f"no visit has a FLAIR among {sorted(visits)}; cannot build a longitudinal space")
    return with_flair[0]  # session labels sort chronologically (ses-01 is the earliest visit)


def build_longitudinal_space(visits: dict[str, dict[str, str | Path]], rebaseline: str | None = None,
                             out_dir: str | Path | None = None) -> LongitudinalSpace:
    """Register every image of every visit into the rebaseline FLAIR's physical space.

    ``visits``: {session: {modality: path}} with modality names such as "FLAIR", "T1w", "T2w".
    Writes (if ``out_dir``) ``{session}_{modality}_to_rebaseline.tfm`` (rebaseline FLAIR points ->
    image points) and ``registration_qc.tsv``; returns them in a :class:`LongitudinalSpace`.
    A pair that fails QC is recorded as failed (and logged), not raised: callers check ``.passed``.
    """
    base = choose_rebaseline(visits, rebaseline)
    ref_path = Path(visits[base][FLAIR])
    ref = sitk.ReadImage(str(ref_path))
    ref_mask = sitk.BinaryDilate(brain_mask(ref, "FLAIR", name=str(ref_path)), [3, 3, 1])
    space = LongitudinalSpace(rebaseline=base, reference=ref_path)
    identity = sitk.AffineTransform(3)
    space.transforms[(base, FLAIR)] = identity
    jobs = [(s, m) for s in sorted(visits) for m in sorted(visits[s]) if (s, m) != (base, FLAIR)]
    # FLAIRs first: other modalities of a visit go through their visit's FLAIR
    jobs.sort(key=lambda sm: (sm[1] != FLAIR, sm))
    flair_masks: dict[str, sitk.Image] = {base: ref_mask}
    for session, modality in progress(jobs, desc="registering", unit="image"):
        path = Path(visits[session][modality])
        img = sitk.ReadImage(str(path))
        if modality == FLAIR or FLAIR not in visits[session]:
            # FLAIR (or a visit without FLAIR): straight to the rebaseline FLAIR
            res = register_affine(ref, img, fixed_mask=ref_mask, fixed_name=str(ref_path), moving_name=str(path))
            tx = res.transform
            via = "direct"
        else:
            # same session: register to the visit's FLAIR, then compose with FLAIR -> rebaseline
            vf_path = Path(visits[session][FLAIR])
            vf = sitk.ReadImage(str(vf_path))
            if session not in flair_masks:
                flair_masks[session] = sitk.BinaryDilate(brain_mask(vf, "FLAIR", name=str(vf_path)), [3, 3, 1])
            res = register_affine(vf, img, fixed_mask=flair_masks[session], init="identity", rigid_only=True,
                                  fixed_name=str(vf_path), moving_name=str(path))
            qc_intra = registration_qc(vf, img, res.transform, flair_masks[session], fixed_name=str(vf_path),
                                       moving_name=str(path))
            space.qc.append(_row(session, modality, "intra-visit", vf_path, path, qc_intra))
            tx = sitk.CompositeTransform(3)
            tx.AddTransform(res.transform)  # applied last: visit FLAIR -> image
            tx.AddTransform(space.transforms[(session, FLAIR)])  # applied first: rebaseline -> visit FLAIR
            via = "via visit FLAIR"
        qc = registration_qc(ref, img, tx, ref_mask, fixed_name=str(ref_path), moving_name=str(path))
        space.qc.append(_row(session, modality, via, ref_path, path, qc))
        space.transforms[(session, modality)] = tx
    if out_dir is not None:
        out = Path(out_dir)
        for (session, modality), tx in space.transforms.items():
            p = out / f"{session}_{modality}_to_rebaseline.tfm"
            with atomic_path(p, suffix=".tfm") as tmp:
                sitk.WriteTransform(tx, str(tmp))
            space.transform_files[(session, modality)] = p
        write_qc_table(out / "registration_qc.tsv", space.qc)
    for r in space.qc:
        if not r["passed"]:
            log.error("registration QC failed: %s", r["reason"])
    return space


def _row(session, modality, via, fixed, moving, qc) -> dict:
    return {"session": session, "modality": modality, "step": via, "fixed": str(fixed), "moving": str(moving),
            "similarity": round(qc.similarity, 4), "nmi": round(qc.metrics.get("nmi", float("nan")), 4),
            "passed": qc.passed, "reason": qc.reason}


def write_qc_table(path: Path, rows: list[dict]) -> None:
    """Tab-separated QC table, one row per registration step (atomic write)."""
    write_tsv(path, rows, ["session", "modality", "step", "fixed", "moving", "similarity", "nmi", "passed", "reason"])
