"""Where a lesion lies: affine registration of the rebaseline to the ICBM152 2009 template (bundled in
nilearn's wheel, no download) and simple, documented MNI-coordinate rules for regions and lobes.

Why template priors and not a subject segmentation: the inputs are often thick-slice 2D FLAIRs where a
tissue segmentation is unreliable; an affine fit to ICBM152 gives GM/WM/CSF probabilities, a brain
mask and MNI coordinates for every voxel in seconds.  It is crude (a few mm off at the cortex), which
docs/pml_score.md states.  All coordinates below are MNI (RAS, mm); ITK works in LPS, so x and y
change sign on the way (``lps_to_ras``).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from pmlseg.memo import by_image_content

log = logging.getLogger(__name__)


@dataclass
class TemplatePriors:
    """ICBM152 maps resampled onto the subject (rebaseline) grid, and the subject->MNI transform."""

    gm: sitk.Image          # float32 GM probability on the subject grid
    wm: sitk.Image          # float32 WM probability
    csf: sitk.Image         # float32 CSF probability (inside the template brain mask: 1 - GM - WM)
    brain: sitk.Image       # uint8 template brain mask on the subject grid
    to_mni: sitk.Transform  # maps subject physical points (LPS) to template physical points (LPS)
    qc: object = None       # pmlseg.registration.qc.QCResult of the template fit; location features need it passed


@functools.lru_cache(maxsize=1)
def load_template() -> dict[str, sitk.Image]:
    """ICBM152 2009 T1, GM, WM and brain mask at 1 mm, read from nilearn's bundled data files.

    The same images as nilearn.datasets.load_mni152_{template,gm_template,wm_template,brain_mask}
    (resolution=1: each scaled to a maximum of 1, the brain where T1 > 0.2), without importing
    nilearn.datasets (~3 s per process: pandas, scikit-learn).
    """
    import nibabel as nib

    from pmlseg.paths import icbm152_file

    out, data = {}, {}
    for key in ("t1", "gm", "wm"):
        nii = nib.load(icbm152_file(key))
        data[key] = np.asarray(nii.dataobj).astype(np.float32)
        data[key] /= data[key].max()
        out[key] = _nib_to_sitk(nib.Nifti1Image(data[key], nii.affine), np.float32)
    out["brain"] = _nib_to_sitk(nib.Nifti1Image((data["t1"] > 0.2).astype(np.uint8), nii.affine), np.uint8)
    return out


def _nib_to_sitk(nii, dtype) -> sitk.Image:
    """nibabel (RAS affine) -> SimpleITK (LPS) without going through a file."""
    data = np.asarray(nii.dataobj, dtype=dtype)
    aff = nii.affine.copy()
    img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    lps = np.diag([-1.0, -1.0, 1.0]) @ aff[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    img.SetSpacing(spacing.tolist())
    img.SetDirection((lps / spacing).ravel().tolist())
    img.SetOrigin((np.diag([-1.0, -1.0, 1.0]) @ aff[:3, 3]).tolist())
    return img


# registration_qc's gradient agreement of the template fit: the template is another brain, so a good fit
# scores below the same-patient threshold; calibrated by benchmarks/template_qc.py (docs/pml_score.md)
TEMPLATE_QC_THRESHOLD = 0.30


def lps_to_ras(p) -> tuple[float, float, float]:
    return (-float(p[0]), -float(p[1]), float(p[2]))


@by_image_content(maxsize=2)  # the same rebaseline for every follow-up of a patient's detection job
def register_to_template(flair: sitk.Image) -> TemplatePriors:
    """The ICBM152 template fitted to the subject FLAIR, with the registration QC of the follow-up registration
    (at TEMPLATE_QC_THRESHOLD: a template is not the same brain), and its GM/WM/CSF/brain maps on the FLAIR grid.

    The fit is the brain mask's (pmlseg.registration.preprocess.brain_mask: the template given FLAIR contrast,
    affine down to 2 mm), which detection has already computed for the same rebaseline: a second fit of the
    T1 template (~4 s per case) placed lesions no better (docs/pml_score.md, session 11)."""
    from pmlseg.registration.preprocess import brain_mask
    from pmlseg.registration.qc import registration_qc

    tpl = load_template()
    _mask, tpl_to_subj = brain_mask(flair, "FLAIR", name="rebaseline FLAIR", return_transform=True)
    fixed, fmask = _at(tpl["t1"], 2.0), _at(tpl["brain"], 2.0, True)
    qc = registration_qc(fixed, _at(sitk.Cast(flair, sitk.sitkFloat32), 2.0), tpl_to_subj, fixed_mask=fmask,
                         threshold=TEMPLATE_QC_THRESHOLD, fixed_name="ICBM152 template", moving_name="rebaseline FLAIR")
    to_mni = tpl_to_subj.GetInverse()

    def put(img, interp=sitk.sitkLinear, pix=sitk.sitkFloat32):
        return sitk.Resample(img, flair, to_mni, interp, 0.0, pix)

    gm, wm = put(tpl["gm"]), put(tpl["wm"])
    brain = put(tpl["brain"], sitk.sitkNearestNeighbor, sitk.sitkUInt8)
    csf = sitk.Cast(brain, sitk.sitkFloat32) * sitk.Clamp(1.0 - gm - wm, sitk.sitkFloat32, 0.0, 1.0)
    return TemplatePriors(gm=gm, wm=wm, csf=csf, brain=brain, to_mni=to_mni, qc=qc)


def _at(img: sitk.Image, mm: float, is_mask: bool = False) -> sitk.Image:
    """Resample to about ``mm`` spacing on every axis (axes already coarser keep their spacing)."""
    sp = np.array(img.GetSpacing())
    new_sp = np.maximum(sp, mm)
    size = np.maximum(1, np.round(np.array(img.GetSize()) * sp / new_sp)).astype(int)
    src = img
    if not is_mask:
        sigma = np.sqrt(np.maximum(new_sp ** 2 - sp ** 2, 0)) / 2.355
        src = sitk.SmoothingRecursiveGaussian(sitk.Cast(img, sitk.sitkFloat32), [float(max(s, 1e-3)) for s in sigma])
    return sitk.Resample(src, size.tolist(), sitk.Transform(), sitk.sitkNearestNeighbor if is_mask else sitk.sitkLinear,
                         img.GetOrigin(), new_sp.tolist(), img.GetDirection(), 0.0,
                         sitk.sitkUInt8 if is_mask else sitk.sitkFloat32)


# ---------------------------------------------------------------- MNI coordinate rules (RAS, mm)
# Boxes are deliberately coarse; they are documented in docs/pml_score.md.
BRAINSTEM = dict(x=(-12, 12), y=(-45, -10), z=(-65, -8))
MCP = dict(x=(10, 30), y=(-58, -30), z=(-45, -18))          # |x| range; both hemispheres
CEREBELLUM = dict(x=(-60, 60), y=(-100, -30), z=(-75, -10))
LATERAL_VENTRICLES = dict(x=(-32, 32), y=(-50, 35), z=(-5, 35))
DEEP_GREY = dict(x=(-32, 32), y=(-40, 28), z=(-12, 24))     # caudate, putamen, pallidum, thalamus


def _in(box, x, y, z, absx=False) -> bool:
    xx = abs(x) if absx else x
    return box["x"][0] <= xx <= box["x"][1] and box["y"][0] <= y <= box["y"][1] and box["z"][0] <= z <= box["z"][1]


def infratentorial_region(x: float, y: float, z: float) -> str | None:
    """'middle_cerebellar_peduncle', 'brainstem', 'cerebellum' or None (supratentorial)."""
    if _in(MCP, x, y, z, absx=True):
        return "middle_cerebellar_peduncle"
    if _in(BRAINSTEM, x, y, z):
        return "brainstem"
    # the tentorium slopes: cerebellum top is about z=-10 at y=-45 and z=0 at y=-80
    if _in(CEREBELLUM, x, y, z) and z < -10 + 0.3 * max(0.0, -45 - y):
        return "cerebellum"
    return None


def lobe(x: float, y: float, z: float) -> str:
    """Lobe by MNI coordinate rules: central sulcus ~ y = -18 - 0.25 (z - 40); parieto-occipital
    boundary y = -70; temporal = lateral (|x| >= 28), below z = 5 (Sylvian fissure), in front of y = -70."""
    if infratentorial_region(x, y, z):
        return "infratentorial"
    if y < -70:
        return "occipital"
    if abs(x) >= 28 and z < 5 and -70 <= y <= 25:
        return "temporal"
    if y > -18 - 0.25 * (z - 40):
        return "frontal"
    return "parietal"


def hemisphere(x: float) -> str:
    if abs(x) < 3:
        return "midline"
    return "right" if x > 0 else "left"


def _inside_box(mask: np.ndarray, priors: TemplatePriors, ref: sitk.Image, box: dict, offset=(0, 0, 0)) -> np.ndarray:
    """The voxels of ``mask`` (subject grid, or the part of it that starts at array index ``offset``) whose
    MNI coordinates lie inside ``box``."""
    idx = np.argwhere(mask)
    out = np.zeros_like(mask)
    if idx.size == 0:
        return out
    pts = _index_to_mni(ref, priors.to_mni, idx + np.asarray(offset))
    inside = np.ones(len(pts), bool)
    for k, axis in enumerate("xyz"):
        inside &= (pts[:, k] >= box[axis][0]) & (pts[:, k] <= box[axis][1])
    sel = idx[inside]
    out[sel[:, 0], sel[:, 1], sel[:, 2]] = True
    return out


def ventricle_prior(priors: TemplatePriors, ref: sitk.Image) -> np.ndarray:
    """Boolean array (subject grid): template CSF inside the lateral-ventricle box, i.e. ventricles."""
    return _inside_box(sitk.GetArrayFromImage(priors.csf) > 0.5, priors, ref, LATERAL_VENTRICLES)


def cortex_prior(priors: TemplatePriors, ref: sitk.Image, min_gm: float = 0.35, region: tuple | None = None) -> np.ndarray:
    """Boolean array (subject grid, or its ``region``: a tuple of array slices): template GM outside the
    deep-grey box (basal ganglia, thalami), i.e. cortex, so that a lesion beside the caudate does not read
    as touching cortex.  A region costs its own voxels only (the whole grid: ~10^6 GM voxels to place)."""
    region = region or tuple(slice(0, n) for n in sitk.GetArrayViewFromImage(priors.gm).shape)
    gm = sitk.GetArrayViewFromImage(priors.gm)[region] > min_gm
    return gm & ~_inside_box(gm, priors, ref, DEEP_GREY, [s.start for s in region])


def _index_to_mni(ref: sitk.Image, to_mni: sitk.Transform, idx_zyx: np.ndarray) -> np.ndarray:
    """MNI RAS coordinates of array indices (z, y, x) of ``ref``; vectorised for affine transforms."""
    spacing = np.array(ref.GetSpacing())
    direction = np.array(ref.GetDirection()).reshape(3, 3)
    origin = np.array(ref.GetOrigin())
    phys = origin + (idx_zyx[:, ::-1] * spacing) @ direction.T
    if isinstance(to_mni, sitk.AffineTransform) or to_mni.GetName() in ("AffineTransform", "MatrixOffsetTransformBase"):
        aff = sitk.AffineTransform(to_mni)
        A = np.array(aff.GetMatrix()).reshape(3, 3)
        c = np.array(aff.GetCenter())
        t = np.array(aff.GetTranslation())
        mni = (phys - c) @ A.T + c + t
    else:
        mni = np.array([to_mni.TransformPoint(p.tolist()) for p in phys])
    mni[:, :2] *= -1.0
    return mni
