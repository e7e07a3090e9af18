"""The optional T2-weighted input: T2W training pairs, patches with modality dropout, a FLAIR-only model extended
to T2W, and a short training run; the FLAIR-only pair stream stays exactly as it was."""

import json
from pathlib import Path

import numpy as np

from pmlseg.detect import pairs
from pmlseg.detect import train as T
from pmlseg.detect.network import DEFAULT_CONFIG, build_network

SMALL = dict(DEFAULT_CONFIG, features=[8, 8, 16, 16, 32, 8])
SHIPPED = Path(__file__).parents[1] / "models" / "newlesion-2p5d"


def _ball(t2: bool = False) -> pairs.Source:
    """A 64 mm ball brain with one old lesion (as in test_detect_train), optionally with a T2W image."""
    rng = np.random.default_rng(0)
    g = np.indices((64, 64, 64)).astype(np.float32) - 32
    r = np.sqrt((g ** 2).sum(0))
    mask = r <= 30
    image = np.where(mask, rng.normal(1.0, 0.03, mask.shape), 0).astype(np.float32)
    lesion = np.sqrt(((g - np.array([10, 0, 0])[:, None, None, None]) ** 2).sum(0)) <= 4
    image[lesion] = 1.5
    t2w = None
    if t2:  # bright "CSF" shell, darker tissue, brighter old lesion
        t2w = np.where(mask, np.where(r > 26, 4.5, 0.9) + rng.normal(0, 0.03, mask.shape), 0).astype(np.float32)
        t2w[lesion] = 1.8
    return pairs.Source("ball", image, mask, lesion, np.argwhere(mask & ~lesion)[::40], t2=t2w)


def test_t2_draws_leave_the_flair_pair_unchanged():
    """T2W random draws come after all of FLAIR's, so a pair is the same FLAIR pair with or without T2W (and
    t2=False draws what it drew before T2W existed: checked once against commit 846f905's pairs.py, sha256 of
    bl, fu and label for two seeds, docs/detection.md "Phase 12"; not pinned here, as the floats depend on the
    numpy/scipy build). A source without T2W gives no T2W keys."""
    src = _ball()
    assert "bl_t2" not in pairs.make_pair(src, np.random.default_rng(5), [], t2=True)

    src2 = _ball(t2=True)
    for kw in ({}, {"slice_mm": 1.5}):
        c = pairs.make_pair(src2, np.random.default_rng(5), [], **kw)
        d = pairs.make_pair(src2, np.random.default_rng(5), [], t2=True, **kw)
        assert all(np.array_equal(c[k], d[k]) for k in c)
        assert d["bl_t2"].shape == d["fu_t2"].shape == d["bl"].shape and d["fu_t2"].dtype == np.float16
        t2 = d["bl_t2"].astype(np.float32)
        assert abs(np.median(t2[d["mask"]]) - 1) < 0.05 and not t2[~d["mask"]].any()


def test_t2_scanner_curve_does_not_clamp_bright_csf():
    """T2W CSF (up to ~4.4 x the median brain) stays brighter than less bright CSF under the T2W scanner curve;
    FLAIR's curve still clamps at 4 as before."""
    ramp = np.repeat(np.linspace(0, 7, 71, dtype=np.float32)[:, None, None], 16, axis=1).repeat(16, axis=2)
    for seed in range(5):
        t2 = pairs._scanner(ramp, np.random.default_rng(seed), extend=True)
        flair = pairs._scanner(ramp, np.random.default_rng(seed))
        top, high = t2[ramp[:, 0, 0] >= 6.5].mean(), t2[(ramp[:, 0, 0] >= 5) & (ramp[:, 0, 0] <= 5.5)].mean()
        assert top > 1.1 * high
        clamped = ramp[:, 0, 0] ** 0.75 >= 4  # whatever the gamma (0.75-1.35)
        assert abs(flair[ramp[:, 0, 0] >= 6.8].mean() / flair[clamped & (ramp[:, 0, 0] <= 6.6)].mean() - 1) < 0.05


def test_t2_patches_follow_the_pair_and_drop_out():
    """sample_patch: T2W channels after FLAIR's, flipped with them; zeros with t2_dropout 1, or without T2W."""
    p = T.for_sampling(pairs.make_pair(_ball(t2=True), np.random.default_rng(1), [], t2=True))
    assert p["bl_t2"].dtype == np.float32
    x, y = T.sample_patch(p, np.random.default_rng(0), 32, 1, True, t2_input=True, t2_dropout=0.0)
    x0, y0 = T.sample_patch(p, np.random.default_rng(0), 32, 1, True, t2_input=True, t2_dropout=1.0)
    assert x.shape == (18, 32, 32) and y.shape == (1, 32, 32)
    assert np.array_equal(x[:9], x0[:9]) and np.array_equal(y, y0) and x[9:].any() and not x0[9:].any()
    assert np.allclose(x[16], x[13] - x[10], atol=1e-6)                   # T2W difference, centre slice
    no_t2 = {k: v for k, v in p.items() if not k.endswith("_t2")}
    x1, _ = T.sample_patch(no_t2, np.random.default_rng(0), 32, 1, True, t2_input=True, t2_dropout=0.0)
    assert x1.shape == (18, 32, 32) and not x1[9:].any()
    x2, _ = T.sample_patch(p, np.random.default_rng(0), 32, 1, True)     # FLAIR-only model: T2W ignored
    assert x2.shape == (9, 32, 32)


