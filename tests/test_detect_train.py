"""`pmlseg train`: a short real run writes a loadable, checksummed model; pair workers do not repeat."""

import json

import numpy as np
import pytest

from pmlseg.detect import train as T


def test_each_worker_gets_its_own_pair_stream():
    from torch.utils.data import DataLoader, IterableDataset

    class FirstDraw(IterableDataset):  # the first number each worker's pair generator would draw
        def __iter__(self):
            yield int(np.random.default_rng(T.worker_seed(0)).integers(1 << 30))

    draws = [int(x) for x in DataLoader(FirstDraw(), batch_size=None, num_workers=2)]
    assert len(draws) == 2 and draws[0] != draws[1]


@pytest.mark.slow
def test_short_training_run_learns_and_writes_a_loadable_model(tmp_path, shared_data):
    from pmlseg.detect.network import DEFAULT_CONFIG
    from pmlseg.detect.predictor import Predictor

    recipe = dict(T.DEFAULT_RECIPE, minutes=5.0, max_steps=40, batch_size=4, lr=5e-3, patch=64, pool_size=2,
                  replace_every=1000, workers=2, checkpoint_minutes=100.0,
                  sources={"mni_brains": ["patient07"], "raw_flair": []})
    config = dict(DEFAULT_CONFIG, features=[8, 8, 16, 16, 32, 8])
    out = tmp_path / "tiny"
    T.train(out, recipe, config, shared_data)

    meta = json.loads((out / "metadata.json").read_text())
    assert meta["sha256"] == T.sha256(out / "model.pt")
    assert meta["training_steps"] == 40 and meta["recipe"]["workers"] == 2 and meta["device"] == "cpu"
    assert meta["recent_loss"] < 0.9 * meta["first_loss"], "loss did not decrease over 40 steps"
    pred = Predictor(out, device="cpu")                       # checks the sha256 before loading
    rng = np.random.default_rng(0)
    bl = rng.uniform(0.8, 1.2, (40, 48, 6)).astype(np.float32)
    prob = pred.probability(bl, bl.copy(), np.ones(bl.shape, bool))
    assert prob.shape == bl.shape and np.isfinite(prob).all() and 0 <= prob.min() <= prob.max() <= 1


@pytest.mark.slow
def test_auxiliary_head_trains_and_its_model_predicts_new_lesions_only(tmp_path, shared_data, tiny_train_recipe):
    """A model with the auxiliary lesion head trains from a one-channel model and loads for inference, which
    returns the new-lesion channel only."""
    from pmlseg.detect.network import DEFAULT_CONFIG, build_network
    from pmlseg.detect.predictor import Predictor
    import torch

    config = dict(DEFAULT_CONFIG, features=[8, 8, 16, 16, 32, 8])
    init = tmp_path / "one.pt"
    torch.save(build_network(config).state_dict(), init)
    recipe = tiny_train_recipe
    out = tmp_path / "aux"
    T.train(out, recipe, dict(config, aux_lesion_head=True), shared_data, init=init)
    pred = Predictor(out, device="cpu")
    assert pred.config["aux_lesion_head"] and pred.torchscript is not None
    import torch

    with torch.no_grad():
        assert pred.net(torch.zeros(1, 9, 64, 64)).shape[1] == 2           # both heads, traced
    bl = np.random.default_rng(0).uniform(0.8, 1.2, (40, 48, 6)).astype(np.float32)
    prob = pred.probability(bl, bl.copy(), np.ones(bl.shape, bool))
    assert prob.shape == bl.shape and 0 <= prob.min() <= prob.max() <= 1


def test_encoder_head_trains_beside_the_network_and_is_not_saved(tmp_path, shared_data, tiny_train_recipe):
    """The auxiliary lesion task on the encoder only (recipe aux_encoder_head): trained on every lesion the pair
    shows, at the encoder's 1/4 resolution, and left out of the saved model, which stays one-channel."""
    import torch

    from pmlseg.detect.network import DEFAULT_CONFIG, build_network
    from pmlseg.detect.predictor import Predictor

    config = dict(DEFAULT_CONFIG, features=[8, 8, 16, 16, 32, 8])
    recipe = dict(tiny_train_recipe, aux_encoder_head=True)
    T.train(tmp_path / "enc", recipe, config, shared_data)
    state = torch.load(tmp_path / "enc" / "model.pt", map_location="cpu")
    assert state["final_conv.weight"].shape[0] == 1 and set(state) == set(build_network(config).state_dict())
    pred = Predictor(tmp_path / "enc", device="cpu")
    assert not pred.config["aux_lesion_head"]
    with torch.no_grad():
        assert pred.net(torch.zeros(1, 9, 64, 64)).shape[1] == 1
    meta = json.loads((tmp_path / "enc" / "metadata.json").read_text())
    assert 0 < meta["recent_encoder_head_loss"] < 10  # the head's DiceCE was part of every step's loss


@pytest.mark.slow
def test_visibility_label_only_adds_new_voxels_to_the_same_pair():
    """visible_change draws no random numbers: same seed, same images, a superset of the label."""
    from pmlseg.detect import pairs
    from pmlseg.detect.synthcase import icbm_source

    src = icbm_source()
    grew = 0
    for seed in (100, 103):
        a = pairs.make_pair(src, np.random.default_rng(seed), [])
        b = pairs.make_pair(src, np.random.default_rng(seed), [], visible_change=0.12)
        assert np.array_equal(a["fu"], b["fu"]) and np.array_equal(a["bl"], b["bl"])
        assert not (a["label"] & ~b["label"]).any()
        grew += int(b["label"].sum() - a["label"].sum())
    assert grew > 0


