"""`pmlseg demo` grades itself: detector_check.json, the printed summary and the index box, from the truth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from pmlseg.detect.metrics import lesion_metrics
from pmlseg.errors import PmlsegError
from pmlseg.synth.grade import CHECK_FILE, grade, truth_on_grid

REPO = Path(__file__).resolve().parents[1]
# keep it cheap: raw FLAIRs, classical detection, no detection against the previous visit (the grading is
# under test, not the detector); three visits, so visit 3's truth is the union of two intervals
FAST = ["--config", "preprocess=false", "detect_method=classical", "detect_previous=false", "today=2022-01-01"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("grade") / "demo"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "pmlseg", "demo", str(root), "--patients", "1", "--visits", "3",
                        "--seed", "3", "--cores", "2", *FAST], capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=1500)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return root, p.stdout


def _copy_out(results: Path, dest: Path) -> Path:
    """The files grading reads, copied so a test can replace the predictions."""
    for rel in ("identity.tsv", "manifest.tsv"):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(results / rel, dest / rel)
    for d in results.glob("derivatives/pmlseg/sub-*/ses-*/detect-rebaseline"):
        shutil.copytree(d, dest / d.relative_to(results))
    return dest


@pytest.mark.slow
def test_demo_prints_writes_and_shows_its_grading(demo):
    root, stdout = demo
    check = json.loads((root / "results" / CHECK_FILE).read_text())
    rows = check["followups"]
    assert [(r["session"], r["visit"], r["rebaseline_visit"], r["graded"]) for r in rows] == \
        [("ses-02", 2, 1, True), ("ses-03", 3, 1, True)]
    # every follow-up of the synthetic patient has new/enlarging truth; figures recomputed from the files
    assert all(r["gt"] > 0 for r in rows)
    synth = root / "synth"
    for r in rows:
        pred = sitk.ReadImage(str(root / "results" / r["new_lesions"]))
        truth = truth_on_grid(synth, "SYN-0001", 1, r["visit"], pred)
        m = lesion_metrics(sitk.GetArrayFromImage(pred), sitk.GetArrayFromImage(truth) > 0, pred.GetSpacing())
        assert (m["gt"], m["pred"], m["tp_gt"], m["tp_pred"]) == (r["gt"], r["pred"], r["tp_gt"], r["tp_pred"])
    p = check["pooled"]
    assert p["gt"] == sum(r["gt"] for r in rows) and p["tp_gt"] == sum(r["tp_gt"] for r in rows)
    assert p["sens"] == pytest.approx(p["tp_gt"] / p["gt"], abs=1e-4)
    # printed and shown in the index: the same figures, no identifiers
    line = f"sensitivity {p['sens']:.2f} ({p['tp_gt']} of {p['gt']} true lesions found)"
    assert "Detector check on this synthetic cohort" in stdout and line in stdout
    page = (root / "results" / "index.html").read_text()
    assert "Detector check on this synthetic cohort" in page and line in page
    for text in (page, (root / "results" / CHECK_FILE).read_text()):
        assert "SYN-0001" not in text


@pytest.mark.slow
def test_truth_follows_the_true_transform(demo):
    """Visit 2's truth built from the template matches its FLAIR-grid truth moved with baseline_to_this_visit.tfm."""
    root, _ = demo
    gt = root / "synth" / "ground_truth" / "SYN-0001"
    ref = sitk.ReadImage(str(root / "results" / "derivatives/pmlseg/sub-001/ses-02/detect-rebaseline/new_lesions.nii.gz"))
    mine = sitk.GetArrayFromImage(truth_on_grid(root / "synth", "SYN-0001", 1, 2, ref)) > 0
    moved = sitk.Resample(sitk.ReadImage(str(gt / "visit-2" / "new_or_enlarging.nii.gz")), ref,
                          sitk.ReadTransform(str(gt / "visit-2" / "baseline_to_this_visit.tfm")),
                          sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    theirs = sitk.GetArrayFromImage(moved) > 0
    assert mine.sum() > 100
    # voxel-wise the two differ by one nearest-neighbour step more on the second path (Dice 0.71-0.85 on the
    # default demo cohort); lesion by lesion they are the same lesions
    assert 2 * (mine & theirs).sum() / (mine.sum() + theirs.sum()) > 0.6
    for a, b in ((theirs, mine), (mine, theirs)):
        m = lesion_metrics(a, b, ref.GetSpacing())
        assert m["gt"] >= 1 and m["sens"] == 1.0, m


@pytest.mark.slow
def test_perfect_empty_and_missing_predictions(demo, tmp_path):
    root, _ = demo
    out = _copy_out(root / "results", tmp_path / "out")
    maps = sorted(out.glob("derivatives/pmlseg/sub-001/ses-*/detect-rebaseline/new_lesions.nii.gz"))
    assert len(maps) == 2
    for visit, path in enumerate(maps, start=2):
        img = sitk.ReadImage(str(path))
        truth = truth_on_grid(root / "synth", "SYN-0001", 1, visit, img)
        sitk.WriteImage(sitk.Cast(sitk.ConnectedComponent(truth, True), sitk.sitkUInt16), str(path))
    p = grade(out, root / "synth")["pooled"]
    assert (p["sens"], p["prec"], p["f1"], p["fp_per_followup"]) == (1.0, 1.0, 1.0, 0.0) and p["gt"] >= 2

    for path in maps:
        img = sitk.ReadImage(str(path))
        sitk.WriteImage(img * 0, str(path))
    check = grade(out, root / "synth")
    p = check["pooled"]
    assert (p["sens"], p["pred"], p["prec"], p["f1"]) == (0.0, 0, None, 0.0) and p["gt"] >= 2
    assert json.loads((out / CHECK_FILE).read_text()) == check

    # a follow-up whose detection failed is listed, not graded, and left out of the pooled figures
    status = maps[1].parent / "status.json"
    status.write_text(json.dumps({"status": "failed", "reason": "registration QC failed"}))
    check = grade(out, root / "synth")
    assert [r["graded"] for r in check["followups"]] == [True, False]
    assert "registration QC failed" in check["followups"][1]["reason"]
    assert check["pooled"]["followups"] == 1 and check["pooled"]["not_graded"] == 1


@pytest.mark.slow
def test_a_run_on_another_cohort_is_refused(demo, tmp_path):
    root, _ = demo
    out = _copy_out(root / "results", tmp_path / "out")
    ident = out / "identity.tsv"
    ident.write_text(ident.read_text().replace("SYN-0001", "SYN-0099"))
    with pytest.raises(PmlsegError, match="identity.tsv: sub-001 ses-02 or its rebaseline matches no visit"):
        grade(out, root / "synth")
    assert not (out / CHECK_FILE).exists()


def test_demo_refuses_a_bad_config_before_any_work(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pmlseg", "demo", str(tmp_path / "demo"), "--config", "detect_method"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 65 and "--config detect_method: expected KEY=VALUE" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "demo").exists()
