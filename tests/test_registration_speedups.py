"""The per-process speed-ups of registration change no result: the scipy closing equals ITK's, the
disk-cached brain-mask template equals a fresh build (and a damaged cache entry is rebuilt), and the
Gaussian that skips near-zero axes equals SimpleITK's, and QC scored on the mask's bounding box equals
the whole-volume score."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from pmlseg.diskcache import cached_images
from pmlseg.registration.affine import _binary_closing
from pmlseg.registration.grid import crop_to_mask, smooth
from pmlseg.registration.preprocess import _build_template, _template
from pmlseg.registration.qc import _gradient_agreement, _nmi, registration_qc


def test_closing_matches_itk_ball_kernel():
    rng = np.random.default_rng(3)
    blob = ndi.gaussian_filter(rng.random((20, 40, 44)), 2.0) > 0.52  # irregular shapes touching the border
    for radius in ((1, 2, 2), (2, 2, 2), (0, 3, 1)):
        ref = sitk.BinaryMorphologicalClosing(sitk.GetImageFromArray(blob.astype(np.uint8)), radius[::-1])
        ours = _binary_closing(blob, radius)
        assert ours.shape == blob.shape and ours.sum() > blob.sum()
        assert np.array_equal(ours, sitk.GetArrayViewFromImage(ref).astype(bool)), radius


def _same(a: sitk.Image, b: sitk.Image) -> bool:
    return (np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
            and a.GetOrigin() == b.GetOrigin() and a.GetSpacing() == b.GetSpacing()
            and a.GetDirection() == b.GetDirection() and a.GetPixelID() == b.GetPixelID())


def test_cached_template_equals_a_fresh_build(tmp_path, monkeypatch):
    monkeypatch.setenv("PMLSEG_CACHE_DIR", str(tmp_path))
    _template.cache_clear()
    try:
        first = _template("T2w")
        entries = sorted(p.name for p in tmp_path.iterdir())
        assert len(entries) == 3 and entries[-1].endswith(".count"), entries
        _template.cache_clear()
        second = _template("T2w")  # read back from disk
        fresh = _build_template("T2w", 2.0)
        assert all(_same(a, b) for a, b in zip(second, fresh)) and all(_same(a, b) for a, b in zip(first, fresh))
    finally:
        _template.cache_clear()


def test_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("PMLSEG_CACHE_DIR", str(tmp_path))
    calls = []
    img = sitk.GetImageFromArray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))

    def build():
        calls.append(1)
        return (img,)

    cached_images("probe", "k1", build)
    (next(tmp_path.glob("probe-*-0.mha"))).write_bytes(b"not an image")
    again = cached_images("probe", "k1", build)
    assert len(calls) == 2 and _same(again[0], img)
    cached_images("probe", "k1", build)
    assert len(calls) == 2  # the rewritten entry is read
    cached_images("probe", "k2", build)
    assert len(calls) == 3  # another key never reads k1's entry


def test_names_with_dots_do_not_collide(tmp_path, monkeypatch):
    monkeypatch.setenv("PMLSEG_CACHE_DIR", str(tmp_path))
    a = sitk.GetImageFromArray(np.zeros((2, 2, 2), np.float32))
    b = sitk.GetImageFromArray(np.ones((2, 2, 2), np.float32))
    cached_images("t-1.5mm", "k", lambda: (a,))
    got = cached_images("t-1.0mm", "k", lambda: (b,))
    assert _same(got[0], b) and _same(cached_images("t-1.5mm", "k", lambda: (b,))[0], a)
    # each entry has its own completeness marker (a shared one could vouch for another entry's files)
    assert len(list(tmp_path.glob("*.count"))) == 2


def test_qc_on_the_mask_box_equals_the_whole_volume():
    rng = np.random.default_rng(5)
    arr = ndi.gaussian_filter(rng.random((24, 90, 100)), (0.5, 3, 3)).astype(np.float32)
    fixed = sitk.GetImageFromArray(arr)
    fixed.SetSpacing((0.8, 0.8, 3.0))
    fixed.SetOrigin((-40.0, -36.0, -30.0))
    moving = sitk.GetImageFromArray(ndi.shift(arr, (0, 1.5, -2.0), order=1))  # misaligned by a few voxels
    moving.CopyInformation(fixed)
    mask_arr = np.zeros(arr.shape, np.uint8)
    mask_arr[4:20, 25:70, 30:75] = 1
    mask = sitk.GetImageFromArray(mask_arr)
    mask.CopyInformation(fixed)
    crop = crop_to_mask(fixed, mask, [4.0, 4.0, 0.0])
    assert crop.GetSize() == (45 + 2 * 6, 45 + 2 * 6, 16)  # 4 mm at 0.8 mm = 5 voxels + 1, none across slices
    assert np.allclose(crop.GetOrigin(), fixed.TransformIndexToPhysicalPoint((24, 19, 4)))
    tx = sitk.TranslationTransform(3, (0.5, -0.3, 0.0))
    # the whole-volume score, as registration_qc computed it before cropping
    mr = sitk.Resample(moving, fixed, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    sel = mask_arr > 0
    whole = _gradient_agreement(fixed, mr, sel)
    qc = registration_qc(fixed, moving, tx, fixed_mask=mask)
    assert 0.05 < whole < 0.95
    assert abs(qc.metrics["gradient_agreement"] - whole) < 1e-3, (qc.metrics, whole)
    assert abs(qc.metrics["nmi"] - _nmi(arr[sel], sitk.GetArrayViewFromImage(mr)[sel])) < 1e-6
    assert qc.metrics["overlap"] == 1.0


def test_smoothing_that_skips_thin_axes_equals_simpleitk():
    rng = np.random.default_rng(4)
    img = sitk.GetImageFromArray(rng.random((12, 40, 36)).astype(np.float32) * 1000)
    img.SetSpacing((0.7, 0.7, 3.3))
    for sigmas in ((1.5, 1.5, 0.0), (1.5, 1.5, 0.033), (0.0, 1.2, 0.0), (1.0, 1.0, 1.0)):
        ref = sitk.SmoothingRecursiveGaussian(img, [max(s, 1e-3) for s in sigmas])
        ours = smooth(img, sigmas)
        assert ours.GetPixelID() == ref.GetPixelID() and ours.GetSpacing() == ref.GetSpacing()
        assert np.allclose(sitk.GetArrayViewFromImage(ours), sitk.GetArrayViewFromImage(ref), rtol=0, atol=1e-3), sigmas
    assert not np.allclose(sitk.GetArrayViewFromImage(smooth(img, (1.5, 0, 0))), sitk.GetArrayViewFromImage(img))


def _head(shape, spacing, seed=0):
    """A head phantom on a grid of ``spacing`` (x, y, z): scalp, a dark skull, a textured brain, noisy air;
    returns (image, brain mask array)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[(np.arange(n) - n / 2) * s for n, s in zip(shape, spacing[::-1])], indexing="ij")
    r = np.sqrt((x / 70) ** 2 + (y / 85) ** 2 + (z / 65) ** 2)
    brain = r < 0.82
    arr = np.where(r < 1.0, 0.8, 0.0) + rng.normal(0, 0.03, shape)
    arr[(r > 0.86) & (r < 0.93)] = 0.1  # skull
    arr[brain] = 0.6 + 0.3 * ndi.gaussian_filter(rng.random(shape), 2.0)[brain]
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(spacing)
    return img, brain


