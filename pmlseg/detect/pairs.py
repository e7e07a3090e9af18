"""Synthetic training pairs: real brains + inserted new / enlarging / stable / shrinking lesions.

There is no large labelled longitudinal set, so a baseline/follow-up pair is simulated from one
real brain: lesions (real MNI lesion shapes or procedural blobs) are inserted into the follow-up
only (label 1), into both visits (stable: label 0) or into the baseline only (shrinking: label 0);
existing lesions of the real brain stay unchanged in both visits. Each visit is then "acquired"
separately (thick-slice blur and sampling, its own small rotation / offset), the follow-up is
resampled back onto the baseline grid with a slightly wrong transform (residual misregistration),
and contrast (a random monotone intensity curve per visit), bias field and noise differ between
visits; the follow-up is then harmonised to the baseline exactly as at inference (harmonise.py).
A source with a T2-weighted image also gives both visits' T2W images, with the same lesions (make_pair ``t2``).
The result is on the same kind of grid the predictor works on (1 mm in plane, thick axial slices),
see ``predictor.working_grid``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from pmlseg.detect.harmonise import harmonise_followup

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Source:
    """One real brain on a 1 mm isotropic grid (axes x, y, z with z = superior)."""

    name: str
    image: np.ndarray  # float32, normalised (median of brain = 1), 0 outside brain
    mask: np.ndarray  # bool brain mask
    lesions: np.ndarray  # bool: existing lesions of this brain (kept unchanged)
    centres: np.ndarray  # (N, 3) int voxel candidates for new lesions (white matter / real lesion sites)
    ribbon: np.ndarray | None = None  # cortical-ribbon weight, computed on first use (cortical_ribbon)
    t2: np.ndarray | None = None  # T2-weighted image on the same grid, normalised and masked like ``image``


def normalise(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scale so that the median brain intensity is 1 (robust to lesions; same rule as inference)."""
    med = float(np.median(image[mask])) if mask.any() else 1.0
    return (image / max(med, 1e-6)).astype(np.float32)


def lesion_library(mask_dir: str | Path, min_vox: int = 4, max_vox: int = 6000) -> tuple[list[np.ndarray], np.ndarray]:
    """Connected components of the MNI lesion masks (crops) and all lesion voxel sites."""
    import nibabel as nib

    shapes: list[np.ndarray] = []
    sites = []
    for f in sorted(Path(mask_dir).glob("*.nii.gz")):
        m = np.asarray(nib.load(str(f)).dataobj) > 0
        lab, n = ndi.label(m, structure=np.ones((3, 3, 3)))
        for i, sl in enumerate(ndi.find_objects(lab), start=1):
            comp = lab[sl] == i
            nv = int(comp.sum())
            if min_vox <= nv <= max_vox:
                shapes.append(np.pad(comp, 2))
        sites.append(np.argwhere(m))
    return shapes, np.concatenate(sites)


def _on_grid(path: Path, like: Path) -> np.ndarray:
    """``path``'s image as float32 (x, y, z) on ``like``'s voxel grid (SimpleITK, linear, where the grids differ)."""
    import nibabel as nib

    a, b = nib.load(str(path)), nib.load(str(like))
    if a.shape == b.shape and np.allclose(a.affine, b.affine, atol=1e-3):
        return np.asarray(a.dataobj, dtype=np.float32)
    import SimpleITK as sitk

    img = sitk.Resample(sitk.ReadImage(str(path), sitk.sitkFloat32), sitk.ReadImage(str(like)), sitk.Transform(),
                        sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0)


