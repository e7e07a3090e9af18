"""Detection: model loading checks, clear CLI errors, working grid, post-processing, and a CPU smoke
test of the committed model on a synthetic pair with inserted new lesions (held-out ICBM152 phantom)."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from pmlseg.detect import pairs, postprocess
from pmlseg.detect.predictor import DEFAULT_MODEL, Predictor, resolve_model, working_grid
from pmlseg.errors import PmlsegError

# measured with the committed model (see docs/detection.md); set below what it reaches
SMOKE_MIN_DICE = 0.3  # measured 0.66 (2 of 2 lesions found, no FP) with the shipped model
SMOKE_MIN_SENS = 0.5  # measured 1.0


def test_checksum_mismatch_names_the_weights(tmp_path):
    model = tmp_path / "m"
    shutil.copytree(resolve_model(DEFAULT_MODEL), model)
    data = bytearray((model / "model.pt").read_bytes())
    data[-10] ^= 0xFF
    (model / "model.pt").write_bytes(bytes(data))
    with pytest.raises(PmlsegError, match=r"model\.pt.*sha256"):
        Predictor(model, "cpu")
    (model / "model.pt").unlink()
    with pytest.raises(PmlsegError, match=r"model\.pt"):
        Predictor(model, "cpu")


def test_missing_followup_is_a_clear_error(tmp_path, shared_data):
    bl = shared_data / "ljubljana-longitudinal/patient04/study1_FLAIR.nii.gz"
    missing = tmp_path / "nope_FLAIR.nii.gz"
    r = subprocess.run([sys.executable, "-m", "pmlseg", "detect", "--baseline", str(bl), "--followup", str(missing),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 65  # EXIT_BAD_INPUT
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and str(missing) in err[0] and "follow-up" in err[0], r.stderr
    assert not (tmp_path / "o").exists()


def test_corrupt_optional_input_is_a_clear_error_before_any_work(tmp_path, shared_data):
    """A T1 that is not an image: one line naming it, exit 65, nothing written (checked before registration)."""
    d = shared_data / "ljubljana-longitudinal/patient01"
    bad = tmp_path / "sub-001_ses-02_T1w.nii.gz"
    bad.write_bytes(b"\x1f\x8b not a NIfTI at all")
    r = subprocess.run([sys.executable, "-m", "pmlseg", "detect", "--baseline", str(d / "study1_FLAIR.nii.gz"),
                        "--followup", str(d / "study2_FLAIR.nii.gz"), "--followup-t1", str(bad),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 65, r.stderr[-2000:]
    err = [ln for ln in r.stderr.splitlines() if ln.strip() and " INFO " not in ln]  # the model load is logged first
    assert len(err) == 1 and str(bad) in err[0] and "--followup-t1 cannot be read" in err[0], r.stderr
    assert not (tmp_path / "o").exists()


def test_truncated_optional_input_is_never_used(tmp_path, shared_data):
    """A T2 cut off after a third of its voxels: ITK reads it (zeros after the cut), so its registration QC,
    run in a thread beside the pair, must refuse it: exit 0, the T2 not resampled, its features NA with why."""
    import gzip
    import json

    from pmlseg.workflow.manifest import read_tsv

    d = shared_data / "ljubljana-longitudinal/patient01"
    bad = tmp_path / "sub-001_ses-02_T2w.nii.gz"
    raw = gzip.decompress((d / "study2_T2W.nii.gz").read_bytes())
    bad.write_bytes(gzip.compress(raw[: len(raw) // 3]))
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "pmlseg", "detect", "--baseline", str(d / "study1_FLAIR.nii.gz"),
                        "--followup", str(d / "study2_FLAIR.nii.gz"), "--followup-t2", str(bad),
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "qc.json").read_text())["input_registrations"]["followup_t2"]["passed"] is False
    assert not (out / "baseline_space" / "followup_T2w.nii.gz").exists()
    rows = read_tsv(out / "lesions.tsv")
    assert rows and all(r["t2_ratio"] == "" and "followup T2w registration failed QC" in r["missing_features"]
                        for r in rows)


def test_unloadable_weights_are_named_when_the_network_is_first_used(tmp_path):
    """The network loads in a background thread; weights that match their checksum but are not a state dict
    fail at first use with the file named, never a silent fallback."""
    import json

    from pmlseg.detect.train import sha256

    model = tmp_path / "m"
    shutil.copytree(resolve_model(DEFAULT_MODEL), model)
    (model / "model.pt").write_bytes(b"checksummed, but not weights")
    meta = json.loads((model / "metadata.json").read_text())
    meta.pop("torchscript")  # MONAI's network from model.pt (a model without model.ts)
    (model / "metadata.json").write_text(json.dumps({**meta, "sha256": sha256(model / "model.pt")}))
    pred = Predictor(model, "cpu")  # metadata, checksum and config are checked here; the weights load behind
    assert pred.config["roi_size"] and pred.sha256 == sha256(model / "model.pt")
    with pytest.raises(PmlsegError, match=r"m/model\.pt: cannot load weights"):
        pred.probability(np.ones((8, 8, 3), np.float32), np.ones((8, 8, 3), np.float32))
    # the same for the TorchScript network
    shutil.rmtree(model)
    shutil.copytree(resolve_model(DEFAULT_MODEL), model)
    (model / "model.ts").write_bytes(b"checksummed, but not TorchScript")
    meta = json.loads((model / "metadata.json").read_text())
    meta["torchscript"]["sha256"] = sha256(model / "model.ts")
    (model / "metadata.json").write_text(json.dumps(meta))
    pred = Predictor(model, "cpu")
    with pytest.raises(PmlsegError, match=r"m/model\.ts: cannot load the TorchScript network"):
        pred.probability(np.ones((8, 8, 3), np.float32), np.ones((8, 8, 3), np.float32))


def test_torchscript_network_is_checked_against_its_weights(tmp_path):
    """model.ts is checksummed and must be traced from the model's own weights: a replaced one is named."""
    import json

    model = tmp_path / "m"
    shutil.copytree(resolve_model(DEFAULT_MODEL), model)
    data = bytearray((model / "model.ts").read_bytes())
    data[-30] ^= 0xFF
    (model / "model.ts").write_bytes(bytes(data))
    with pytest.raises(PmlsegError, match=r"m/model\.ts: sha256 .* does not match"):
        Predictor(model, "cpu")
    shutil.copy(resolve_model(DEFAULT_MODEL) / "model.ts", model / "model.ts")
    meta = json.loads((model / "metadata.json").read_text())
    meta["torchscript"]["traced_from_sha256"] = "0" * 64
    (model / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PmlsegError, match=r"m/model\.ts: traced from other weights"):
        Predictor(model, "cpu")
    (model / "model.ts").unlink()
    with pytest.raises(PmlsegError, match=r"m/model\.ts: TorchScript network named in metadata.json is missing"):
        Predictor(model, "cpu")


