"""Lesion features on a phantom with known geometry (template priors given, no registration)."""

import numpy as np
import pytest
import SimpleITK as sitk

from pmlseg.characterise import characterise_lesions
from pmlseg.characterise.location import TemplatePriors, infratentorial_region, lobe
from pmlseg.errors import PmlsegError

SP = (1.0, 1.0, 2.0)  # x, y, z mm


def _img(a):
    im = sitk.GetImageFromArray(a.astype(np.float32) if a.dtype != np.int32 else a)
    im.SetSpacing(SP)
    return im


def _phantom():
    shape = (30, 80, 80)  # z, y, x
    zz, yy, xx = np.indices(shape)
    r = np.sqrt(((zz - 15) * 2.0) ** 2 + (yy - 40) ** 2 + (xx - 30) ** 2)
    lab = (r <= 6).astype(np.int32)
    rng = np.random.default_rng(1)
    bl = 100 + 2 * rng.standard_normal(shape)
    fu = bl.copy()
    fu[lab > 0] += 100
    for cy, cx in ((40, 46), (52, 30), (28, 30)):  # three punctate specks 10-12 mm from the lesion surface
        fu[15, cy - 1:cy + 2, cx - 1:cx + 2] += 100
    wm = np.ones(shape, np.float32)
    gm = np.zeros(shape, np.float32)
    wm[:, :, 70:] = 0
    gm[:, :, 70:] = 1
    brain = np.ones(shape, np.uint8)
    priors = TemplatePriors(gm=_img(gm), wm=_img(wm), csf=_img(np.zeros(shape)), brain=_img(brain),
                            to_mni=sitk.AffineTransform(3))
    return _img(lab), {"flair_bl": _img(bl), "flair_fu": _img(fu)}, priors


def test_geometry_satellites_and_signal():
    labels, images, priors = _phantom()
    (f,) = characterise_lesions(labels, images, priors=priors)
    true_vol = float((sitk.GetArrayFromImage(labels) > 0).sum() * 2.0)
    assert f["volume_mm3"] == pytest.approx(true_vol)
    assert 11.0 <= f["max_diameter_mm"] <= 15.0
    assert f["solidity"] > 0.75 and f["sphericity"] > 0.8
    assert f["satellites"] == 3
    assert f["new_or_enlarging"] == "new" and not f["juxtacortical"] and f["location"] == "deep_white_matter"
    assert f["t1_ratio"] is None and f["border_sharpness_wm"] > 0.2
    # the same lesion with a 3 mm blurred edge reads as less sharp
    from scipy import ndimage as ndi

    fu = sitk.GetArrayFromImage(images["flair_fu"])
    lab = sitk.GetArrayFromImage(labels) > 0
    soft = ndi.gaussian_filter(lab.astype(np.float32), (1.5, 3.0, 3.0))
    fu_blur = fu - 100 * lab + 100 * soft / soft.max()  # same lesion, no step at its edge
    (g,) = characterise_lesions(labels, {**images, "flair_fu": _img(fu_blur)}, priors=priors)
    assert g["border_sharpness_wm"] < 0.75 * f["border_sharpness_wm"], (g["border_sharpness_wm"], f["border_sharpness_wm"])


def test_bad_inputs_are_refused():
    labels, images, priors = _phantom()
    with pytest.raises(PmlsegError, match="flair_fu"):
        characterise_lesions(labels, {"flair_bl": images["flair_bl"]}, priors=priors)
    other = sitk.Image(10, 10, 10, sitk.sitkFloat32)
    with pytest.raises(PmlsegError, match="t1_fu: not on the lesion label map's grid"):
        characterise_lesions(labels, {**images, "t1_fu": other}, priors=priors)


def test_mni_region_rules():
    assert lobe(-30, 30, 30) == "frontal" and lobe(35, -55, 45) == "parietal"
    assert lobe(20, -85, 10) == "occipital" and lobe(-50, -20, -15) == "temporal"
    assert infratentorial_region(18, -45, -32) == "middle_cerebellar_peduncle"
    assert infratentorial_region(0, -28, -30) == "brainstem" and infratentorial_region(-30, -70, -40) == "cerebellum"
    assert infratentorial_region(-30, 20, 30) is None


def test_unmeasurable_features_are_none_not_a_default():
    labels, images, priors = _phantom()  # no ventricles (template CSF empty), no DWI, no T1
    (f,) = characterise_lesions(labels, images, priors=priors)
    for key in ("ventricle_contact", "ventricle_alignment", "dist_ventricle_mm", "dwi_rim_core", "t1_ratio",
                "growth_ml_per_month"):
        assert f[key] is None, key
    assert f["cortex_contact"] == 0.0 and f["elongation"] < 1.3  # a sphere far from the GM block


