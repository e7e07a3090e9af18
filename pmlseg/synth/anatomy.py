"""Tissue maps of a synthetic head, from the ICBM152 2009 template bundled inside the nilearn wheel.

nilearn ships the 1 mm T1, GM and WM probability maps of ICBM152 2009c (sym) in its wheel, so no
download is needed. CSF is what is left of the brain mask after GM and WM; ventricles are the deep
CSF. The template is skull-stripped, so a simple skull and scalp are grown around the brain
(distance layers), which gives registration and brain masking something realistic to remove.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pmlseg.errors import PmlsegError

#: voxels added below the template (it cuts the brainstem at its lower edge), for the skull shell
PAD_INFERIOR = 14
PAD = 4


@dataclass
class Tissues:
    """Fractional tissue maps on a 1 mm MNI (RAS) grid; arrays are float32, indexed [x, y, z]."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray          # ventricles, sulci and the extra-axial CSF rim
    bone: np.ndarray         # inner/outer skull tables (dark on every contrast)
    fat: np.ndarray          # diploe and scalp (bright on T1)
    affine: np.ndarray       # voxel -> RAS mm (nibabel convention)
    brain: np.ndarray = field(repr=False)          # bool: inside the template brain mask
    ventricles: np.ndarray = field(repr=False)     # bool: deep CSF
    dist_ventricle: np.ndarray = field(repr=False)  # mm from the ventricle surface
    dist_cortex: np.ndarray = field(repr=False)     # mm from the GM/WM boundary (inside WM)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.gm.shape

    @property
    def stack(self) -> np.ndarray:
        """(x, y, z, 5) float32 of gm, wm, csf, bone, fat (the maps are views into it), for fast mixing."""
        return self.gm.base if self.gm.base is not None and self.gm.base.shape[-1:] == (5,) else np.stack(
            [self.gm, self.wm, self.csf, self.bone, self.fat], axis=-1)

    def to_nifti(self, array: np.ndarray):
        """Wrap an array on this grid as a nibabel image (for writing MNI-space truth)."""
        import nibabel as nib

        return nib.Nifti1Image(array, self.affine)


TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def template_dir() -> Path:
    """nilearn's bundled data folder, found without importing nilearn.datasets (which takes seconds).

    These are the very files nilearn.datasets.load_mni152_{template,gm_template,wm_template}
    (resolution=1) read; they are rescaled to 0..1 the same way here.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise PmlsegError("nilearn is not installed: it ships the ICBM152 template the synthetic cohort needs")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    for name in TEMPLATE_FILES.values():
        if not (folder / name).is_file():
            raise PmlsegError(f"{folder / name}: ICBM152 template file missing from the nilearn install")
    return folder


def _nilearn_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """T1, GM, WM (0..1) and affine from nilearn's bundled ICBM152 files."""
    import nibabel as nib

    folder = template_dir()
    imgs = {k: nib.load(folder / v) for k, v in TEMPLATE_FILES.items()}
    arrays = []
    for k in ("t1", "gm", "wm"):
        a = np.asarray(imgs[k].dataobj, dtype=np.float32)
        arrays.append(a / a.max())
    return (*arrays, np.asarray(imgs["t1"].affine, dtype=float))


def _distance_outside(mask: np.ndarray, step: int = 1) -> np.ndarray:
    """Euclidean distance (mm on the 1 mm grid) from each voxel outside ``mask`` to it; 0 inside.

    SimpleITK's multithreaded Maurer transform is faster than scipy's EDT; ``step=2`` computes it
    on a 2 mm grid (8x less work), enough for the lesion-placement heuristics.
    """
    import SimpleITK as sitk

    small = mask[::step, ::step, ::step]
    img = sitk.GetImageFromArray(small.astype(np.uint8))
    img.SetSpacing((float(step),) * 3)
    d = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    d = np.clip(sitk.GetArrayFromImage(d), 0, None).astype(np.float32)
    if step > 1:
        for axis in range(3):
            d = np.repeat(d, step, axis=axis)
        d = np.ascontiguousarray(d[: mask.shape[0], : mask.shape[1], : mask.shape[2]])
    return d


@functools.lru_cache(maxsize=1)
def load_template() -> Tissues:
    """Tissue fractions + affine of the synthetic head at 1 mm (cached: ~3 s the first time)."""
    from scipy import ndimage

    t1, gm, wm, affine = _nilearn_maps()
    pad = ((PAD, PAD), (PAD, PAD), (PAD_INFERIOR, PAD))
    t1, gm, wm = (np.pad(a, pad) for a in (t1, gm, wm))
    affine = affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.array([PAD, PAD, PAD_INFERIOR], dtype=float)

    brain = ndimage.binary_fill_holes((t1 > 0) | (gm + wm > 0.5))
    total = np.maximum(gm + wm, 1.0)
    gm, wm = gm / total, wm / total
    csf = np.where(brain, np.clip(1.0 - gm - wm, 0, 1), 0).astype(np.float32)

    # head layers grown outside the brain (distances in mm on the 1 mm grid)
    d_out = _distance_outside(brain)
    outside = 1.0 - gm - wm - csf

    def band(lo, hi):
        # soft-edged shell lo < d <= hi (partial volume of about one voxel)
        return np.clip(d_out - np.float32(lo - 0.5), 0, 1) * np.clip(np.float32(hi + 0.5) - d_out, 0, 1)

    extra_csf = band(0.0, 2.5)
    bone = band(2.5, 4.0) + band(6.5, 8.5)
    fat = 0.6 * band(4.0, 6.5) + band(8.5, 13.0)
    csf = np.clip(csf + extra_csf * outside, 0, 1)
    bone = bone * outside
    fat = fat * outside

    # ventricles: CSF far from the brain surface; lesion placement uses the distances below
    d_in = _distance_outside(~brain, step=2)
    ventricles = (csf > 0.5) & (d_in > 12) & brain
    ventricles = ndimage.binary_opening(ventricles, iterations=1)
    lab, n = ndimage.label(ventricles)
    if n:
        sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        ventricles = np.isin(lab, 1 + np.flatnonzero(sizes >= 200))
    dist_ventricle = _distance_outside(ventricles, step=2)
    dist_cortex = _distance_outside(wm <= 0.5, step=2)
    stack = np.empty(gm.shape + (5,), np.float32)
    for i, a in enumerate((gm, wm, csf, bone, fat)):
        stack[..., i] = a
    gm, wm, csf, bone, fat = (stack[..., i] for i in range(5))
    return Tissues(gm=gm, wm=wm, csf=csf, bone=bone, fat=fat,
                   affine=affine, brain=brain, ventricles=ventricles,
                   dist_ventricle=dist_ventricle, dist_cortex=dist_cortex)


def ras_affine_to_lps(affine: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """(origin, spacing, direction) of a SimpleITK image for a nibabel RAS affine of an [x,y,z] array."""
    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    direction = lps[:, :3] / spacing
    return tuple(lps[:, 3]), tuple(spacing), tuple(direction.ravel())


def to_sitk(array: np.ndarray, affine: np.ndarray):
    """A SimpleITK image (LPS physical space) of an [x, y, z] array with a nibabel RAS affine.

    No transpose copy: the C-ordered [x, y, z] array is handed to SimpleITK as is (which reads
    it as [k, j, i]) and the direction matrix is permuted to match, which is the same geometry.
    """
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    origin, spacing, direction = ras_affine_to_lps(affine)
    d = np.asarray(direction).reshape(3, 3)[:, ::-1]
    img.SetOrigin(origin)
    img.SetSpacing(tuple(spacing[::-1]))
    img.SetDirection(tuple(d.ravel()))
    return img