def test_t2_pair_on_a_real_brain_shows_the_new_lesions(shared_data):
    """On an MNI brain with its T2.nii.gz: the new lesions are brighter on follow-up T2W than on baseline T2W,
    elsewhere the two T2W visits differ little."""
    import nibabel as nib
    from scipy import ndimage as ndi

    cross = shared_data / "ljubljana-cross-sectional"
    sites = np.argwhere(np.asarray(nib.load(str(cross / "mni-lesion-masks" / "patient19.nii.gz")).dataobj) > 0)
    src = pairs.mni_source(cross / "mni" / "patient07", cross / "mni-lesion-masks" / "patient07.nii.gz", sites)
    assert src.t2 is not None and src.t2.shape == src.image.shape and abs(np.median(src.t2[src.mask]) - 1) < 1e-3
    p = pairs.make_pair(src, np.random.default_rng(1), [], t2=True)
    assert p["bl_t2"].shape == p["fu_t2"].shape == p["bl"].shape
    lab, m = p["label"], p["mask"]
    assert lab.sum() > 30
    diff = p["fu_t2"].astype(np.float32) - p["bl_t2"].astype(np.float32)
    away = m & ~ndi.binary_dilation(lab, iterations=2)
    assert diff[lab].mean() > 0.25, diff[lab].mean()
    assert np.abs(diff[away]).mean() < 0.25 and abs(diff[away].mean()) < 0.03


def test_flair_only_weights_start_a_t2_network_unchanged():
    """load_init: the shipped FLAIR-only weights in a t2_input network, zero weights on the T2W channels: the same
    output whatever the T2W channels hold."""
    import torch

    config = {**DEFAULT_CONFIG, **json.loads((SHIPPED / "inference.json").read_text())}
    one = build_network(config)
    state = torch.load(SHIPPED / "model.pt", map_location="cpu")
    one.load_state_dict(state)
    two = build_network(dict(config, t2_input=True))
    T.load_init(two, dict(state))
    one.eval(), two.eval()
    x = torch.randn(2, 18, 32, 32)
    with torch.no_grad():
        assert torch.allclose(two(x), one(x[:, :9]), atol=1e-5)
    assert two.state_dict()["conv_0.conv_0.conv.weight"].shape[1] == 18


def test_short_t2_training_run_writes_a_t2_model(tmp_path, shared_data, tiny_train_recipe):
    """A few steps with "t2_input" from a FLAIR-only model: an 18-channel model, its config and metadata say T2W."""
    import torch

    init = tmp_path / "one.pt"
    torch.save(build_network(SMALL).state_dict(), init)
    recipe = tiny_train_recipe
    out = tmp_path / "t2"
    T.train(out, recipe, dict(SMALL, t2_input=True), shared_data, init=init)
    assert json.loads((out / "inference.json").read_text())["t2_input"] is True
    state = torch.load(out / "model.pt", map_location="cpu")
    assert state["conv_0.conv_0.conv.weight"].shape[1] == 18
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["sha256"] == T.sha256(out / "model.pt") and "rebaseline T2W" in meta["inputs"]
    assert "T2.nii.gz" in meta["training_data"] and meta["recipe"]["t2_dropout"] == 0.5

    # "t2_channels_only": the T2W channels' first-layer weights learn, everything else stays the initial model
    only = tmp_path / "t2_only"
    T.train(only, dict(recipe, t2_channels_only=True, t2_dropout=0.0, lr=1e-2), dict(SMALL, t2_input=True),
            shared_data, init=init)
    before, after = torch.load(init, map_location="cpu"), torch.load(only / "model.pt", map_location="cpu")
    key = "conv_0.conv_0.conv.weight"
    assert after[key][:, 9:].abs().sum() > 0 and torch.equal(after[key][:, :9], before[key])
    assert all(torch.equal(after[k], v) for k, v in before.items() if k != key)


def test_source_bundle_carries_t2(tmp_path, monkeypatch):
    """pack_sources / unpack_sources: a source's T2W image travels (float16 in the file), a missing one stays None."""
    with_t2, without = _ball(t2=True), _ball()
    monkeypatch.setattr(T, "load_sources", lambda recipe, shared: ([with_t2, without], [np.ones((3, 3, 3), bool)]))
    sources, shapes = T.unpack_sources(T.pack_sources(T.DEFAULT_RECIPE, tmp_path, tmp_path / "bundle.npz"))
    assert sources[0].t2.dtype == np.float32 and sources[1].t2 is None and len(shapes) == 1
    assert np.allclose(sources[0].t2, with_t2.t2, atol=5e-3)