def test_head_foreground_on_bins_covers_the_brain_like_full_resolution():
    from pmlseg.registration.affine import head_foreground

    for shape, spacing in (((90, 110, 96), (1.5, 1.5, 1.5)), ((30, 200, 170), (0.9, 0.9, 4.5))):
        img, brain = _head(shape, spacing)
        fast = sitk.GetArrayFromImage(head_foreground(img)) > 0
        full = sitk.GetArrayFromImage(head_foreground(img, spacing_mm=0.0)) > 0  # every bin one voxel
        assert head_foreground(img).GetSize() == img.GetSize()
        assert fast[brain].all() and full[brain].all()
        dice = 2 * (fast & full).sum() / (fast.sum() + full.sum())
        assert dice > 0.98, (spacing, dice)
        assert fast.sum() < 1.2 * brain.sum() / 0.82 ** 3  # not the whole field of view


def test_qc_scores_thin_slices_one_in_three():
    """A 1 mm 3D FLAIR is scored on every third slice: those slices score exactly as before (in-plane
    gradients), and the whole-volume score moves by little."""
    from pmlseg.registration import qc as qcmod

    img, brain = _head((60, 70, 64), (1.0, 1.0, 1.0), seed=2)
    moving = sitk.Resample(img, img, sitk.TranslationTransform(3, (0.6, -0.4, 0.5)), sitk.sitkLinear, 0.0)
    mask = sitk.GetImageFromArray(brain.astype(np.uint8))
    mask.CopyInformation(img)
    tx = sitk.TranslationTransform(3, (0.3, 0.0, 0.0))
    fast = registration_qc(img, moving, tx, fixed_mask=mask)
    mr = sitk.Resample(moving, img, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    box = crop_to_mask(mask, mask, [4.0, 4.0, 0.0])
    z0 = box.GetOrigin()[2] - img.GetOrigin()[2]
    kept = np.zeros(brain.shape, bool)
    kept[int(round(z0)):int(round(z0)) + box.GetSize()[2]:3] = True
    assert abs(fast.metrics["gradient_agreement"] - _gradient_agreement(img, mr, brain & kept)) < 1e-5
    old, qcmod.SLICE_MM = qcmod.SLICE_MM, 0.0
    try:
        every = registration_qc(img, moving, tx, fixed_mask=mask)
    finally:
        qcmod.SLICE_MM = old
    assert abs(fast.similarity - every.similarity) < 0.02, (fast.similarity, every.similarity)
    assert fast.passed == every.passed


def test_n4_on_a_coarse_copy_still_removes_a_smooth_bias():
    """N4 is fitted on ~6 mm voxels and its field interpolated back: a 1 mm-scale image keeps its grid and a
    +-20 % bias across the head is removed (the brain's spread falls to the texture's own)."""
    from pmlseg.registration.preprocess import n4_bias_correct

    img, brain = _head((70, 90, 80), (1.5, 1.5, 1.5), seed=3)
    arr = sitk.GetArrayFromImage(img)
    flat = np.where(brain, 0.7, arr) + np.random.default_rng(1).normal(0, 0.01, arr.shape)
    x = (np.arange(arr.shape[2]) - arr.shape[2] / 2)[None, None, :] / (arr.shape[2] / 2)
    biased = sitk.GetImageFromArray((flat * np.exp(0.2 * x)).astype(np.float32))
    biased.CopyInformation(img)
    out = n4_bias_correct(biased)
    assert out.GetSize() == img.GetSize() and out.GetSpacing() == img.GetSpacing()
    cv = lambda a: float(np.std(a[brain]) / np.mean(a[brain]))
    before, after = cv(sitk.GetArrayViewFromImage(biased)), cv(sitk.GetArrayViewFromImage(out))
    assert before > 0.08 and after < 0.5 * before, (before, after)


@pytest.mark.shared
def test_template_fit_hands_over_the_4mm_mask_a_4mm_fit_makes(shared_data):
    """The register job's metric mask comes out of the rebaseline's template fit on its way to 2 mm: it is the
    mask a separate 4 mm fit gives (so nothing changes but one fit less), and a fit that fails says so to the
    one waiting for it instead of leaving it waiting."""
    from concurrent.futures import Future

    from pmlseg.errors import PmlsegError
    from pmlseg.registration.preprocess import fit_brain_mask

    flair = sitk.ReadImage(str(shared_data / "ljubljana-longitudinal/patient04/study1_FLAIR.nii.gz"), sitk.sitkFloat32)
    coarse = Future()
    fine = fit_brain_mask(flair, "FLAIR", name="study1 FLAIR", coarse=coarse)
    handed = sitk.GetArrayViewFromImage(coarse.result(timeout=0)).astype(bool)
    alone = sitk.GetArrayViewFromImage(fit_brain_mask(flair, "FLAIR", finest_mm=4.0)).astype(bool)
    dice = 2 * (handed & alone).sum() / (handed.sum() + alone.sum())
    assert dice > 0.999, dice  # the same computation (ITK's threads may differ in the last bits)
    assert 0.9 < 2 * (handed & sitk.GetArrayViewFromImage(fine).astype(bool)).sum() / (
        handed.sum() + sitk.GetArrayViewFromImage(fine).sum()) < 1.0  # the 2 mm level ran after it
    failed = Future()
    with pytest.raises(PmlsegError, match="flat"):
        fit_brain_mask(sitk.Image([40, 40, 20], sitk.sitkFloat32), "FLAIR", name="flat", coarse=failed)
    assert isinstance(failed.exception(timeout=0), PmlsegError)


def test_later_follow_ups_take_the_4mm_mask_the_first_ones_fit_wrote(shared_data, tmp_path):
    """The first follow-up's job writes the 4 mm mask beside the rebaseline's template fit; a later follow-up's
    registration reads it back (the same voxels) instead of fitting again, and only for the image it was made from."""
    from concurrent.futures import Future

    from pmlseg.registration.template_fit import coarse_mask, write_template_fit

    path = shared_data / "ljubljana-longitudinal/patient04/study1_FLAIR.nii.gz"
    flair = sitk.ReadImage(str(path), sitk.sitkFloat32)
    sidecar = tmp_path / "fit" / "reb_template-fit.json"
    assert coarse_mask(flair, sidecar) is None                      # not written yet: the job fits it itself
    coarse = Future()
    write_template_fit(flair, sidecar, coarse=coarse)
    again = coarse_mask(sitk.ReadImage(str(path)), sidecar)         # as `pmlseg register` reads FIXED (int16)
    assert again is not None and again.GetSize() == flair.GetSize() and again.GetOrigin() == flair.GetOrigin()
    assert np.array_equal(sitk.GetArrayViewFromImage(again), sitk.GetArrayViewFromImage(coarse.result(timeout=0)))
    other = sitk.ReadImage(str(shared_data / "ljubljana-longitudinal/patient04/study1_T2W.nii.gz"))
    assert coarse_mask(other, sidecar) is None                      # another image: fitted as before
    write_template_fit(flair, sidecar)                              # a fit made without the hand-over names none
    assert coarse_mask(flair, sidecar) is None


@pytest.mark.shared
def test_registrations_to_one_image_share_its_preparation(shared_data, monkeypatch):
    """A follow-up's T1 and T2 registered to its FLAIR (the register job's same-session thread) prepare the FLAIR
    once: its rescaled copy, head mask and each edge level's gradients are made for the first and reused by the
    second, which gives the very transform it gives when it prepares everything itself."""
    from pmlseg.registration import affine, edges

    d = shared_data / "ljubljana-longitudinal/patient04"
    flair = sitk.ReadImage(str(d / "study1_FLAIR.nii.gz"))
    others = [sitk.ReadImage(str(d / f"study1_{k}.nii.gz")) for k in ("T1W", "T2W")]
    made, original = [], edges._fixed_side
    monkeypatch.setattr(edges, "_fixed_side", lambda *a: made.append(a[2]) or original(*a))

    def same_session(img, fresh: bool):
        if fresh:
            affine._rescaled.cache_clear()
        return np.array(affine.register_affine(flair, img, init="identity", rigid_only=True).transform.GetParameters())

    affine._rescaled.cache_clear()
    shared = [same_session(img, fresh=False) for img in others]
    assert made == [3.0, 1.5]  # the FLAIR's two edge levels, once for both images
    alone = [same_session(img, fresh=True) for img in others]
    assert made == [3.0, 1.5] * 3
    for a, b in zip(shared, alone):
        assert np.array_equal(a, b), (a, b)
