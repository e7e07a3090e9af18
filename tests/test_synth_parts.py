"""The synth building blocks the detection engineer reuses: anatomy, lesions, contrasts, acquisition, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from pmlseg.cli import main
from pmlseg.synth import acquisition as acq
from pmlseg.synth import anatomy, contrast, lesions


@pytest.fixture(scope="module")
def tissues():
    return anatomy.load_template()


@pytest.fixture(scope="module")
def patient(tissues):
    les = lesions.plan_patient(tissues, np.random.default_rng(7), n_visits=3, pml=True)
    return les


def test_template_tissues_are_fractions(tissues):
    total = tissues.gm + tissues.wm + tissues.csf + tissues.bone + tissues.fat
    assert total.max() <= 1.0 + 1e-5 and tissues.gm.min() >= 0
    assert 400_000 < (tissues.wm > 0.5).sum() < 800_000      # ~0.5 L of white matter at 1 mm
    assert tissues.ventricles.sum() > 10_000
    assert abs(np.linalg.det(tissues.affine[:3, :3]) - 1.0) < 1e-6


def test_lesion_histories(tissues, patient):
    ms = [les for les in patient if les.kind == "ms"]
    pml = [les for les in patient if les.kind == "pml" and les.location != "satellite"]
    assert len(pml) == 1 and len([les for les in patient if les.location == "satellite"]) >= 3
    # PML appears at the second-last visit and grows at the last
    assert pml[0].status(0) == "absent" and pml[0].status(1) == "new" and pml[0].status(2) == "enlarging"
    for v in (1, 2):
        assert any(les.status(v) == "new" for les in ms)
    stable = sum(les.status(2) == "stable" for les in ms)
    assert stable > len(ms) / 2, "most lesions are unchanged"
    for les in ms:
        diameter = 2 * les.radii.max()
        assert 3.0 <= diameter <= 15.0
    assert len({les.id for les in patient}) == len(patient)


def test_lesion_masks_lie_in_white_matter(tissues, patient):
    maps = lesions.render_lesions(patient, tissues, 2)
    assert set(np.unique(maps.labels)) - {0} <= {les.id for les in patient}
    for les in patient:
        box, frac = maps.fractions[les.id]
        inside = frac > 0.5
        assert inside.sum() > 0, les
        assert np.mean(tissues.wm[box][inside] > 0.5) > 0.9, (les.kind, les.location)


@pytest.mark.parametrize("seed", [12, 20, 25])
def test_every_lesion_is_visible_in_the_truth(tissues, seed):
    """No row in lesions.tsv without voxels: each present lesion keeps its own label at every visit."""
    n_visits = 3
    history = lesions.plan_patient(tissues, np.random.default_rng(seed), n_visits, pml=True)
    assert sorted(les.id for les in history) == list(range(1, len(history) + 1))
    for v in range(n_visits):
        maps = lesions.render_lesions(history, tissues, v)
        present = {les.id for les in history if les.scale[v] > 0}
        assert set(np.unique(maps.labels).tolist()) - {0} == present
        for les in history:  # no lesion is swallowed by another (PML lobes vs satellites, MS lesions)
            if les.scale[v] > 0:
                box, frac = maps.fractions[les.id]
                assert np.mean(maps.labels[box][frac > 0.5] == les.id) > 0.9, (seed, v, les.id, les.location)


def test_pml_reaches_cortex_and_grows(tissues, patient):
    (pml,) = [les for les in patient if les.kind == "pml" and les.location != "satellite"]
    sizes = []
    for v in (1, 2):
        box, frac = lesions.lesion_fraction(pml, tissues, v)
        inside = frac > 0.5
        sizes.append(inside.sum())
        # touches the GM/WM boundary (juxtacortical, U-fibres) ...
        assert tissues.dist_cortex[box][inside].min() < 2.0
        # ... and is irregular: clearly less compact than a sphere of the same volume
        r_eq = (3 * inside.sum() / (4 * np.pi)) ** (1 / 3)
        assert inside.sum() > 500 and r_eq > 5
    assert sizes[1] > 1.5 * sizes[0]
    maps = lesions.render_lesions(patient, tissues, 1)
    assert maps.pml_edge.max() > 0.5  # active edge for DWI


def test_contrasts_have_clinical_ordering(tissues, patient):
    maps = lesions.render_lesions(patient, tissues, 2)
    gm, wm, csf = tissues.gm > 0.9, (tissues.wm > 0.95) & (maps.ms + maps.pml == 0), tissues.ventricles
    ms = maps.ms > 0.8
    pml_edge = maps.pml_edge > 0.8
    mean = {m: {} for m in contrast.MODALITIES}
    for m in contrast.MODALITIES:
        img = contrast.render(tissues, maps, m)
        for name, mask in (("gm", gm), ("wm", wm), ("csf", csf), ("ms", ms), ("edge", pml_edge)):
            mean[m][name] = float(img[mask].mean())
    f, t1, t2, b1000 = mean["FLAIR"], mean["T1w"], mean["T2w"], mean["DWI_b1000"]
    assert f["csf"] < f["wm"] < f["gm"] < f["ms"]
    assert t1["wm"] > t1["gm"] > t1["csf"] and t1["ms"] < 0.85 * t1["wm"]
    assert t2["csf"] > t2["gm"] > t2["wm"] and t2["ms"] > t2["wm"]
    assert b1000["edge"] > 1.5 * b1000["wm"] and b1000["csf"] < b1000["wm"]
    with pytest.raises(ValueError):
        contrast.render(tissues, maps, "PD")


def test_acquisition_geometry_bias_noise(tissues):
    rng = np.random.default_rng(3)
    grid = acq.make_grid("axial", (160, 160, 30), (1.4, 1.4, 5.0), tilt_deg=(6, 0, 0))
    ref = grid.reference()
    assert ref.GetSize() == (160, 160, 30)
    assert np.allclose(np.asarray(ref.GetOrigin()), grid.slice_positions()[0])
    # slices run along the normal, spaced by the slice spacing
    steps = np.diff(grid.slice_positions(), axis=0)
    assert np.allclose(steps @ grid.direction[:, 2], 5.0)
    bias = acq.bias_field(grid, rng)
    assert bias.shape == (30, 160, 160)
    x, y, z = grid.physical_points()
    head = np.sqrt((x - acq.HEAD_CENTER_LPS[0]) ** 2 + (y - acq.HEAD_CENTER_LPS[1]) ** 2
                   + (z - acq.HEAD_CENTER_LPS[2]) ** 2) < 70
    assert 0.65 < bias[head].min() and bias[head].max() < 1.5 and bias[head].std() > 0.02
    assert abs(np.median(bias[head]) - 1) < 0.2
    motion = acq.random_motion(rng)
    m = np.asarray(motion.GetMatrix()).reshape(3, 3)
    s = np.linalg.svd(m, compute_uv=False)
    assert np.all(np.abs(s - 1) <= 0.021)
    angle = np.degrees(np.arccos(np.clip((np.trace(m / s.mean()) - 1) / 2, -1, 1)))
    assert 0 < angle < 8
    flair = contrast.render(tissues, None, "FLAIR")
    img = acq.acquire(flair, tissues, grid, motion, bias, 0.02, rng)
    arr = __import__("SimpleITK").GetArrayViewFromImage(img)
    assert arr.shape == (30, 160, 160)
    # background is Rician noise: positive, mean ~ sigma * sqrt(pi/2)
    corner = arr[:, :10, :10]
    assert corner.min() >= 0 and 0.015 < corner.mean() < 0.035
    # thick slices are blurred through-plane: labels resample without that blur
    lab = acq.resample(np.ones(tissues.shape, np.int16), tissues.affine, grid, motion, labels=True)
    assert __import__("SimpleITK").GetArrayViewFromImage(lab).max() == 1


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    def run(*argv) -> str:
        assert main(["synth", *map(str, argv)]) == 65
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        return err

    full = tmp_path / "full"
    full.mkdir()
    (full / "x.txt").write_text("keep me")
    err = run(full)
    assert "not empty" in err and str(full) in err
    assert "not a previous" in run(full, "--force")  # --force never deletes an arbitrary folder
    assert (full / "x.txt").read_text() == "keep me"
    assert "--patients" in run(tmp_path / "a", "--patients", "0")
    assert "--visits" in run(tmp_path / "b", "--visits", "1")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    afile = tmp_path / "file"
    afile.write_text("")
    assert "not a folder" in run(afile)


def test_cli_help_explains_outputs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("ground_truth", "dicom", "--patients", "--visits", "--seed", "dcm2niix", "PML"):
        assert word in text
