"""T2-weighted input at inference: a FLAIR-only model ignores T2 (bit-identical probabilities), add_t2 lays each
visit's T2 on the working grid through the right transforms, and a ``t2_input`` model runs with and without T2."""

import hashlib
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from pmlseg.detect.network import DEFAULT_CONFIG, build_network, save_torchscript, stack_channels
from pmlseg.detect.predictor import PreparedPair, Predictor, add_t2, working_grid


def _tiny_case(shape=(48, 56, 5), seed=0):
    """Smooth rebaseline / follow-up / T2 arrays, a brain ellipsoid and a brighter blob at follow-up."""
    rng = np.random.default_rng(seed)
    smooth = [ndi.gaussian_filter(rng.normal(1.0, 0.3, shape), (2, 2, 0.5)).astype(np.float32) for _ in range(3)]
    bl, bl_t2, fu_t2 = smooth
    fu = bl.copy()
    fu[20:26, 24:30, 2] += 0.8
    x, y, z = np.ogrid[:shape[0], :shape[1], :shape[2]]
    mask = ((x - shape[0] / 2) / 20) ** 2 + ((y - shape[1] / 2) / 24) ** 2 + ((z - 2) / 3) ** 2 < 1
    return bl * mask, fu * mask, mask, bl_t2 * mask, fu_t2 * mask


def test_flair_only_model_ignores_t2_bit_for_bit():
    """The shipped model (no t2_input) gets exactly the channels it got before T2 input existed, and T2 given
    to it changes no probability, test-time flips included."""
    bl, fu, mask, bl_t2, fu_t2 = _tiny_case()
    b, f = bl[:, :, [0, 0, 1]].transpose(2, 0, 1), fu[:, :, [0, 0, 1]].transpose(2, 0, 1)
    assert np.array_equal(stack_channels(bl, fu, 0, 1, 1)[0], np.concatenate([b, f, f - b]))
    pred = Predictor(None, "cpu")
    assert not pred.config.get("t2_input") and pred.config.get("tta_flips")
    plain = pred.probability(bl, fu, mask, exact_above=0.0)
    with_t2 = pred.probability(bl, fu, mask, exact_above=0.0, bl_t2=bl_t2, fu_t2=fu_t2)
    assert plain.max() > 0 and np.array_equal(plain, with_t2)