def test_sliding_window_is_monais_bit_for_bit():
    """pmlseg's sliding window (no MONAI import at inference) stitches exactly as MONAI's SlidingWindowInferer:
    inputs smaller than the window (padded), equal to it, and larger (overlapping windows), any window batch."""
    import torch
    from monai.inferers import SlidingWindowInferer

    from pmlseg.detect.sliding_window import SlidingWindow

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(9, 4, 3, padding=1), torch.nn.Tanh(),
                              torch.nn.Conv2d(4, 2, 3, padding=1)).eval()
    for shape in [(3, 9, 100, 150), (5, 9, 192, 192), (17, 9, 200, 260), (1, 9, 400, 190)]:
        x = torch.randn(shape)
        for sw in (16, 3, 1):
            theirs = SlidingWindowInferer(roi_size=(192, 192), sw_batch_size=sw, overlap=0.25, mode="gaussian",
                                          padding_mode="constant")
            with torch.inference_mode():
                a, b = theirs(x, net), SlidingWindow((192, 192), sw, 0.25)(x, net)
            assert a.shape == b.shape and torch.equal(a, b), (shape, sw)


def test_torchscript_predictor_is_the_monai_one_bit_for_bit(tmp_path):
    """The shipped model's probabilities through model.ts + pmlseg's sliding window equal those of MONAI's
    BasicUNet (model.pt) + SlidingWindowInferer, flips included; and a CPU detection never imports MONAI."""
    import json

    model = tmp_path / "m"
    shutil.copytree(resolve_model(DEFAULT_MODEL), model)
    meta = json.loads((model / "metadata.json").read_text())
    meta.pop("torchscript")
    (model / "metadata.json").write_text(json.dumps(meta))
    ours, monais = Predictor(None, "cpu"), Predictor(model, "cpu")
    assert ours.torchscript is not None and monais.torchscript is None
    p = _smoke_pair(ours.config.get("slice_mm"))
    bl, fu = p["bl"].astype(np.float32), p["fu"].astype(np.float32)
    a = ours.probability(bl, fu, p["mask"], exact_above=0.0)
    b = monais.probability(bl, fu, p["mask"], exact_above=0.0)
    assert a.max() > 0.9 and np.array_equal(a, b)
    code = ("import sys; from pmlseg.detect.predictor import Predictor; import numpy as np; p = Predictor(None, 'cpu'); "
            "p.probability(np.ones((40, 40, 4), np.float32), np.ones((40, 40, 4), np.float32)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'monai'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-1000:]


def test_working_grid_is_lps_1mm_in_plane_same_extent():
    img = sitk.Image([100, 80, 20], sitk.sitkFloat32)
    img.SetSpacing([0.5, 0.5, 4.0])
    img.SetDirection([-1, 0, 0, 0, 1, 0, 0, 0, -1])  # RAS-like axes x flipped, z flipped
    img.SetOrigin([10.0, -20.0, 30.0])
    g = working_grid(img)
    assert g.GetSpacing() == (1.0, 1.0, 4.0)
    assert np.allclose(g.GetDirection(), np.eye(3).ravel())
    assert g.GetSize() == (50, 40, 20)
    # same physical bounding box (voxel edges)
    def box(im):
        c = [im.TransformContinuousIndexToPhysicalPoint([i - 0.5, j - 0.5, k - 0.5])
             for i in (0, im.GetSize()[0]) for j in (0, im.GetSize()[1]) for k in (0, im.GetSize()[2])]
        return np.min(c, 0), np.max(c, 0)
    assert np.allclose(box(img)[0], box(g)[0], atol=1e-3) and np.allclose(box(img)[1], box(g)[1], atol=1e-3)
    fine = working_grid(img, slice_mm=1.6)  # a model's slice_mm: finer slices over the same extent
    assert fine.GetSpacing() == (1.0, 1.0, 1.6) and fine.GetSize() == (50, 40, 50)
    assert np.allclose(box(img)[0], box(fine)[0], atol=1e-3) and np.allclose(box(img)[1], box(fine)[1], atol=1e-3)


def test_thin_slices_get_the_working_grid_slice_profile():
    """A 1 mm 3D rebaseline is laid on min_slice_mm slices (the model's training range) after a Gaussian
    slice profile along z only; a thick-slice image is left as it is."""
    from pmlseg.detect.predictor import thick_slices

    img = sitk.Image([40, 40, 60], sitk.sitkFloat32)
    img.SetSpacing([1.0, 1.0, 1.0])
    img[20, 20, 30] = 1.0  # one bright voxel
    g = working_grid(img, min_slice_mm=3.0)
    assert g.GetSpacing() == (1.0, 1.0, 3.0) and g.GetSize() == (40, 40, 20)
    assert working_grid(img, slice_mm=1.6, min_slice_mm=3.0).GetSpacing() == (1.0, 1.0, 1.6)  # a model's own grid wins
    arr = sitk.GetArrayFromImage(thick_slices(img, 3.0))  # (z, y, x)
    z = arr[:, 20, 20]
    sd = np.sqrt((z * (np.arange(60) - 30.0) ** 2).sum() / z.sum())
    assert abs(sd - np.sqrt(3.0 ** 2 - 1.0) / 2.3548) < 0.1  # FWHM 3 mm with the voxel's own 1 mm
    assert np.count_nonzero(arr[30]) == 1  # nothing in plane
    thick = sitk.Image([40, 40, 10], sitk.sitkFloat32)
    thick.SetSpacing([1.0, 1.0, 4.0])
    thick[20, 20, 5] = 1.0
    assert working_grid(thick, min_slice_mm=3.0).GetSpacing() == (1.0, 1.0, 4.0)
    assert np.array_equal(sitk.GetArrayFromImage(thick_slices(thick, 4.0)), sitk.GetArrayFromImage(thick))


def test_components_are_26_connected_min_size_largest_first():
    b = np.zeros((20, 20, 10), bool)
    b[2:6, 2:6, 2:4] = True          # 32 voxels
    b[6, 6, 4] = True                # touches the first one only diagonally (26-connected)
    b[12:14, 12:14, 5] = True        # 4 voxels: 4 mm^3 < 10 -> dropped at 1 mm^3 voxels
    b[10:18, 2:6, 6:8] = True        # 64 voxels
    lab = postprocess.components(b, (1.0, 1.0, 1.0), 10.0)
    assert lab.max() == 2
    assert (lab == 1).sum() == 64 and (lab == 2).sum() == 33
    assert lab[12, 12, 5] == 0


def _smoke_pair(slice_mm=None):
    from pmlseg.detect.synthcase import icbm_source

    src = icbm_source()
    rng = np.random.default_rng(7)
    for _ in range(10):
        p = pairs.make_pair(src, rng, [], slice_mm=slice_mm)  # procedural lesion shapes: no library needed
        if postprocess.components(p["label"], p["spacing"], 10.0).max() >= 2:
            return p
    raise AssertionError("no synthetic pair with new lesions")


def test_model_finds_inserted_new_lesions_on_cpu():
    from pmlseg.detect.pipeline import decide

    pred = Predictor(None, "cpu")
    p = _smoke_pair(pred.config.get("slice_mm"))  # on the grid the model was trained for

    class Pair:  # the working-grid part of a PreparedPair
        bl, fu, mask, spacing = p["bl"].astype(np.float32), p["fu"].astype(np.float32), p["mask"], tuple(p["spacing"])

    prob, lab = decide(Pair, pred, "model")
    assert prob.shape == p["bl"].shape and 0 <= prob.min() and prob.max() <= 1
    gt = postprocess.components(p["label"], p["spacing"], 10.0)
    hit = len(set(np.unique(gt[lab > 0])) - {0})
    sens = hit / gt.max()
    dice = 2 * ((lab > 0) & p["label"]).sum() / max(1, (lab > 0).sum() + p["label"].sum())
    print(f"smoke: {gt.max()} GT lesions, sensitivity {sens:.2f}, Dice {dice:.2f}, {lab.max()} detections")
    assert sens >= SMOKE_MIN_SENS and dice >= SMOKE_MIN_DICE


def test_flips_only_where_they_can_matter_change_no_decision():
    """Test-time flips run only on slices whose plain pass can reach the lowest cut: every voxel at or above
    the cut is exactly the all-slice flip average, and no voxel below it is raised above it."""
    pred = Predictor(None, "cpu")
    assert pred.config.get("tta_flips"), "the shipped model averages flips"
    p = _smoke_pair(pred.config.get("slice_mm"))
    bl, fu = p["bl"].astype(np.float32), p["fu"].astype(np.float32)
    everywhere = pred.probability(bl, fu, p["mask"], exact_above=0.0)
    cut = 0.9
    selected = pred.probability(bl, fu, p["mask"], exact_above=cut)
    high = everywhere >= cut
    assert high.sum() > 20, "the pair's lesions reach the cut"
    np.testing.assert_allclose(selected[high], everywhere[high], atol=1e-5)
    assert ((selected >= cut) == high).all()


def test_label_statistics_and_plausible_on_the_box_equal_whole_volume_ones():
    """label_max / label_mean (labelled voxels only) and plausible (components' box) give exactly what
    scipy's whole-volume ndi.maximum / ndi.mean and whole-volume smoothing give."""
    from scipy import ndimage as ndi

    from pmlseg.detect.postprocess import components, label_max, label_mean, plausible, renumber_by_size

    rng = np.random.default_rng(4)
    shape, spacing = (90, 100, 30), (1.0, 1.0, 3.0)
    bl = ndi.gaussian_filter(rng.normal(1.0, 0.3, shape), 1.0).astype(np.float32)
    fu = bl + (ndi.gaussian_filter(rng.normal(0, 1, shape), 2.0) > 0.15) * rng.uniform(0.05, 0.6, shape).astype(np.float32)
    lab = components(fu - bl > 0.2, spacing, 10.0)
    n = int(lab.max())
    assert n > 5
    idx = np.arange(1, n + 1)
    assert np.array_equal(label_max(fu, lab, n), np.asarray(ndi.maximum(fu, lab, idx)))
    assert np.allclose(label_mean(fu - bl, lab, n), np.asarray(ndi.mean(fu - bl, lab, idx)), rtol=1e-6, atol=1e-7)
    # plausible against the whole-volume computation it replaced
    sigma = [0.7, 0.7, 0.0]
    f = ndi.gaussian_filter(fu, sigma)
    d = f - ndi.gaussian_filter(bl, sigma)
    peak, diff = np.asarray(ndi.maximum(f, lab, idx)), np.asarray(ndi.mean(d, lab, idx))
    limits = float(np.median(peak)), float(np.quantile(diff, 0.3))  # limits that drop some components
    expected = renumber_by_size(lab, (peak >= limits[0]) & (diff >= limits[1]))
    got = plausible(lab, bl, fu, spacing, *limits)
    assert 0 < int(got.max()) < n and np.array_equal(got, expected)