def _ventricle_phantom(long_axis: str):
    """A dark ventricle slab (x 10-19 mm) and an elongated lesion touching it, its long axis along x
    (perpendicular to the wall) or along y (parallel to it)."""
    labels, images, priors = _phantom()
    shape = sitk.GetArrayFromImage(labels).shape
    zz, yy, xx = np.indices(shape)
    vent = (xx >= 10) & (xx < 20) & (yy >= 15) & (yy < 65) & (zz >= 5) & (zz < 25)
    rx, ry = (9.0, 3.0) if long_axis == "x" else (3.0, 9.0)
    cx = 20 + rx
    lab = ((((xx - cx) / rx) ** 2 + ((yy - 40) / ry) ** 2 + (((zz - 15) * 2.0) / 4.0) ** 2) <= 1).astype(np.int32)
    bl = sitk.GetArrayFromImage(images["flair_bl"]).copy()
    bl[vent] = 20
    fu = bl.copy()
    fu[lab > 0] += 100
    csf = vent.astype(np.float32)
    wm = sitk.GetArrayFromImage(priors.wm) * (1 - csf)
    priors = type(priors)(gm=priors.gm, wm=_img(wm), csf=_img(csf), brain=priors.brain, to_mni=priors.to_mni)
    return _img(lab), {"flair_bl": _img(bl), "flair_fu": _img(fu)}, priors


def test_ventricle_contact_and_dawson_orientation():
    lab, imgs, pri = _ventricle_phantom("x")
    (perp,) = characterise_lesions(lab, imgs, priors=pri)
    lab, imgs, pri = _ventricle_phantom("y")
    (para,) = characterise_lesions(lab, imgs, priors=pri)
    assert perp["elongation"] > 2.0 and para["elongation"] > 2.0
    assert perp["ventricle_alignment"] > 0.9 and para["ventricle_alignment"] < 0.3
    assert 0.01 < perp["ventricle_contact"] < para["ventricle_contact"]  # the parallel one lies along the wall


def test_dwi_rim_versus_core():
    labels, images, priors = _phantom()
    lab = sitk.GetArrayFromImage(labels) > 0
    from scipy import ndimage as ndi

    depth = ndi.distance_transform_edt(lab, sampling=(2.0, 1.0, 1.0))
    uniform = 100 + 30 * lab
    rim = uniform + 40 * (lab & (depth <= 2.0))
    (u,) = characterise_lesions(labels, {**images, "dwi_fu": _img(uniform)}, priors=priors)
    (r,) = characterise_lesions(labels, {**images, "dwi_fu": _img(rim)}, priors=priors)
    assert u["dwi_rim_core"] == pytest.approx(1.0, abs=0.02) and r["dwi_rim_core"] > 1.25


def test_cropped_computations_give_the_whole_volume_values():
    """The per-lesion shortcuts (gradient on a lesion box, cortex prior of a region, viewer crop box by axis
    projections) give exactly what the whole-volume computation gives there, also at the volume's edge."""
    from pmlseg.characterise import features, location
    from pmlseg.report.viewer import crop_box
    from scipy import ndimage

    rng = np.random.default_rng(3)
    a = rng.standard_normal((20, 40, 50)).astype(np.float32)
    sp = np.array([2.0, 1.0, 1.0])
    whole = np.sqrt(sum(np.gradient(ndimage.gaussian_filter(a, 0.7), sp[ax], axis=ax) ** 2 for ax in (1, 2)))
    for box in ((slice(5, 12), slice(10, 30), slice(20, 35)), (slice(0, 4), slice(35, 40), slice(0, 50))):
        assert np.array_equal(features._inplane_gradient(a, sp, box), whole[box])
    gm = sitk.GetImageFromArray((rng.random((20, 40, 50)) > 0.5).astype(np.float32))
    gm.SetSpacing(SP)
    gm.SetOrigin((-25.0, -20.0, -20.0))
    priors = TemplatePriors(gm=gm, wm=gm, csf=gm, brain=gm, to_mni=sitk.AffineTransform(3))
    full = location.cortex_prior(priors, gm)
    assert full.any() and not full.all()  # the deep-grey box takes out some of the GM
    region = (slice(3, 18), slice(0, 22), slice(30, 50))
    assert np.array_equal(location.cortex_prior(priors, gm, region=region), full[region])
    mask = np.zeros((20, 40, 50), np.uint8)
    mask[4:9, 11:30, 2:7] = 1
    mask[15, 35, 44] = 1
    idx = np.argwhere(mask)[:, ::-1]
    margin = np.array([10, 10, 1])
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, [50, 40, 20])
    assert crop_box(gm, _img(mask)) == (lo.tolist(), (hi - lo).tolist())
