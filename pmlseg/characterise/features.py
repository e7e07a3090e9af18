"""Per-lesion measurements that the PML rules read (size, shape, location, border, signal, satellites,
mass effect).  Every number is computed from the label map and images on the rebaseline grid; the
methods are documented in docs/pml_score.md so a reader can judge them.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from pmlseg.characterise import location as loc
from pmlseg.errors import PmlsegError

log = logging.getLogger(__name__)

SATELLITE_RADIUS_MM = 20.0
SATELLITE_MAX_MM3 = 60.0
MASS_RING_MM = 15.0
CONTACT_RING_MM = 2.5     # ring in which cortex / ventricle contact is read (partial volume at 1-4 mm voxels)
DAWSON_MAX_DIST_MM = 10.0  # orientation to the ventricles is read only for lesions this close to them
DAWSON_MIN_ELONGATION = 1.4  # ... and only when the lesion has a main axis (major/second axis length)
DWI_RIM_MM = 2.0          # DWI rim: lesion voxels within 2 mm of its border; core: deeper than 3 mm
DWI_CORE_MM = 3.0
SHARPNESS_MIN_MM3 = 100.0  # below ~6 mm across the border band is the whole lesion: sharpness is not measurable


def _arr(img: sitk.Image) -> np.ndarray:
    """Read-only float32 view (a copy only for another pixel type): the volumes are only read here."""
    return np.asarray(sitk.GetArrayViewFromImage(img), np.float32)


def _check_same_grid(ref: sitk.Image, img: sitk.Image, name: str) -> None:
    if (img.GetSize() != ref.GetSize() or not np.allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-3)
            or not np.allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-2)):
        raise PmlsegError(f"{name}: not on the lesion label map's grid (resample it to the rebaseline first)")


def _dilate(m: np.ndarray, sp, r_mm: float) -> np.ndarray:
    """Dilation by a ball of r_mm via a distance transform (fast for large radii, anisotropic voxels).

    The transform runs on ``m``'s bounding box grown by the radius (the same voxels: nothing farther
    can be reached), not on the whole volume: a few lesions in a 10^7-voxel image."""
    if not m.any() or m.all():
        return m.copy()
    idx = np.argwhere(m)
    pad = np.ceil(r_mm / np.asarray(sp, float)).astype(int) + 1
    lo, hi = np.maximum(idx.min(0) - pad, 0), np.minimum(idx.max(0) + pad + 1, m.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    out = np.zeros(m.shape, bool)
    out[box] = ndi.distance_transform_edt(~m[box], sampling=sp) <= r_mm
    return out


def _erode(m: np.ndarray, sp, r_mm: float) -> np.ndarray:
    return ~_dilate(~m, sp, r_mm)


GRADIENT_REACH = 4  # voxels: gaussian_filter's radius at sigma 0.7 (truncate 4) + 1 for the central difference


def _inplane_gradient(a: np.ndarray, sp, box: tuple) -> np.ndarray:
    """Gradient magnitude in the two finest axes only (thick-slice partial volume would blur the third),
    on ``box`` of ``a``: computed on the box grown by GRADIENT_REACH, which gives the whole-volume values
    there without filtering the whole volume for a few lesions."""
    big = tuple(slice(max(0, s.start - GRADIENT_REACH), min(n, s.stop + GRADIENT_REACH)) for s, n in zip(box, a.shape))
    axes = np.argsort(sp)[:2]
    g = [np.gradient(ndi.gaussian_filter(a[big], 0.7), sp[ax], axis=ax) for ax in axes]
    inner = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(box, big))
    return np.sqrt(g[0] ** 2 + g[1] ** 2)[inner]


def _diameter(idx: np.ndarray, sp) -> float:
    pts = idx * sp
    if len(pts) < 2:
        return float(max(sp))
    if len(pts) > 4:
        try:
            from scipy.spatial import ConvexHull

            pts = pts[ConvexHull(pts).vertices]
        except Exception:  # flat lesion (one slice): fall back to all points
            pass
    if len(pts) > 3000:
        pts = pts[np.random.default_rng(0).choice(len(pts), 3000, replace=False)]
    from scipy.spatial.distance import pdist

    return float(pdist(pts).max() + np.min(sp))  # + one voxel: centres underestimate extent


def _shape(mask: np.ndarray, sp) -> dict:
    """Solidity (voxels / voxels inside the convex hull, as skimage regionprops; in-plane for a lesion on
    one slice) and sphericity (pi^(1/3) (6V)^(2/3) / A, area from marching cubes).  None where undefined
    (a line of voxels): a default value would move the PML score."""
    from skimage.measure import marching_cubes, mesh_surface_area
    from skimage.morphology import convex_hull_image

    vol = mask.sum() * float(np.prod(sp))
    sl = ndi.find_objects(mask.astype(np.uint8))[0]
    flat = np.squeeze(mask[sl])
    solidity = None
    if flat.ndim >= 2:
        try:
            sub = np.pad(flat, 1)
            solidity = min(1.0, float(sub.sum() / max(convex_hull_image(sub).sum(), 1)))
        except Exception:  # degenerate hull (qhull): leave it undefined
            solidity = None
    padded = np.pad(mask, 2).astype(np.float32)
    try:
        verts, faces, _, _ = marching_cubes(ndi.gaussian_filter(padded, 0.5), 0.5, spacing=tuple(sp))
        area = mesh_surface_area(verts, faces)
        sph = float(min(1.0, np.pi ** (1 / 3) * (6 * vol) ** (2 / 3) / area)) if area > 0 else None
    except Exception:
        sph = None
    return {"solidity": solidity, "sphericity": sph}


# features that need the template fit (location priors) or an optional image, for missing_features
TEMPLATE_FEATURES = ("centroid_mni", "gm_fraction_in_lesion", "cortical_contact", "dist_ventricle_mm",
                     "infratentorial_region", "periventricular", "juxtacortical", "location", "lobe", "hemisphere",
                     "border_sharpness_wm", "border_sharpness_cortical", "cortex_contact", "ventricle_contact",
                     "ventricle_alignment", "elongation")
IMAGE_FEATURES = {"t1_fu": ("t1_ratio",), "dwi_fu": ("dwi_ratio",), "t2_fu": ("t2_ratio",),
                  "t1ce_fu": ("enhancing_fraction",)}
IMAGE_NAMES = {"t1_fu": "follow-up T1w", "dwi_fu": "follow-up DWI", "t2_fu": "follow-up T2w",
               "t1ce_fu": "follow-up post-contrast T1w"}


def missing_inputs(images: dict, unavailable: dict[str, str] | None, priors) -> dict[str, str]:
    """feature -> why it is NA: an optional image not given or failing its registration QC (``unavailable``),
    or the template fit failing its QC."""
    out = {}
    for key, feats in IMAGE_FEATURES.items():
        if images.get(key) is None:
            why = (unavailable or {}).get(key) or f"no {IMAGE_NAMES[key]}"
            out.update({f: why for f in feats})
    if priors.qc is not None and not priors.qc.passed:
        out.update({f: f"template registration failed QC ({priors.qc.reason})" for f in TEMPLATE_FEATURES})
    return out


def _orientation(idx_mm: np.ndarray, centroid_mm: np.ndarray, vent_tree, vent_pts: np.ndarray,
                 dist_vent_mm: float) -> tuple[float | None, float | None]:
    """(elongation, alignment): main-axis/second-axis length of the lesion (PCA of its voxel centres, mm)
    and |cos| of the angle between its main axis and the direction from the nearest ventricle voxel to
    its centroid (1 = perpendicular to the ventricle wall, as Dawson's fingers).  Alignment is None
    (not measurable) far from the ventricles or for a lesion without a main axis."""
    if len(idx_mm) < 10:
        return None, None
    evals, evecs = np.linalg.eigh(np.cov((idx_mm - centroid_mm).T))
    evals = np.maximum(evals, 1e-6)
    elong = float(np.sqrt(evals[2] / evals[1]))
    if vent_tree is None or dist_vent_mm > DAWSON_MAX_DIST_MM or elong < DAWSON_MIN_ELONGATION:
        return elong, None
    _, j = vent_tree.query(centroid_mm)
    radial = centroid_mm - vent_pts[j]
    n = np.linalg.norm(radial)
    if n < 1.0:  # centroid on the ventricle wall: no direction
        return elong, None
    return elong, float(abs(evecs[:, 2] @ radial) / n)


def characterise_lesions(labels: sitk.Image, images: dict[str, sitk.Image], brain_mask: sitk.Image | None = None,
                         baseline_labels_prev: sitk.Image | None = None,
                         priors: loc.TemplatePriors | None = None, lesion_ids=None,
                         growth_ml_per_month: dict | None = None,
                         unavailable: dict[str, str] | None = None) -> list[dict]:
    """One dict of features per label value (1..N) of ``labels``; see docs/pml_score.md for each key.

    ``images`` are on the label grid: 'flair_bl', 'flair_fu' required; 't1_fu', 't1ce_fu', 'dwi_fu',
    't2_fu' optional.  ``priors`` (template registration) is computed from 'flair_bl' when not given;
    when its QC failed, the location features are None.  ``unavailable``: optional image -> why it is
    missing (e.g. its registration failed QC).  Every lesion gets ``missing_features`` ('feature: why; ...').
    ``lesion_ids``: characterise only these labels (the others still count as lesions for the references).
    ``growth_ml_per_month``: lesion id -> growth from lesion tracking, where a curve exists.
    A feature that cannot be measured (missing image, no ventricle found, lesion too small) is None.
    """
    for key in ("flair_bl", "flair_fu"):
        if key not in images:
            raise PmlsegError(f"characterise_lesions: image '{key}' is required")
    for key, img in images.items():
        if img is not None:
            _check_same_grid(labels, img, key)
    lab = sitk.GetArrayFromImage(labels).astype(np.int32)
    sp = np.array(labels.GetSpacing())[::-1]  # z, y, x
    vox = float(np.prod(sp))
    if priors is None:
        priors = loc.register_to_template(images["flair_bl"])
    placed = priors.qc is None or priors.qc.passed  # the template priors may be used
    missing = missing_inputs(images, unavailable, priors)
    if brain_mask is None and not placed:
        from pmlseg.registration.preprocess import brain_mask as subject_brain_mask

        brain_mask = subject_brain_mask(images["flair_bl"], "FLAIR", name="rebaseline FLAIR")
    brain = (_arr(brain_mask) > 0) if brain_mask is not None else (_arr(priors.brain) > 0)
    gm, wm, csf = _arr(priors.gm), _arr(priors.wm), _arr(priors.csf)
    if not placed:
        wm = np.zeros_like(wm)  # normal-appearing WM falls back to the whole brain below
    anylesion = lab > 0

    # intensity references: normal-appearing WM (template WM > 0.9, no lesion within 3 mm)
    near_lesion = _dilate(anylesion, sp, 3.0)
    nawm = (wm > 0.9) & brain & ~near_lesion
    if nawm.sum() < 100:
        nawm = brain & ~near_lesion
    imgs = {k: _arr(v) for k, v in images.items() if v is not None}
    ref = {k: float(np.median(a[nawm])) or 1.0 for k, a in imgs.items()}
    fl_bl, fl_fu = imgs["flair_bl"] / ref["flair_bl"], imgs["flair_fu"] / ref["flair_fu"]
    # CSF by signal on FLAIR (dark): for mass effect and for ventricles
    csf_bl, csf_fu = brain & (fl_bl < 0.45), brain & (fl_fu < 0.45)
    # whole-brain CSF ratio: scanner/protocol change and atrophy shift every ring alike, so divide it out
    global_csf_ratio = float(csf_fu.sum()) / max(float(csf_bl.sum()), 1.0)
    vent = loc.ventricle_prior(priors, labels) if placed else np.zeros(lab.shape, bool)
    vent = _dilate(vent, sp, 4.0) & csf_bl
    vent_tree, vent_pts = None, np.zeros((0, 3))
    if vent.any():
        from scipy.spatial import cKDTree

        vent_pts = np.argwhere(vent) * sp
        vent_tree = cKDTree(vent_pts)
    # punctate candidates: new FLAIR-bright specks (follow-up bright and brighter than baseline)
    speck = brain & (fl_fu > 1.5) & (fl_fu - fl_bl > 0.4)
    speck_lab, _ = ndi.label(speck)
    speck_sizes = np.bincount(speck_lab.ravel()) * vox
    speck_touches_lesion = np.bincount(speck_lab[anylesion], minlength=len(speck_sizes)) > 0
    sizes_lab = np.bincount(lab.ravel())
    prev = sitk.GetArrayFromImage(baseline_labels_prev) > 0 if baseline_labels_prev is not None else None

    feats = []
    objects = ndi.find_objects(lab)
    wanted = None if lesion_ids is None else {int(i) for i in lesion_ids}
    for lid, sl in enumerate(objects, start=1):
        if sl is None or (wanted is not None and lid not in wanted):
            continue
        pad = [int(np.ceil((SATELLITE_RADIUS_MM + 3) / s)) for s in sp]
        box = tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(sl, pad, lab.shape))
        m = lab[box] == lid
        idx = np.argwhere(m)
        gidx = idx + np.array([b.start for b in box])
        vol = float(m.sum() * vox)
        cen_idx = gidx.mean(axis=0)
        phys = labels.TransformContinuousIndexToPhysicalPoint(cen_idx[::-1].tolist())
        mni = loc.lps_to_ras(priors.to_mni.TransformPoint(phys))
        f: dict = {"lesion_id": lid, "volume_mm3": round(vol, 1), "centroid_mm": [round(v, 1) for v in phys],
                   "centroid_mni": [round(v, 1) for v in mni]}
        f["max_diameter_mm"] = round(_diameter(idx, sp), 1)
        f.update({k: None if v is None else round(v, 3) for k, v in _shape(m, sp).items()})
        # location
        ring2 = _dilate(m, sp, 2.0) & ~m
        ring_c = _dilate(m, sp, CONTACT_RING_MM) & ~m
        gmb, wmb, csfb = gm[box], wm[box], csf[box]
        f["gm_fraction_in_lesion"] = round(float((gmb[m] > 0.5).mean()), 3)
        f["cortical_contact"] = round(float((gmb[ring2] > 0.5).mean()) if ring2.any() else 0.0, 3)
        # share of the lesion's border that touches cortex (GM) / ventricle (ventricular CSF)
        cortex = loc.cortex_prior(priors, labels, region=box) if placed else np.zeros(m.shape, bool)
        f["cortex_contact"] = round(float(cortex[ring_c].mean()), 3) if ring_c.any() else None
        f["ventricle_contact"] = (round(float(vent[box][ring_c].mean()), 3) if ring_c.any() and vent_tree is not None
                                  else None)
        # nearest ventricle voxel of any lesion voxel (exact Euclidean, as a distance transform of the whole
        # volume gave, at a fraction of its cost)
        f["dist_ventricle_mm"] = (round(float(vent_tree.query(gidx * sp)[0].min()), 1)
                                  if vent_tree is not None else None)
        cen_mm = cen_idx * sp
        elong, align = _orientation(gidx * sp, cen_mm, vent_tree, vent_pts,
                                    f["dist_ventricle_mm"] if f["dist_ventricle_mm"] is not None else 1e3)
        f["elongation"] = None if elong is None else round(elong, 3)
        f["ventricle_alignment"] = None if align is None else round(align, 3)
        region = loc.infratentorial_region(*mni)
        f["infratentorial_region"] = region
        f["periventricular"] = bool(f["dist_ventricle_mm"] is not None and f["dist_ventricle_mm"] <= 3.0)
        f["juxtacortical"] = bool(f["cortical_contact"] >= 0.15 or f["gm_fraction_in_lesion"] >= 0.2)
        if region:
            f["location"] = "infratentorial"
        elif f["juxtacortical"]:
            f["location"] = "juxtacortical"
        elif f["periventricular"]:
            f["location"] = "periventricular"
        else:
            f["location"] = "deep_white_matter"
        f["lobe"] = loc.lobe(*mni)
        f["hemisphere"] = loc.hemisphere(mni[0])
        # border sharpness per side: mean in-plane gradient on the boundary band / lesion contrast
        band = (_dilate(m, sp, 1.5) & ~_erode(m, sp, 1.0))
        bfl = fl_fu[box]
        outer = _dilate(m, sp, 4.0) & ~_dilate(m, sp, 1.5)
        far = _dilate(m, sp, 10.0) & ~_dilate(m, sp, 5.0) & ~(lab[box] > 0)  # background beyond any blur
        contrast = max(float(np.median(bfl[m]) - np.median(bfl[far])) if far.any() else 0.0, 0.05)
        f["flair_contrast"] = round(contrast, 3)
        # side of each band voxel: the nearest outer-shell voxel's tissue (GM/CSF -> cortical side)
        cort_out = outer & ((gmb + csfb) > wmb)
        wm_out = outer & ~cort_out
        grad_fu = None
        for side, tgt in (("wm", wm_out), ("cortical", cort_out)):
            if tgt.sum() < 3 or vol < SHARPNESS_MIN_MM3:
                f[f"border_sharpness_{side}"] = None
                continue
            d_t = ndi.distance_transform_edt(~tgt, sampling=sp)
            d_o = ndi.distance_transform_edt(~(outer & ~tgt), sampling=sp) if (outer & ~tgt).any() else np.full(m.shape, 1e3)
            sel = band & (d_t <= d_o)
            if grad_fu is None:
                grad_fu = _inplane_gradient(fl_fu, sp, box)
            f[f"border_sharpness_{side}"] = (round(float(grad_fu[sel].mean() / contrast), 3)
                                             if sel.sum() >= 3 else None)
        # signals relative to NAWM
        for key, name in (("t1_fu", "t1_ratio"), ("dwi_fu", "dwi_ratio"), ("t2_fu", "t2_ratio")):
            f[name] = round(float(np.median(imgs[key][box][m]) / ref[key]), 3) if key in imgs else None
        f["dwi_rim_core"] = None
        if "dwi_fu" in imgs:
            depth = ndi.distance_transform_edt(m, sampling=sp)
            rim, core = m & (depth <= DWI_RIM_MM), depth > DWI_CORE_MM
            if rim.sum() >= 5 and core.sum() >= 5:
                dwi = imgs["dwi_fu"][box]
                f["dwi_rim_core"] = round(float(np.median(dwi[rim]) / max(float(np.median(dwi[core])), 1e-6)), 3)
        if "t1ce_fu" in imgs:
            ce = imgs["t1ce_fu"][box] / ref["t1ce_fu"]
            pre = imgs["t1_fu"][box] / ref["t1_fu"] if "t1_fu" in imgs else np.ones_like(ce)
            f["enhancing_fraction"] = round(float(((ce - pre)[m] > 0.2).mean() if "t1_fu" in imgs else (ce[m] > 1.2).mean()), 3)
        else:
            f["enhancing_fraction"] = None
        # new vs enlarging
        if prev is not None:
            ov = float(prev[box][m].mean())
            f["new_or_enlarging"] = "enlarging" if ov > 0 else "new"
            f["previous_overlap"] = round(ov, 3)
        else:
            ov = float((fl_bl[box][m] > 1.35).mean())
            f["new_or_enlarging"] = "enlarging" if ov >= 0.2 else "new"
            f["previous_overlap"] = round(ov, 3)
        # satellites: other small new components within the radius (labels and FLAIR specks)
        near = _dilate(m, sp, SATELLITE_RADIUS_MM) & ~_dilate(m, sp, 2.0)
        sats = set()
        ol = lab[box]
        for other in np.unique(ol[near]):
            if other and other != lid and sizes_lab[other] * vox <= SATELLITE_MAX_MM3:
                sats.add(("l", int(other)))
        for s in np.unique(speck_lab[box][near]):
            if s and 3 <= speck_sizes[s] <= SATELLITE_MAX_MM3 and not speck_touches_lesion[s]:
                sats.add(("s", int(s)))
        f["satellites"] = len(sats)
        # mass effect: CSF in a ring around the lesion, follow-up vs baseline
        ring = _dilate(m, sp, MASS_RING_MM) & ~m
        cb, cf = float(csf_bl[box][ring].sum() * vox), float(csf_fu[box][ring].sum() * vox)
        f["csf_ring_bl_mm3"], f["csf_ring_fu_mm3"] = round(cb, 1), round(cf, 1)
        f["csf_change"] = round(cf / cb / max(global_csf_ratio, 1e-3) - 1.0, 3) if cb > 50 else None
        f["mass_effect"] = None if f["csf_change"] is None else bool(f["csf_change"] < -0.3)
        f["growth_ml_per_month"] = (None if not growth_ml_per_month or lid not in growth_ml_per_month
                                    else round(float(growth_ml_per_month[lid]), 3))
        gone = {**missing, **{k: "undefined for this lesion's shape" for k in ("solidity", "sphericity") if f[k] is None}}
        f.update({k: None for k in gone if k in f})
        f["missing_features"] = "; ".join(f"{k}: {why}" for k, why in gone.items())
        feats.append(f)
    return feats
