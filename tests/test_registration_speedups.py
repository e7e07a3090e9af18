"""The per-process speed-ups of registration change no result: the scipy closing equals ITK's, and the
disk-cached brain-mask template equals a fresh build (and a damaged cache entry is rebuilt)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from pmlseg.diskcache import cached_images
from pmlseg.registration.affine import _binary_closing
from pmlseg.registration.preprocess import _build_template, _template


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