def test_cortical_ribbon_is_the_outer_tissue_shell():
    from pmlseg.detect.pairs import Source, cortical_ribbon

    g = np.indices((41, 41, 41)).astype(np.float32) - 20
    r = np.sqrt((g ** 2).sum(0))
    mask = r <= 18
    image = np.where(mask, 1.0, 0.0).astype(np.float32)
    w = cortical_ribbon(Source("ball", image, mask, np.zeros_like(mask), np.zeros((0, 3), int))).astype(np.float32)
    assert w[(r > 15) & (r <= 17)].min() > 0.9          # within 5 mm of the edge
    assert w[r < 10].max() < 0.01 and w[~mask].max() < 0.7  # deep tissue untouched, outside only the blur


@pytest.mark.slow
def test_fine_slice_pair_covers_the_same_brain_on_finer_slices():
    """slice_mm: same brain, lesions and baseline geometry (same seed), slices every slice_mm instead."""
    from pmlseg.detect import pairs
    from pmlseg.detect.synthcase import icbm_source

    src = icbm_source()
    a = pairs.make_pair(src, np.random.default_rng(4), [])
    b = pairs.make_pair(src, np.random.default_rng(4), [], slice_mm=1.5)
    assert b["spacing"][2] == 1.5 and a["spacing"][2] > 1.5
    assert b["bl"].shape[:2] == a["bl"].shape[:2]
    assert abs((b["bl"].shape[2] - 1) * 1.5 - (a["bl"].shape[2] - 1) * a["spacing"][2]) < 1.5
    vol = [p["mask"].sum() * np.prod(p["spacing"]) for p in (a, b)]
    assert abs(vol[0] - vol[1]) < 0.03 * vol[0], vol
    assert b["label"].any() and not (b["label"] & ~b["mask"]).any()
    for p in (a, b):  # both visits normalised to median brain 1
        assert abs(np.median(p["bl"][p["mask"]].astype(np.float32)) - 1) < 0.02


def test_real_lesions_inpainted_out_of_the_baseline_become_new():
    """real_as_new: the brain's own lesion is filled from the tissue around it at baseline (within its noise) and
    labelled new; the follow-up keeps the lesion as it is, and without the option nothing of it is labelled."""
    from pmlseg.detect.pairs import Source, insert_lesions

    rng = np.random.default_rng(0)
    g = np.indices((48, 48, 48)).astype(np.float32) - 24
    mask = np.sqrt((g ** 2).sum(0)) <= 22
    image = np.where(mask, rng.normal(1.0, 0.03, mask.shape), 0).astype(np.float32)
    lesion = np.sqrt(((g - np.array([6, 0, 0])[:, None, None, None]) ** 2).sum(0)) <= 3.5  # 179 voxels
    image[lesion] = 1.5
    src = Source("ball", image, mask, lesion, np.argwhere(mask & ~lesion)[::50])
    bl, fu, new, added = insert_lesions(src, np.random.default_rng(1), [], real_as_new=1.0)
    assert new[lesion].all() and abs(float(bl[lesion].mean()) - 1.0) < 0.05 and bl[lesion].std() < 0.05
    assert np.allclose(fu[lesion] / fu[lesion].mean(), 1.0) and fu[lesion].mean() > 1.4  # kept, at most rescaled
    assert float(added[lesion].mean()) > 0.4
    _, _, new_off, _ = insert_lesions(src, np.random.default_rng(1), [], real_as_new=None)
    assert not new_off[lesion].any()


def test_auxiliary_lesion_target_covers_every_follow_up_lesion_and_leaves_the_pair_unchanged():
    """all_lesions draws no random numbers (same pair with or without it) and marks the brain's own lesion and the
    new ones, but no voxel the follow-up does not show as lesion; a one-channel model starts both heads."""
    import torch

    from pmlseg.detect import pairs
    from pmlseg.detect.network import DEFAULT_CONFIG, build_network

    rng = np.random.default_rng(0)
    g = np.indices((64, 64, 64)).astype(np.float32) - 32
    mask = np.sqrt((g ** 2).sum(0)) <= 30
    image = np.where(mask, rng.normal(1.0, 0.03, mask.shape), 0).astype(np.float32)
    lesion = np.sqrt(((g - np.array([10, 0, 0])[:, None, None, None]) ** 2).sum(0)) <= 4
    image[lesion] = 1.5
    src = pairs.Source("ball", image, mask, lesion, np.argwhere(mask & ~lesion)[::40])
    a = pairs.make_pair(src, np.random.default_rng(3), [])
    b = pairs.make_pair(src, np.random.default_rng(3), [], all_lesions=True)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not (b["label"] & ~b["all_lesions"]).any()
    assert b["all_lesions"].sum() > b["label"].sum() + 50        # the old lesion is in it, not labelled new
    assert float(b["fu"][b["all_lesions"]].mean()) > float(b["fu"][b["mask"] & ~b["all_lesions"]].mean()) + 0.2

    one = build_network(dict(DEFAULT_CONFIG, features=[8, 8, 16, 16, 32, 8]))
    two = build_network(dict(DEFAULT_CONFIG, features=[8, 8, 16, 16, 32, 8], aux_lesion_head=True))
    T.load_init(two, one.state_dict())
    x = torch.randn(2, 9, 32, 32)
    with torch.no_grad():
        y1, y2 = one(x), two(x)
    assert y2.shape[1] == 2 and torch.allclose(y2[:, :1], y1, atol=1e-5) and torch.allclose(y2[:, 1:], y1, atol=1e-5)
    patch, target = T.sample_patch(b, np.random.default_rng(0), 32, 1, positive=True)
    assert target.shape == (2, 32, 32) and patch.shape == (9, 32, 32)