def mni_source(brain_dir: str | Path, lesion_mask: str | Path, sites: np.ndarray) -> Source:
    """An MNI brain's FLAIR, with its T2.nii.gz (when there is one) as the T2-weighted image."""
    import nibabel as nib

    flair, t2_path = Path(brain_dir) / "FLAIR.nii.gz", Path(brain_dir) / "T2.nii.gz"
    img = np.asarray(nib.load(str(flair)).dataobj, dtype=np.float32)
    mask = ndi.binary_fill_holes(img > 0.05 * np.percentile(img[img > 0], 99))
    les = np.asarray(nib.load(str(lesion_mask)).dataobj) > 0
    inner = ndi.binary_erosion(mask, iterations=6)
    c = sites[inner[tuple(sites.T)]]
    c = c[~les[tuple(c.T)]]
    t2 = normalise(_on_grid(t2_path, flair), mask) * mask if t2_path.exists() else None
    return Source(Path(brain_dir).name, normalise(img, mask) * mask, mask, les, c[:: max(1, len(c) // 20000)], t2=t2)


def raw_source(name: str, image, mask: np.ndarray | None = None) -> Source:
    """A raw clinical FLAIR (SimpleITK image) resampled to 1 mm iso, LPS; lesions found by intensity."""
    import SimpleITK as sitk

    from pmlseg.detect.preprocess import brain_mask_array

    img = sitk.DICOMOrient(sitk.Cast(image, sitk.sitkFloat32), "LPS")
    sp = img.GetSpacing()
    size = [int(round(s * n)) for s, n in zip(sp, img.GetSize())]
    iso = sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(), (1.0, 1.0, 1.0),
                        img.GetDirection(), 0.0, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(iso).transpose(2, 1, 0)
    m = brain_mask_array(arr, (1.0, 1.0, 1.0)) if mask is None else mask
    arr = normalise(arr, m) * m
    inner = ndi.binary_erosion(m, iterations=8)
    les = inner & (ndi.gaussian_filter(arr, 1.0) > 1.6)
    les = ndi.binary_opening(les)
    wm = inner & (arr > 0.9) & (arr < 1.4) & ~ndi.binary_dilation(les, iterations=2)
    c = np.argwhere(wm)
    return Source(name, arr, m, les, c[:: max(1, len(c) // 20000)])


def _blob(rng: np.random.Generator, shapes: list[np.ndarray]) -> np.ndarray:
    """A lesion shape: a real component (flipped, rescaled) or a perturbed ellipsoid."""
    if shapes and rng.random() < 0.7:
        # favour small lesions: most new lesions are small
        for _ in range(20):
            s = shapes[rng.integers(len(shapes))]
            if s.sum() < rng.choice([60, 300, 2000, 6000], p=[0.45, 0.3, 0.2, 0.05]):
                break
        s = s.astype(np.float32)
        for ax in range(3):
            if rng.random() < 0.5:
                s = np.flip(s, ax)
        z = rng.uniform(0.7, 1.4)
        s = ndi.zoom(s, z, order=1) > 0.5
        return s if s.any() else np.ones((2, 2, 2), bool)
    r = rng.uniform(1.2, 5.5, size=3) * rng.choice([1.0, 1.0, 1.6])
    half = int(np.ceil(r.max())) + 3
    g = np.mgrid[-half:half + 1, -half:half + 1, -half:half + 1].astype(np.float32)
    q = sum((g[i] / r[i]) ** 2 for i in range(3))
    noise = ndi.gaussian_filter(rng.normal(size=q.shape), 1.5)
    noise = noise / (noise.std() + 1e-6)
    return q + 0.25 * noise < 1.0


def _paste(vol_mask: np.ndarray, shape: np.ndarray, centre: np.ndarray) -> np.ndarray:
    out = np.zeros_like(vol_mask)
    lo = np.asarray(centre) - np.asarray(shape.shape) // 2
    src = [slice(max(0, -l), min(s, d - l)) for l, s, d in zip(lo, shape.shape, vol_mask.shape)]
    dst = [slice(max(0, l), max(0, l) + (ss.stop - ss.start)) for l, ss in zip(lo, src)]
    if all(ss.stop > ss.start for ss in src):
        out[tuple(dst)] = shape[tuple(src)]
    return out


def _fill(img: np.ndarray, m: np.ndarray, rng: np.random.Generator, contrast: float,
          added: np.ndarray | None = None) -> np.ndarray:
    """Make region m FLAIR-bright with a soft (partial-volume) border and some texture (in place on a crop);
    the brightening is also summed into ``added`` when given."""
    objs = ndi.find_objects(m.astype(np.uint8))
    if not objs or objs[0] is None:
        return img
    sl = tuple(slice(max(0, s.start - 4), s.stop + 4) for s in objs[0])
    soft = ndi.gaussian_filter(m[sl].astype(np.float32), rng.uniform(0.5, 1.0))
    soft = np.clip(soft * 1.3, 0, 1)
    tex = 1.0 + 0.24 * ndi.gaussian_filter(rng.normal(size=soft.shape).astype(np.float32), 1.0)
    delta = soft * np.clip(contrast * tex - img[sl], 0, None)
    img[sl] += delta
    if added is not None:
        added[sl] += delta
    return img


def _inpaint(img: np.ndarray, region: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``img`` (in place) with ``region`` and a 1-voxel rim filled from the brain around it (normalised
    convolution, sigma 3 mm) plus fine noise of the surrounding tissue's spread: a pseudo-healthy baseline of a
    real lesion (Basaran 2022), so the follow-up shows the lesion's own texture and border as new."""
    objs = ndi.find_objects(region.astype(np.uint8))
    if not objs or objs[0] is None:
        return img
    sl = tuple(slice(max(0, s.start - 10), s.stop + 10) for s in objs[0])
    r = ndi.binary_dilation(region[sl], iterations=1)
    w = (mask[sl] & ~r).astype(np.float32)
    sub = img[sl]
    est = ndi.gaussian_filter(sub * w, 3.0) / np.maximum(ndi.gaussian_filter(w, 3.0), 1e-3)
    ring = ndi.binary_dilation(r, iterations=3) & ~r & mask[sl]
    spread = float(np.std(sub[ring])) if ring.any() else 0.05
    noise = ndi.gaussian_filter(rng.normal(size=sub.shape).astype(np.float32), 0.7)
    noise *= 0.5 * spread / (noise.std() + 1e-6)
    sub[r] = (est + noise)[r] * mask[sl][r]
    return img


def insert_lesions(src: Source, rng: np.random.Generator, shapes: list[np.ndarray], real_as_new: float | None = None,
                   fu_lesions: dict | None = None):
    """Return (bl_1mm, fu_1mm, new_1mm, added_1mm) with lesion changes inserted on the 1 mm source grid;
    ``added`` is the follow-up brightening the new and enlarging lesions caused (for the visibility label).
    ``real_as_new``: with this probability, 1-3 of the brain's own lesions (10-3000 voxels) are inpainted out of
    the baseline (``_inpaint``) and labelled new: real lesion appearance as the positive example.
    ``fu_lesions``: if given, its "mask" is set to every lesion the follow-up shows (old, stable, new, what is
    left of a shrinking one): the target of the single-visit auxiliary head (make_pair ``all_lesions``)."""
    bl = src.image.copy()
    fu = src.image.copy()
    new = np.zeros(src.mask.shape, bool)
    added = np.zeros(src.mask.shape, np.float32)
    lab, n = ndi.label(src.lesions)
    objs = ndi.find_objects(lab)
    inpainted: set[int] = set()
    if real_as_new and n and rng.random() < real_as_new:
        sizes = ndi.sum_labels(np.ones(lab.shape, np.uint8), lab, index=np.arange(1, n + 1))
        ok = [i + 1 for i in range(n) if 10 <= sizes[i] <= 3000]
        for i in rng.permutation(ok)[: rng.integers(1, 4)] if ok else []:
            comp = lab == i
            before = float(bl[comp].mean())
            _inpaint(bl, comp, src.mask, rng)
            if before - float(bl[comp].mean()) < 0.1:  # not brighter than what replaced it: not a visible change
                bl[comp] = fu[comp]
                continue
            added[comp] += np.clip(fu[comp] - bl[comp], 0, None)
            new |= comp
            inpainted.add(int(i))
    occupied = src.lesions.copy()
    n_new = rng.choice([0, 1, 2, 3, 4, 6, 8], p=[0.06, 0.2, 0.2, 0.18, 0.16, 0.12, 0.08])
    n_stable = rng.integers(0, 5)
    n_shrink = rng.integers(0, 3)
    kinds = ["new"] * n_new + ["stable"] * n_stable + ["shrink"] * n_shrink
    for kind in kinds:
        for _ in range(10):
            c = src.centres[rng.integers(len(src.centres))] + rng.integers(-3, 4, size=3)
            m = _paste(src.mask, _blob(rng, shapes), c) & src.mask
            box = ndi.find_objects(m.astype(np.uint8))
            if m.sum() < 3 or not box or box[0] is None:
                continue
            bb = tuple(slice(max(0, s.start - 2), s.stop + 2) for s in box[0])
            if not (ndi.binary_dilation(m[bb], iterations=2) & occupied[bb]).any():
                break
        else:
            continue
        occupied |= m
        shown = m
        # real new lesions are often faint on follow-up FLAIR (1.1-1.5 x the median brain after partial volume)
        contrast = rng.uniform(1.2, 1.6) if rng.random() < 0.7 else rng.uniform(1.6, 2.0)
        if kind == "new":
            fu = _fill(fu, m, rng, contrast, added)
            new |= m
        elif kind == "stable":
            bl = _fill(bl, m, rng, contrast)
            fu = _fill(fu, m, rng, contrast * rng.uniform(0.93, 1.07))
        else:  # shrinking / disappearing: bright at baseline only (or much smaller at follow-up)
            bl = _fill(bl, m, rng, contrast)
            shown = np.zeros_like(m)
            if rng.random() < 0.5:
                shown = ndi.binary_erosion(m, iterations=2)
                fu = _fill(fu, shown, rng, contrast)
        if fu_lesions is not None:
            fu_lesions.setdefault("mask", src.lesions.copy())
            fu_lesions["mask"] |= shown
    # enlarging: grow some existing lesions of the real brain at follow-up
    if n:
        for i in rng.permutation(n)[: rng.choice([0, 1, 2, 3], p=[0.4, 0.3, 0.2, 0.1])] + 1:
            if int(i) in inpainted:
                continue
            sl = objs[i - 1]
            sl = tuple(slice(max(0, s.start - 8), s.stop + 8) for s in sl)
            comp = lab[sl] == i
            if comp.sum() < 10:
                continue
            grown = ndi.binary_dilation(comp, iterations=int(rng.integers(2, 5)))
            half = np.argwhere(grown)
            d = rng.normal(size=3)
            keep = ((half - half.mean(0)) @ d) > rng.uniform(-0.5, 0.5) * np.abs(half - half.mean(0)).max()
            g = np.zeros_like(grown)
            g[tuple(half[keep].T)] = True
            add = g & ~comp & src.mask[sl]
            if add.sum() < 8:
                continue
            region = np.zeros(src.mask.shape, bool)
            region[sl] = add
            level = float(np.median(src.image[sl][comp]))
            fu = _fill(fu, region, rng, max(level, 1.3), added)
            new |= region
    # existing lesions: slight intensity variation, never labelled
    if src.lesions.any():
        f = rng.uniform(0.95, 1.05)
        fu = np.where(src.lesions, fu * f, fu)
    if fu_lesions is not None:
        fu_lesions["mask"] = fu_lesions.get("mask", src.lesions) | new
    return bl, fu, new, added


def _rotation(rng: np.random.Generator, deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", rng.normal(scale=deg, size=3), degrees=True).as_matrix()


def acquire(vol: np.ndarray, rng: np.random.Generator, thick: float, rot: np.ndarray, shift: np.ndarray,
            inplane: float = 1.0):
    """Simulate a thick-slice 2D acquisition: slice-profile blur along z, then sample a rotated grid.

    Returns (image, grid->1mm affine (4x4)) where grid index (i, j, k) has spacing (inplane, inplane, thick).
    """
    blurred = ndi.gaussian_filter1d(vol, sigma=thick / 2.355, axis=2)
    if inplane > 1.0:
        blurred = ndi.gaussian_filter(blurred, sigma=(0.4 * inplane, 0.4 * inplane, 0))
    centre = (np.asarray(vol.shape) - 1) / 2.0
    spacing = np.array([inplane, inplane, thick])
    shape = np.maximum(1, np.floor(np.asarray(vol.shape) / spacing)).astype(int)
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(spacing)
    aff[:3, 3] = centre + shift - aff[:3, :3] @ ((shape - 1) / 2.0)
    coords = _coords(aff, shape)
    return ndi.map_coordinates(blurred, coords, order=1, mode="constant").reshape(shape), aff, shape


def _coords(aff: np.ndarray, shape) -> np.ndarray:
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    return (aff[:3, :3] @ idx + aff[:3, 3:4]).astype(np.float32)


def _contrast_curve(img: np.ndarray, rng: np.random.Generator, top: float = 4.0) -> np.ndarray:
    """A random monotone intensity curve: another scanner's grey/white/CSF contrast (piecewise linear, constant
    above ``top``)."""
    knots = np.array([0.0, 0.4, 0.8, 1.0, 1.3, 1.8, top])
    # random positive slope per segment: contrast between tissues changes but never collapses
    slopes = np.clip(1 + rng.normal(scale=0.15, size=knots.size - 1), 0.6, 1.6)
    values = np.concatenate([[0.0], np.cumsum(np.diff(knots) * slopes)])
    return np.interp(img, knots, values).astype(np.float32)


def _bias(rng: np.random.Generator, shape, strength: float) -> np.ndarray:
    """Smooth multiplicative bias field: exp of a random quadratic polynomial of position."""
    x, y, z = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    x, y, z = x[:, None, None], y[None, :, None], z[None, None, :]
    terms = [x, y, z, x * x, y * y, z * z, x * y, x * z, y * z]
    field = sum(float(c) * t for c, t in zip(rng.normal(size=len(terms)), terms))
    field = field / (np.abs(field).max() + 1e-6)
    return np.exp(strength * field).astype(np.float32)


def cortical_ribbon(src: Source, depth_mm: float = 5.0) -> np.ndarray:
    """Soft weight (0..1) of the outer ``depth_mm`` of the brain where it is tissue, not CSF or lesion."""
    if src.ribbon is None:
        outer = src.mask & (ndi.distance_transform_edt(src.mask) <= depth_mm) & (src.image > 0.6) & ~src.lesions
        src.ribbon = np.clip(ndi.gaussian_filter(outer.astype(np.float32), 1.0) * 1.5, 0, 1).astype(np.float16)
    return src.ribbon


def make_pair(src: Source, rng: np.random.Generator, shapes: list[np.ndarray], visible_change: float | None = None,
              ribbon_gain: float | None = None, slice_mm: float | None = None, real_as_new: float | None = None,
              all_lesions: bool = False, t2: bool = False) -> dict:
    """One synthetic (baseline, follow-up, label, mask) on a baseline working grid (1 mm x 1 mm x thick).

    ``slice_mm``: the working grid has this slice spacing instead of the baseline's (the predictor's
    ``slice_mm``); both visits are then interpolated onto it, and each visit's contrast, bias field and
    noise are applied on its own acquisition grid first (noise is correlated along z, as in real data).

    ``visible_change``: a voxel is also labelled new where the slice-blurred lesion fraction is only
    > 0.2 but the follow-up is brighter by at least this much (x median brain); without it thin and
    small lesions, diluted below 40 % by thick slices yet still visible, would be taught as negatives.
    ``ribbon_gain``: with probability 0.6 the follow-up's cortical ribbon is scaled by a factor between
    1 - gain/2 and 1 + gain (before acquisition): a scanner change alters grey-matter FLAIR contrast as a
    whole, which a global intensity curve cannot mimic and the detector must learn to ignore.
    ``real_as_new``: see insert_lesions (real lesions inpainted out of the baseline, labelled new).
    ``all_lesions``: also return "all_lesions", every lesion the follow-up shows on the working grid (the
    auxiliary single-visit segmentation target; no random draws, so the pair is the same with or without it).
    ``t2``: also return "bl_t2" and "fu_t2" when the source has a T2-weighted image (see _acquire_t2); drawn after
    everything else, so the FLAIR pair is the same with or without them.
    """
    shown: dict | None = {} if all_lesions else None
    bl1, fu1, new1, added1 = insert_lesions(src, rng, shapes, real_as_new, shown)
    fu_lesioned = fu1  # before the ribbon gain (a FLAIR-only scanner effect): the T2W follow-up's lesions
    if ribbon_gain and rng.random() < 0.6:
        w = cortical_ribbon(src).astype(np.float32)
        fu1 = fu1 * (1 + rng.uniform(-0.5 * ribbon_gain, ribbon_gain) * w)
    t_bl = float(rng.choice([rng.uniform(2.5, 5.0), rng.uniform(1.5, 2.5)], p=[0.85, 0.15]))
    t_fu = float(rng.choice([rng.uniform(2.5, 5.0), rng.uniform(1.0, 2.5)], p=[0.8, 0.2]))
    rot_bl = _rotation(rng, 2.0)
    shift_bl = rng.normal(scale=2.0, size=3)
    bl_acq, aff_acq, shape_acq = acquire(bl1, rng, t_bl, rot_bl, shift_bl)
    if slice_mm is None:
        bl, aff_bl, shape_bl, work_z = bl_acq, aff_acq, shape_acq, t_bl
    else:  # working grid: the baseline acquisition's planes and extent, slices every slice_mm
        work_z = float(slice_mm)
        shape_bl = (int(shape_acq[0]), int(shape_acq[1]), int((shape_acq[2] - 1) * t_bl / work_z) + 1)
        work_to_acq = np.diag([1.0, 1.0, work_z / t_bl, 1.0])
        aff_bl = aff_acq @ work_to_acq
        bl = ndi.map_coordinates(_scanner(bl_acq, rng), _coords(work_to_acq, shape_bl), order=1,
                                 mode="nearest").reshape(shape_bl)
    mask = ndi.map_coordinates(src.mask.astype(np.float32), _coords(aff_bl, shape_bl), order=1).reshape(shape_bl) > 0.5
    # follow-up: own rotation / offset / slice thickness, acquired and then resampled onto the baseline grid
    rot_fu = _rotation(rng, 4.0)
    fu_inplane = float(rng.uniform(0.8, 1.3))
    shift_fu = rng.normal(scale=3.0, size=3)
    fu_acq, aff_fu, shape_fu = acquire(fu1, rng, t_fu, rot_fu, shift_fu, fu_inplane)
    fu_coords = _coords(aff_fu, shape_fu)
    blurred_new = ndi.gaussian_filter1d(new1.astype(np.float32), sigma=t_fu / 2.355, axis=2)
    new_acq = ndi.map_coordinates(blurred_new, fu_coords, order=1).reshape(shape_fu)
    added_acq = None if visible_change is None else ndi.map_coordinates(
        ndi.gaussian_filter1d(added1, sigma=t_fu / 2.355, axis=2), fu_coords, order=1).reshape(shape_fu)
    # residual misregistration: baseline grid -> 1mm -> (perturbed) -> follow-up grid
    err = np.eye(4)
    err[:3, :3] = _rotation(rng, 0.5) @ np.diag(1 + rng.normal(scale=0.008, size=3))
    err[:3, 3] = rng.normal(scale=0.5, size=3)
    centre = np.eye(4)
    centre[:3, 3] = (np.asarray(src.mask.shape) - 1) / 2
    err = centre @ err @ np.linalg.inv(centre)
    bl_to_fu = np.linalg.inv(aff_fu) @ err @ aff_bl
    coords = _coords(bl_to_fu, shape_bl)
    if slice_mm is not None:
        fu_acq = _scanner(fu_acq, rng)
    fu = ndi.map_coordinates(fu_acq, coords, order=1).reshape(shape_bl)
    label_frac = ndi.map_coordinates(new_acq, coords, order=1).reshape(shape_bl)
    label = label_frac > 0.4
    if visible_change is not None:
        label |= (label_frac > 0.2) & (ndi.map_coordinates(added_acq, coords, order=1).reshape(shape_bl)
                                       >= visible_change)
    label &= mask
    if all_lesions:
        blurred = ndi.gaussian_filter1d(shown["mask"].astype(np.float32), sigma=t_fu / 2.355, axis=2)
        acq = ndi.map_coordinates(blurred, fu_coords, order=1).reshape(shape_fu)
        all_lab = (ndi.map_coordinates(acq, coords, order=1).reshape(shape_bl) > 0.4) & mask
    # contrast, bias field and noise differ between visits (different scanners / protocols)
    out = {}
    for key, img in (("bl", bl), ("fu", fu)):
        if slice_mm is None:  # the shipped model's recipe: scanner effects on the working grid
            img = _scanner(img, rng)
        out[key] = normalise(img, mask) * mask
    out["fu"] = harmonise_followup(out["bl"], out["fu"], mask, (1.0, 1.0, work_z))
    out["bl"], out["fu"] = out["bl"].astype(np.float16), out["fu"].astype(np.float16)
    if t2 and src.t2 is not None:
        k = rng.uniform(0.5, 1.5)  # a lesion's T2W brightening relative to its FLAIR one varies
        on_acq = slice_mm is not None  # scanner effects where FLAIR's were: acquisition grid, else working grid
        t2_bl = _acquire_t2(src, bl1, k, rng, t_bl, rot_bl, shift_bl, 1.0, on_acq)
        t2_fu = _acquire_t2(src, fu_lesioned, k, rng, t_fu, rot_fu, shift_fu, fu_inplane, on_acq)
        if on_acq:
            t2_bl = ndi.map_coordinates(t2_bl, _coords(work_to_acq, shape_bl), order=1, mode="nearest").reshape(shape_bl)
        t2_fu = ndi.map_coordinates(t2_fu, coords, order=1).reshape(shape_bl)  # FLAIR's bl_to_fu mapping
        for key, img in (("bl_t2", t2_bl), ("fu_t2", t2_fu)):
            if not on_acq:
                img = _scanner(img, rng, extend=True)
            out[key] = normalise(img, mask) * mask
        out["fu_t2"] = harmonise_followup(out["bl_t2"], out["fu_t2"], mask, (1.0, 1.0, work_z))
        out["bl_t2"], out["fu_t2"] = out["bl_t2"].astype(np.float16), out["fu_t2"].astype(np.float16)
    out["label"] = label
    if all_lesions:
        out["all_lesions"] = all_lab | label
    out["mask"] = mask
    out["spacing"] = np.array([1.0, 1.0, work_z])
    return out


def _acquire_t2(src: Source, visit: np.ndarray, k: float, rng: np.random.Generator, thick: float, rot: np.ndarray,
                shift: np.ndarray, inplane: float, scanner: bool) -> np.ndarray:
    """One visit's T2W acquisition: the brain's T2W image with that visit's inserted lesions (its FLAIR change
    ``visit - src.image`` times ``k``: the same shapes, borders and texture; the brain's own lesions are already in
    it), acquired with the visit's FLAIR slice planning after a small same-session head movement (~0.5 deg, 0.5 mm
    about the volume centre); with ``scanner``, its own scanner effects on the acquisition grid."""
    vol = np.clip(src.t2 + k * (visit - src.image), 0, None)
    move = _rotation(rng, 0.5)
    img = acquire(vol, rng, thick, move @ rot, move @ shift + rng.normal(scale=0.5, size=3), inplane)[0]
    return _scanner(img, rng, extend=True) if scanner else img


def _scanner(img: np.ndarray, rng: np.random.Generator, extend: bool = False) -> np.ndarray:
    """One visit's scanner: random gamma and contrast curve, bias field, noise. ``extend``: the curve's last
    segment runs on to the image's maximum instead of clamping at 4 (T2W CSF reaches 4.4 x the median brain,
    7 after gamma; FLAIR stays well below 4)."""
    img = np.clip(img, 0, None) ** rng.uniform(0.75, 1.35)
    img = _contrast_curve(img, rng, max(4.0, float(img.max())) if extend else 4.0)
    img = img * _bias(rng, img.shape, rng.uniform(0.0, 0.2))
    return img + rng.normal(scale=rng.uniform(0.01, 0.06), size=img.shape).astype(np.float32)