def _image(size, spacing, origin, value, rng):
    img = sitk.GetImageFromArray(rng.normal(value, 0.02 * value, size[::-1]).astype(np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def _bright_cube(img, point, value, half_mm=3.0):
    """Voxels of ``img`` within ``half_mm`` in plane of ``point``, on its nearest slice, set to ``value``."""
    arr = sitk.GetArrayViewFromImage(img).copy()  # (z, y, x)
    c = np.array(img.TransformPhysicalPointToContinuousIndex(point))
    r = half_mm / np.array(img.GetSpacing()[:2])
    k = int(round(c[2]))
    arr[k, int(np.ceil(c[1] - r[1])):int(np.floor(c[1] + r[1])) + 1,
        int(np.ceil(c[0] - r[0])):int(np.floor(c[0] + r[0])) + 1] = value
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out


def _centroid_mm(arr, grid):
    idx = np.argwhere(arr).mean(0)  # (x, y, z) voxel indices
    return np.array(grid.TransformContinuousIndexToPhysicalPoint(idx.tolist()))


def test_add_t2_follows_both_transforms_onto_the_working_grid():
    """A bright cube in each visit's T2, placed where a known rebaseline point lands through the transforms
    (taken one at a time here, not composed), is found at that point on the working grid: the follow-up T2 through
    the pair's transform first (a 30 degree rotation) and then the same-session shift -- the other order would put
    it ~6 mm away. Each T2 is divided by its median brain intensity, 0 outside the brain."""
    rng = np.random.default_rng(1)
    baseline = _image((64, 64, 16), (1.0, 1.0, 3.0), (-31.5, -31.5, -22.5), 100.0, rng)
    grid = working_grid(baseline)
    x, y, z = np.ogrid[:64, :64, :16]
    mask = ((x - 31.5) ** 2 + (y - 31.5) ** 2) / 25.0 ** 2 + ((z - 7.5) / 7) ** 2 < 1
    pair_tx = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, np.deg2rad(30.0), (3.0, -2.0, 0.0))
    bl_t2_tx = sitk.TranslationTransform(3, (-5.0, 3.0, 0.0))
    fu_t2_tx = sitk.TranslationTransform(3, (12.0, 0.0, 0.0))
    pair = PreparedPair(grid, mask.astype(np.float32), mask.astype(np.float32), mask, baseline, pair_tx)

    p_bl, p_fu = (-10.0, 8.0, 1.5), (8.0, -6.0, 1.5)  # rebaseline points (slice centres: -22.5 + 3k)
    t2_grid = ((100, 100, 16), (0.9, 0.9, 3.0), (-44.5, -44.5, -22.5))
    bl_t2 = _bright_cube(_image(*t2_grid, 200.0, rng), bl_t2_tx.TransformPoint(p_bl), 600.0)
    fu_t2 = _bright_cube(_image(*t2_grid, 300.0, rng), fu_t2_tx.TransformPoint(pair_tx.TransformPoint(p_fu)), 900.0)
    add_t2(pair, bl_t2, fu_t2, bl_t2_tx, fu_t2_tx)

    for arr in (pair.bl_t2, pair.fu_t2):
        assert arr.shape == mask.shape and arr.dtype == np.float32 and not arr[~mask].any()
        assert abs(float(np.median(arr[mask])) - 1.0) < 0.02
    for arr, p in ((pair.bl_t2, p_bl), (pair.fu_t2, p_fu)):
        bright = arr > 2.0
        assert 20 < bright.sum() < 80
        assert np.linalg.norm(_centroid_mm(bright, grid) - np.array(p)) < 1.0
    wrong_order = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, np.deg2rad(30.0)).TransformPoint((12.0, 0, 0))
    assert np.linalg.norm(np.array(wrong_order) - (12.0, 0, 0)) > 5.0  # the test tells the two orders apart


@pytest.mark.parametrize("torchscript", [True, False])
def test_t2_input_model_runs_with_and_without_t2(tmp_path, torchscript):
    """A random tiny t2_input network (TorchScript on CPU as shipped models run, or MONAI's) takes the T2
    channels through the same probability path, flips included; without T2 they are zeros and it still runs."""
    import torch

    torch.manual_seed(0)
    config = dict(DEFAULT_CONFIG, features=[4, 4, 8, 8, 16, 4], roi_size=[32, 32], t2_input=True, tta_flips=[2, 3])
    state = build_network(config).state_dict()
    torch.save(state, tmp_path / "model.pt")
    digest = hashlib.sha256((tmp_path / "model.pt").read_bytes()).hexdigest()
    meta = {"name": "t2-tiny", "weights": "model.pt", "sha256": digest}
    if torchscript:
        save_torchscript(state, config, tmp_path / "model.ts")
        meta["torchscript"] = {"file": "model.ts", "traced_from_sha256": digest,
                               "sha256": hashlib.sha256((tmp_path / "model.ts").read_bytes()).hexdigest()}
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    (tmp_path / "inference.json").write_text(json.dumps(config))
    pred = Predictor(tmp_path, "cpu")
    assert (pred.torchscript is not None) == torchscript
    bl, fu, mask, bl_t2, fu_t2 = _tiny_case()
    without = pred.probability(bl, fu, mask, exact_above=0.0)
    with_t2 = pred.probability(bl, fu, mask, exact_above=0.0, bl_t2=bl_t2, fu_t2=fu_t2)
    for prob in (without, with_t2):
        assert prob.shape == bl.shape and np.isfinite(prob).all() and 0 <= prob.min() <= prob.max() <= 1
        assert not prob[~mask].any()
    assert not np.array_equal(without, with_t2)  # the T2 channels reach the network
