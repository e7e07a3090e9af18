"""The workflow grows linearly: manifest read once, one detection job per patient reusing its model and
template fits, per-visit results kept across re-runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pmlseg.errors import PmlsegError
from pmlseg.workflow import detect_patient as D
from pmlseg.workflow import manifest as M

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def test_manifest_is_read_once_per_change(tmp_path, monkeypatch):
    from workflow_scale import fake_ingest

    _dicom, out = fake_ingest(tmp_path, 3, 4)
    reads = []
    real = M.read_manifest
    monkeypatch.setattr(M, "read_manifest", lambda p: reads.append(p) or real(p))
    idx = M.manifest_index(out / "manifest.tsv")
    for _ in range(100):
        assert M.manifest_index(out / "manifest.tsv") is idx
    assert len(reads) == 1
    assert idx.subjects == ["sub-001", "sub-002", "sub-003"]
    assert idx.rebaselines["sub-002"]["session"] == "ses-01"
    assert [r["session"] for r in idx.followups["sub-003"]] == ["ses-02", "ses-03", "ses-04"]
    assert idx.visits["sub-001", "ses-03"]["previous"] == "ses-02"
    # a rewritten manifest (the checkpoint ran again) is read again
    rows = real(out / "manifest.tsv")[:4]
    M.write_tsv(out / "manifest.tsv", rows, M.COLUMNS)
    os.utime(out / "manifest.tsv", ns=(1, 10**18))
    assert M.manifest_index(out / "manifest.tsv").subjects == ["sub-001"] and len(reads) == 2


def _cases(tmp_path):
    for name in ("bl", "fu1", "fu2", "fu3"):
        (tmp_path / f"{name}.nii.gz").write_bytes(name.encode())
    ok, bad = tmp_path / "reg_ok.json", tmp_path / "reg_bad.json"
    ok.write_text(json.dumps({"status": "ok"}))
    bad.write_text(json.dumps({"status": "failed", "reason": "registration QC failed: similarity 0.1",
                               "stage": "register"}))
    return [{"status": str(tmp_path / f"d{i}" / "status.json"), "out": str(tmp_path / f"d{i}"),
             "baseline": str(tmp_path / "bl.nii.gz"), "followup": str(tmp_path / f"fu{i}.nii.gz"),
             "requires": [str(ok if i != 2 else bad)], "log": str(tmp_path / "logs" / f"d{i}.log")}
            for i in (1, 2, 3)]


def test_one_job_detects_all_follow_ups_with_one_model_and_keeps_done_ones(tmp_path, monkeypatch, caplog):
    from pmlseg.detect import pipeline

    caplog.set_level("INFO")  # what `pmlseg --log-level INFO` (the default) sets
    calls, built = [], []

    def fake_run_case(baseline, followup, out, **kw):
        calls.append(Path(followup).name)
        assert kw["predictor"] is (built[-1] if kw["method"] == "model" else None)  # the one built in this job
        if followup.endswith("fu3.nii.gz"):
            raise PmlsegError(f"{followup}: follow-up FLAIR is not a 3D image")
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "qc.json").write_text("{}")
        pipeline.log.info("detected in %s", out)

    monkeypatch.setattr(pipeline, "run_case", fake_run_case)
    factory = lambda model, device: built.append(object()) or built[-1]  # noqa: E731
    cases = _cases(tmp_path)
    counts = D.run_cases(cases, predictor_factory=factory)
    assert counts == {"ran": 1, "skipped": 0, "failed": 2} and len(built) == 1
    assert calls == ["fu1.nii.gz", "fu3.nii.gz"]           # fu2's registration failed: not run
    st = [json.loads(Path(c["status"]).read_text()) for c in cases]
    assert st[0]["status"] == "ok"
    assert st[1]["status"] == "failed" and "similarity 0.1" in st[1]["reason"] and st[1]["skipped"]
    assert st[2]["status"] == "failed" and st[2]["reason"].endswith("fu3.nii.gz: follow-up FLAIR is not a 3D image")
    assert "detected in" in (tmp_path / "logs" / "d1.log").read_text()      # each case keeps its own log
    assert "not a 3D image" in (tmp_path / "logs" / "d3.log").read_text()
    # progress a person can follow in the job's log: which case of how many, and when it finished
    assert "detection 1 of 3" in caplog.text and "detection 1 of 3 done in" in caplog.text
    assert "detection 3 of 3" in caplog.text and "detection 3 of 3 done" not in caplog.text  # it failed

    # re-run (a new visit arrived): nothing is redone, the model is not even loaded
    calls.clear()
    assert D.run_cases(cases, predictor_factory=factory) == {"ran": 0, "skipped": 3, "failed": 0}
    assert calls == [] and len(built) == 1
    # a changed input (re-registered, new file) redoes that case only
    (tmp_path / "fu1.nii.gz").write_bytes(b"changed")
    assert D.run_cases(cases, predictor_factory=factory)["ran"] == 1 and calls == ["fu1.nii.gz"]
    # a registration that failed on a re-run redoes the case (recorded as failed, not kept as ok)
    calls.clear()
    Path(cases[0]["requires"][0]).write_text(json.dumps({"status": "failed", "reason": "QC failed now"}))
    assert D.run_cases(cases, predictor_factory=factory)["failed"] == 2 and calls == []  # d1 and d3 need it
    assert json.loads(Path(cases[0]["status"]).read_text())["reason"] == "QC failed now"
    # another method is another result
    calls.clear()
    assert D.run_cases(cases, method="classical")["skipped"] == 0


def test_cases_are_checked():
    with pytest.raises(PmlsegError, match="--cases: not JSON"):
        D.read_cases("[{")
    with pytest.raises(PmlsegError, match=r"case /o: missing \['baseline', 'followup'\], unknown \['extra'\]"):
        D.read_cases(json.dumps([{"status": "s", "out": "/o", "extra": 1}]))


def test_template_fits_are_reused_for_the_same_image_content():
    from pmlseg.memo import by_image_content

    runs = []

    @by_image_content(maxsize=2)
    def fit(img, name="x"):
        runs.append(name)
        return sitk.GetArrayViewFromImage(img).sum()

    a = sitk.GetImageFromArray(np.arange(64, dtype=np.float32).reshape(4, 4, 4))
    same = sitk.GetImageFromArray(np.arange(64, dtype=np.float32).reshape(4, 4, 4))   # read again: same content
    moved = sitk.Image(same)
    moved.SetOrigin((1.0, 0.0, 0.0))
    assert fit(a) == fit(same) and runs == ["x"] and fit.hits == 1
    fit(moved)                                   # other geometry: another fit
    fit(a, name="y")                             # other arguments: another fit
    assert runs == ["x", "x", "y"]

    @by_image_content(maxsize=2, ignore=("name",))
    def named_fit(img, *, name):
        runs.append(name)
        return name

    assert named_fit(a, name="followup T1w") == named_fit(same, name="baseline T1w") == "followup T1w"
    assert runs[-1] == "followup T1w" and named_fit.hits == 1   # a name for messages is not part of the key
    from pmlseg.characterise.location import register_to_template
    from pmlseg.detect.same_session import intra_visit_transform
    from pmlseg.registration.preprocess import brain_mask

    assert all(hasattr(f, "hits") for f in (brain_mask, register_to_template, intra_visit_transform))


@pytest.mark.shared
def test_work_ahead_from_the_registration_job_is_the_detections(shared_data, tmp_path):
    """`pmlseg register --template-fit ... --same-session ...` leaves the rebaseline's template fit and the follow-up's
    same-session registrations for the detection job: read back, they are what brain_mask and register_optional
    return for those images (no second fit or registration); ones made from other voxels are not used."""
    from pmlseg.detect.predictor import read_image
    from pmlseg.registration.affine import check_image
    from pmlseg.registration.preprocess import brain_mask
    from pmlseg.registration.template_fit import use_template_fit

    d = shared_data / "ljubljana-longitudinal/patient01"
    env = dict(os.environ, OMP_NUM_THREADS="2", ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="2")
    p = subprocess.run([sys.executable, "-m", "pmlseg", "register", str(d / "study1_FLAIR.nii.gz"),
                        str(d / "study2_FLAIR.nii.gz"), "--template-fit", str(d / "study1_FLAIR.nii.gz"),
                        str(tmp_path / "fit" / "reb.json"), "--same-session", str(tmp_path / "ss" / "fu.json"),
                        str(d / "study2_T1W.nii.gz"), str(d / "study2_T2W.nii.gz"), "--transform", str(tmp_path / "t.tfm")],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stderr.count("-> ICBM152 template in") == 1  # FIXED's metric mask came out of that one fit
    assert sorted(f.name for f in (tmp_path / "fit").iterdir()) == ["reb.json", "reb_affine.tfm", "reb_mask-4mm.nii.gz",
                                                                   "reb_mask.nii.gz"]
    assert (tmp_path / "t.tfm").is_file()
    # a later follow-up's registration (here the same pair again) takes its metric mask from that fit: no fit, same result
    p = subprocess.run([sys.executable, "-m", "pmlseg", "register", str(d / "study1_FLAIR.nii.gz"),
                        str(d / "study2_FLAIR.nii.gz"), "--rebaseline-fit", str(tmp_path / "fit" / "reb.json"),
                        "--transform", str(tmp_path / "t2.tfm")], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "-> ICBM152 template in" not in p.stderr and "4 mm brain mask reused" in p.stderr
    same = [sitk.ReadTransform(str(tmp_path / f)).GetParameters() for f in ("t.tfm", "t2.tfm")]
    assert np.allclose(*same, atol=1e-6), same                # equal but for ITK threads' last bits
    # the follow-up's T1/T2 registrations: the detection's register_optional takes them instead of registering
    from pmlseg.detect.pipeline import register_optional
    from pmlseg.detect.same_session import intra_visit_transform

    optional = {"followup_t1": str(d / "study2_T1W.nii.gz"), "followup_t2": str(d / "study2_T2W.nii.gz")}
    fu = read_image(d / "study2_FLAIR.nii.gz", "follow-up FLAIR")
    intra_visit_transform.cache_clear()
    hits = intra_visit_transform.hits
    done = register_optional(optional, {"followup": fu}, tmp_path / "ss" / "fu.json")
    assert intra_visit_transform.hits == hits + 2 and set(done) == set(optional)
    written = [sitk.ReadTransform(str(tmp_path / "ss" / f"fu_{i}_rigid.tfm")) for i in (0, 1)]
    assert [t.GetParameters() for t in written] == [done[k][1].GetParameters() for k in optional]
    intra_visit_transform.cache_clear()
    hits = intra_visit_transform.hits
    register_optional({"followup_t1": optional["followup_t1"]}, {"followup": sitk.Image(fu) + 1.0},
                      tmp_path / "ss" / "fu.json")           # another FLAIR: registered again
    assert intra_visit_transform.hits == hits
    flair = read_image(d / "study1_FLAIR.nii.gz", "rebaseline FLAIR")
    brain_mask.cache_clear()
    assert use_template_fit(flair, tmp_path / "fit" / "reb.json")
    hits = brain_mask.hits
    mask, tfm = brain_mask(check_image(flair, "x"), "FLAIR", name="rebaseline", return_transform=True)
    assert brain_mask.hits == hits + 1 and tfm.GetName() == "AffineTransform"
    written = sitk.ReadImage(str(tmp_path / "fit" / "reb_mask.nii.gz"))
    assert np.array_equal(sitk.GetArrayViewFromImage(mask), sitk.GetArrayViewFromImage(written))
    assert 1.0e6 < sitk.GetArrayViewFromImage(mask).sum() * np.prod(flair.GetSpacing()) < 2.0e6  # an adult brain, mm3
    other = sitk.Image(flair)
    other[10, 10, 5] = other[10, 10, 5] + 1.0
    brain_mask.cache_clear()
    assert not use_template_fit(other, tmp_path / "fit" / "reb.json")
    assert not use_template_fit(flair, tmp_path / "nothing.json")


def test_dry_run_plans_one_detection_job_per_patient(tmp_path):
    from workflow_scale import fake_ingest

    from pmlseg.workflow.snakemake_runner import snakemake_command

    dicom, out = fake_ingest(tmp_path, 5, 4)
    p = subprocess.run(snakemake_command(dicom, out, cores=1, dry_run=True, extra=["--quiet", "rules"]),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    counts = {}
    for line in p.stdout.split("Job stats:")[1].splitlines()[3:]:
        if not line.strip():
            break
        rule, n = line.split()
        counts[rule] = int(n)
    # raw FLAIRs are registered by default (configs/config.yaml `preprocess: false`): no preprocessing jobs
    assert counts["detect"] == 5 and counts["register"] == 15 and "preprocess" not in counts
    assert counts["track"] == 5 and counts["chain_previous"] == 10
    # each patient's first follow-up registration also fits the template to the rebaseline, for its detection
    p = subprocess.run(snakemake_command(dicom, out, cores=1, dry_run=True, extra=["-p", "--quiet", "progress"]),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    fits = [ln for ln in p.stdout.splitlines() if " register " in ln and "--template-fit" in ln]
    assert len(fits) == 5 and all("_template-fit.json" in ln for ln in fits)
    assert p.stdout.count('"template_fit": ') == 15       # the detections against the rebaseline, not the previous visit


def test_slurm_profile_submits_one_group_job_per_patient(tmp_path):
    """What `pmlseg run --executor slurm` plans (dry run: nothing is submitted, no cluster needed)."""
    from workflow_scale import fake_ingest

    from pmlseg.workflow.snakemake_runner import snakemake_command

    dicom, out = fake_ingest(tmp_path, 3, 3)
    cmd = snakemake_command(dicom, out, dry_run=True, config=["preprocess=true"])  # the group with every stage
    cmd[cmd.index("--workflow-profile") + 1] = str(REPO / "workflow" / "profiles" / "slurm")
    p = subprocess.run([*cmd, "--executor", "slurm", "--jobs", "4", "--slurm-no-account"], capture_output=True,
                       text=True, timeout=300)
    text = p.stdout + p.stderr
    assert p.returncode == 0, text[-3000:]
    groups = text.split("Group job patient")[1:]
    assert len(groups) == 3                       # 3 submissions for 9 visits (+ ingest, already done here)
    for g in groups:
        body = g.split("\nrule ")[0]             # up to the next job outside the group
        assert body.count("rule preprocess:") == 3 and body.count("rule register:") == 2
        assert body.count("rule detect:") == 1 and body.count("rule chain_previous:") == 1


def test_cores_go_to_the_follow_ups_still_to_do(tmp_path):
    """On 2 cores two patients' new follow-ups share them (one thread per job); once one patient is done, the
    other's registration and detection get both (a surveillance export grows a visit at a time)."""
    import re

    from workflow_scale import fake_ingest

    from pmlseg.workflow import layout
    from pmlseg.workflow.snakemake_runner import snakemake_command

    dicom, out = fake_ingest(tmp_path, 2, 2)

    def threads():
        p = subprocess.run(snakemake_command(dicom, out, cores=2, dry_run=True, extra=["-p", "--quiet", "progress"]),
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
        found = {}
        for ln in p.stdout.splitlines():
            m = re.search(r"OMP_NUM_THREADS=(\d+) .* (register|detect-patient) ", ln)
            if m:
                sub = re.search(r"(sub-\d+)", ln.split(m.group(2), 1)[1]).group(1)
                found[(m.group(2), sub)] = int(m.group(1))
        return found

    assert threads() == {("register", "sub-001"): 1, ("register", "sub-002"): 1,
                         ("detect-patient", "sub-001"): 1, ("detect-patient", "sub-002"): 1}
    for rel in (layout.register_status("sub-001", "ses-02"), layout.detect_status("sub-001", "ses-02", "rebaseline")):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"status": "ok"}))
    now = threads()
    assert now[("register", "sub-002")] == 2 and now[("detect-patient", "sub-002")] == 2, now
    assert ("register", "sub-001") not in now, now
