"""Workflow pieces on hand-made inputs: manifest roles, PML risk table, lesion tracking, cohort index, step, chain."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pmlseg.errors import PmlsegError
from pmlseg.workflow import layout as L
from pmlseg.tables import read_tsv
from pmlseg.workflow.manifest import build_manifest, write_tsv
from pmlseg.workflow.step import read_status, run_step

SERIES_COLS = ["subject", "session", "series_uid", "series_number", "series_description", "classification", "status",
               "reason", "path"]
HOSTILE_DESCRIPTION = '"AX FLAIR\tfs "3mm"\nrepeat'  # a leading quote once swallowed every row after it


def _touch_nifti(path: Path, shape=(8, 8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), str(path))


def _ingested(tmp: Path) -> Path:
    """An ingest-like OUT: sub-001 with 3 visits (ses-03 without FLAIR), sub-002 single visit,
    sub-003 with a visit before its clinical rebaseline; ses numbers not in date order for sub-001."""
    out = tmp / "out"
    series, identity = [], []
    visits = [("sub-001", "ses-01", "20200101", True), ("sub-001", "ses-03", "20200501", True),
              ("sub-001", "ses-02", "20200901", False), ("sub-002", "ses-01", "20210101", True),
              ("sub-003", "ses-01", "20190101", True), ("sub-003", "ses-02", "20190601", True),
              ("sub-003", "ses-03", "20191001", True)]
    for i, (sub, ses, date, has_flair) in enumerate(visits):
        identity.append({"patient_id": f"PAT{sub[-1]}SECRET", "subject": sub, "study_uid": f"1.2.{i}",
                         "study_date": date, "session": ses})
        rel = f"{sub}/{ses}/anat/{sub}_{ses}_FLAIR.nii.gz"
        if has_flair:
            _touch_nifti(out / rel)
            series.append({"subject": sub, "session": ses, "series_uid": f"9.{i}", "series_number": 3,
                           "series_description": HOSTILE_DESCRIPTION, "classification": "FLAIR",
                           "status": "converted", "reason": "", "path": rel})
        else:
            series.append({"subject": sub, "session": ses, "series_uid": f"9.{i}", "series_number": 3,
                           "classification": "FLAIR", "status": "failed", "reason": "missing slices", "path": ""})
        t1 = f"{sub}/{ses}/anat/{sub}_{ses}_T1w.nii.gz"
        _touch_nifti(out / t1)
        series.append({"subject": sub, "session": ses, "series_uid": f"8.{i}", "series_number": 2,
                       "classification": "T1w", "status": "converted", "reason": "", "path": t1})
    write_tsv(out / "series.tsv", series, SERIES_COLS)
    write_tsv(out / "identity.tsv", identity, ["patient_id", "subject", "study_uid", "study_date", "session"])
    return out


def test_manifest_roles_previous_and_problems(tmp_path):
    out = _ingested(tmp_path)
    rows = {(r["subject"], r["session"]): r for r in build_manifest(out, {"sub-003": dt.date(2019, 5, 1)})}
    # sub-001: chronological, not by session number; ses-02 (latest) has no FLAIR
    assert rows["sub-001", "ses-01"]["role"] == "rebaseline"
    assert rows["sub-001", "ses-03"]["role"] == "follow-up" and rows["sub-001", "ses-03"]["previous"] == "ses-01"
    assert rows["sub-001", "ses-03"]["days"] == 121
    bad = rows["sub-001", "ses-02"]
    assert bad["role"] == "unusable" and bad["status"] == "skipped"
    assert "no usable FLAIR" in bad["reason"] and "missing slices" in bad["reason"]
    assert bad["t1w"] == "sub-001/ses-02/anat/sub-001_ses-02_T1w.nii.gz"
    # single visit: a rebaseline with nothing to compare
    assert rows["sub-002", "ses-01"]["role"] == "rebaseline"
    assert "single usable visit" in rows["sub-002", "ses-01"]["reason"]
    # clinical rebaseline date moves the rebaseline to ses-02
    assert [rows["sub-003", s]["role"] for s in ("ses-01", "ses-02", "ses-03")] == \
        ["pre-rebaseline", "rebaseline", "follow-up"]
    assert rows["sub-003", "ses-03"]["previous"] == "ses-02" and rows["sub-003", "ses-01"]["days"] == -151
    # no identifiers or dates in the manifest
    text = "\n".join("\t".join(map(str, r.values())) for r in rows.values())
    assert "SECRET" not in text and "2020" not in text


def test_manifest_command_writes_table(tmp_path):
    from pmlseg.cli import main

    out = _ingested(tmp_path)
    assert main(["manifest", str(out)]) == 0
    rows = read_tsv(out / "manifest.tsv")
    assert len(rows) == 7 and sum(r["role"] == "follow-up" for r in rows) == 3


def test_manifest_bad_date_is_one_line_error(tmp_path):
    out = _ingested(tmp_path)
    text = (out / "identity.tsv").read_text().replace("20200101", "2020-13-45")
    (out / "identity.tsv").write_text(text)
    with pytest.raises(PmlsegError, match="identity.tsv.*2020-13-45"):
        build_manifest(out)


# ------------------------------------------------------------------ PML risk
def test_risk_strata_follow_published_table():
    from pmlseg.workflow.risk import Clinical, risk_table, stratify

    on = dt.date(2024, 1, 1)
    start_30m = on - dt.timedelta(days=int(30 * 30.44))
    start_50m = on - dt.timedelta(days=int(50 * 30.44))
    r = stratify(Clinical("s", start_30m, jcv_index=1.2, jcv_positive=True, prior_is=False), on)
    assert r.per_1000 == 0.8 and "0.9-1.5" in r.stratum and "25-36" in r.stratum
    assert r.high_risk and r.mri_interval_days == 122
    r = stratify(Clinical("s", start_50m, jcv_index=2.4, jcv_positive=True, prior_is=False), on)
    assert r.per_1000 == 8 and r.high_risk
    r = stratify(Clinical("s", start_50m, jcv_index=0.5, jcv_positive=True, prior_is=False), on)
    assert r.per_1000 == 0.5 and not r.high_risk and r.mri_interval_days == 365
    r = stratify(Clinical("s", start_30m, jcv_index=0.5, jcv_positive=True, prior_is=True), on)
    assert r.per_1000 == 4 and r.high_risk
    r = stratify(Clinical("s", start_50m, jcv_positive=False), on)
    assert r.per_1000 == 0.1 and r.mri_interval_days == 365
    r = stratify(Clinical("s", on - dt.timedelta(days=3000), jcv_index=2.0, jcv_positive=True), on)
    assert r.per_1000 == 10 and "beyond published data" in r.note
    assert any("Ho PR" in ref for ref in risk_table()["references"])


def test_clinical_table_by_patient_id_and_bad_values(tmp_path):
    from pmlseg.workflow.risk import read_clinical

    identity = [{"patient_id": "P1", "subject": "sub-001"}]
    p = tmp_path / "clinical.tsv"
    p.write_text("patient_id\tnatalizumab_start\tjcv_index\tprior_immunosuppressant\n"
                 "P1\t2020-01-01\t1.7\tno\nP9\t2020-01-01\t0.1\tno\n")
    unmatched = []
    c = read_clinical(p, identity, unmatched)
    assert list(c) == ["sub-001"] and c["sub-001"].jcv_index == 1.7 and c["sub-001"].jcv_positive
    # P9 matches nobody: reported by line, never by its ID
    assert unmatched == ["clinical.tsv line 3: its patient matches no ingested patient; row not used"]
    p.write_text("subject\tjcv_index\nsub-001\t1.0\nsub-0O1\t1.0\n")
    c = read_clinical(p, identity, unmatched)
    assert list(c) == ["sub-001"] and unmatched[-1].startswith("clinical.tsv line 3:")
    p.write_text("subject\tjcv_index\nsub-001\thigh\n")
    with pytest.raises(PmlsegError, match=r"clinical.tsv:2: JCV antibody index 'high'"):
        read_clinical(p, identity)


# ------------------------------------------------------------------ step
def test_step_records_input_failure_and_passes_crashes(tmp_path):
    st = tmp_path / "a" / "status.json"
    log = tmp_path / "a.log"
    code = "import sys; print('12:00:00 ERROR   pmlseg: x.nii.gz: registration QC failed (NMI 0.1)'); sys.exit(65)"
    assert run_step(st, [sys.executable, "-c", code], stage="register", log=log) == 0
    s = read_status(st)
    assert s["status"] == "failed" and s["reason"] == "x.nii.gz: registration QC failed (NMI 0.1)"
    assert "registration QC failed" in log.read_text()
    # a later stage that requires it is recorded as failed without running
    st2 = tmp_path / "b.json"
    assert run_step(st2, [sys.executable, "-c", "raise SystemExit(5)"], stage="detect", requires=[str(st)]) == 0
    assert read_status(st2)["status"] == "failed" and "registration QC" in read_status(st2)["reason"]
    # killed / interrupted / Python's own exit 1: exit code passed on, no status, so a resumed run redoes the job
    st3 = tmp_path / "c.json"
    assert run_step(st3, [sys.executable, "-c", "raise SystemExit(137)"], stage="detect") == 137
    assert run_step(st3, [sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"], stage="detect") == 137
    assert run_step(st3, [sys.executable, "-c", "raise ValueError('bug')"], stage="detect") == 1
    assert not st3.exists()
    assert run_step(st3, [sys.executable, "-c", "pass"], stage="detect") == 0
    assert read_status(st3)["status"] == "ok"


@pytest.mark.parametrize("case", ["bad input", "crash", "missing model"])
def test_cli_exit_codes_tell_bad_input_from_crashes(tmp_path, case):
    """The real CLI under `pmlseg step`: only bad input (65) becomes the visit's verdict."""
    flair = tmp_path / "flair.nii.gz"
    _touch_nifti(flair, (24, 24, 12))
    cmd = [sys.executable, "-m", "pmlseg", "detect", "--baseline", str(flair), "--followup", str(flair),
           "--out", str(tmp_path / "det")]
    env = dict(os.environ)
    if case == "bad input":
        cmd[cmd.index("--followup") + 1] = str(tmp_path / "absent_FLAIR.nii.gz")
    elif case == "crash":
        env["PMLSEG_TEST_CRASH"] = "detect"
    else:
        cmd += ["--model", "no-such-model"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == {"bad input": 65, "crash": 70, "missing model": 78}[case], p.stderr
    words = {"bad input": "absent_FLAIR.nii.gz: follow-up FLAIR (--followup) not found",
             "crash": "RuntimeError: injected crash in `pmlseg detect`", "missing model": "no-such-model"}[case]
    assert words in p.stderr
    st = tmp_path / "status.json"
    p = subprocess.run([sys.executable, "-m", "pmlseg", "step", str(st), "--stage", "detect", "--", *cmd],
                       capture_output=True, text=True, env=env, timeout=120)
    if case == "bad input":
        assert p.returncode == 0 and read_status(st)["status"] == "failed"
        assert read_status(st)["reason"].endswith("absent_FLAIR.nii.gz: follow-up FLAIR (--followup) not found")
    else:  # the Snakemake job fails (run exits non-zero) and nothing says the visit is done
        assert p.returncode == {"crash": 70, "missing model": 78}[case] and not st.exists()
        assert "not a verdict on the visit" in p.stderr


# ------------------------------------------------------------------ chain
def test_chain_maps_previous_to_current(tmp_path):
    import SimpleITK as sitk

    from pmlseg.workflow.transforms import chain

    t_prev = sitk.Euler3DTransform((0, 0, 0), 0.1, -0.05, 0.2, (3.0, -2.0, 5.0))
    t_cur = sitk.AffineTransform(3)
    t_cur.SetMatrix((1.02, 0.01, 0, -0.01, 0.98, 0.02, 0, 0.03, 1.01))
    t_cur.SetTranslation((-4.0, 1.0, 2.5))
    sitk.WriteTransform(t_prev, str(tmp_path / "p.tfm"))
    sitk.WriteTransform(t_cur, str(tmp_path / "c.tfm"))
    chain(str(tmp_path / "p.tfm"), str(tmp_path / "c.tfm"), str(tmp_path / "pc.tfm"))
    pc = sitk.ReadTransform(str(tmp_path / "pc.tfm"))
    for x in [(10.0, 20.0, -30.0), (-50.0, 5.0, 60.0)]:
        expected = t_cur.TransformPoint(x)
        got = pc.TransformPoint(t_prev.TransformPoint(x))
        assert np.allclose(got, expected, atol=1e-6)
    (tmp_path / "bad.tfm").write_text("not a transform")
    with pytest.raises(PmlsegError, match="bad.tfm"):
        chain(str(tmp_path / "bad.tfm"), str(tmp_path / "c.tfm"), str(tmp_path / "x.tfm"))


# ------------------------------------------------------------------ tracking + index
def _ball(shape, centre, r):
    z = np.indices(shape).transpose(1, 2, 3, 0)
    return (np.linalg.norm(z - np.array(centre), axis=-1) <= r)


def _detection(out, sub, ses, against, balls, rows, status="ok", qc="ok"):
    d = out / L.detect_dir(sub, ses, against)
    d.mkdir(parents=True, exist_ok=True)
    lab = np.zeros((40, 40, 40), np.int16)
    for i, (c, r) in enumerate(balls, 1):
        lab[_ball(lab.shape, c, r)] = i
    aff = np.diag([1.0, 1.0, 2.0, 1.0])  # 2 mm3 voxels
    nib.save(nib.Nifti1Image(lab, aff), str(d / "new_lesions.nii.gz"))
    write_tsv(d / "lesions.tsv", [{"lesion_id": i, **row} for i, row in enumerate(rows, 1)],
              ["lesion_id", "volume_mm3", "pml_score", "pml_suspicion", "reasons"])
    (d / "report.html").write_text("<html>report</html>")
    (d / "qc.json").write_text(json.dumps({"status": qc}))
    (d / "status.json").write_text(json.dumps({"status": status, "reason": "" if status == "ok" else "QC NMI 0.1",
                                               "stage": "detect"}))


def _workflow_out(tmp_path):
    import SimpleITK as sitk

    out = tmp_path / "res"
    out.mkdir()
    man = [
        dict(subject="sub-001", session="ses-01", role="rebaseline", days=0, interval_days="", previous=""),
        dict(subject="sub-001", session="ses-02", role="follow-up", days=100, interval_days=100, previous="ses-01"),
        dict(subject="sub-001", session="ses-03", role="follow-up", days=210, interval_days=110, previous="ses-02"),
        dict(subject="sub-002", session="ses-01", role="rebaseline", days=0, interval_days="", previous=""),
        dict(subject="sub-002", session="ses-02", role="follow-up", days=90, interval_days=90, previous="ses-01"),
        dict(subject="sub-003", session="ses-01", role="rebaseline", days=0, interval_days="", previous="",
             reason="single usable visit: nothing to compare with"),
        dict(subject="sub-003", session="ses-02", role="unusable", days=50, interval_days=50, previous="",
             reason="no usable FLAIR in this visit"),
    ]
    for r in man:
        r.setdefault("reason", "")
        r["status"] = "ok" if not r["reason"] else "warning"
        r.update(order=1, flair="x", t1w="", t2w="", dwi="")
    from pmlseg.workflow.manifest import COLUMNS
    write_tsv(out / "manifest.tsv", man, COLUMNS)
    write_tsv(out / "identity.tsv", [{"patient_id": "SECRETPATIENT", "subject": "sub-001", "study_date": "20240101",
                                      "session": "ses-03"}], ["patient_id", "subject", "study_date", "session"])
    low = {"pml_score": 0.1, "pml_suspicion": "low", "reasons": "periventricular ovoid"}
    high = {"pml_score": 0.9, "pml_suspicion": "high", "reasons": "juxtacortical, no mass effect"}
    # sub-001: A and B at ses-02; at ses-03 A has grown, B is unchanged, C is new
    _detection(out, "sub-001", "ses-02", "rebaseline", [((10, 10, 10), 2), ((30, 30, 30), 2)],
               [{"volume_mm3": 66, **low}, {"volume_mm3": 66, **low}])
    _detection(out, "sub-001", "ses-03", "rebaseline", [((30, 30, 30), 2), ((10, 10, 10), 4), ((20, 5, 30), 2)],
               [{"volume_mm3": 66, **low}, {"volume_mm3": 500, **low}, {"volume_mm3": 66, **high}])
    _detection(out, "sub-001", "ses-03", "previous", [((20, 5, 30), 2)], [{"volume_mm3": 66, **high}])
    for ses in ("ses-02", "ses-03"):
        for p in (L.preproc_status("sub-001", ses), L.register_status("sub-001", ses)):
            (out / p).parent.mkdir(parents=True, exist_ok=True)
            (out / p).write_text('{"status": "ok"}')
    sitk.WriteTransform(sitk.Euler3DTransform(), str(out / L.to_rebaseline_tfm("sub-001", "ses-02")))
    # sub-002: registration QC failed -> detection skipped
    (out / L.register_status("sub-002", "ses-02")).parent.mkdir(parents=True)
    (out / L.register_status("sub-002", "ses-02")).write_text(
        json.dumps({"status": "failed", "stage": "register", "reason": "flair.nii.gz: registration QC failed"}))
    (out / L.detect_status("sub-002", "ses-02", "rebaseline")).parent.mkdir(parents=True)
    (out / L.detect_status("sub-002", "ses-02", "rebaseline")).write_text(
        json.dumps({"status": "failed", "stage": "register", "reason": "flair.nii.gz: registration QC failed"}))
    return out


def test_tracking_keeps_ids_and_growth(tmp_path):
    from pmlseg.workflow.tracking import write_tracking

    out = _workflow_out(tmp_path)
    n_tracks, n_rows = write_tracking(out, "sub-001", out / "manifest.tsv")
    assert (n_tracks, n_rows) == (3, 5)
    rows = read_tsv(out / L.tracking_lesions("sub-001"))
    by = {(r["session"], r["detect_label"]): r for r in rows}
    a2, b2 = by["ses-02", "1"]["lesion_id"], by["ses-02", "2"]["lesion_id"]
    assert a2 != b2
    assert by["ses-03", "2"]["lesion_id"] == a2  # grown lesion keeps its id
    assert by["ses-03", "1"]["lesion_id"] == b2
    c3 = by["ses-03", "3"]
    assert c3["lesion_id"] not in (a2, b2) and c3["first_seen"] == "ses-03"
    assert float(by["ses-03", "2"]["growth_mm3"]) > 300  # r 2 -> 4 voxels at 2 mm3
    assert float(by["ses-03", "1"]["growth_mm3"]) == 0
    # new since the previous visit comes from detection against ses-02
    assert c3["new_since_previous"] == "yes" and by["ses-03", "2"]["new_since_previous"] == "no"
    assert c3["pml_suspicion"] == "high" and c3["reasons"] == "juxtacortical, no mass effect"
    tracks = {t["lesion_id"]: t for t in read_tsv(out / L.tracking_tracks("sub-001"))}
    assert tracks[a2]["n_visits"] == "2" and tracks[a2]["growth_curve"].startswith("ses-02:")
    page = (out / L.patient_report("sub-001")).read_text()
    assert page.count("<polyline") == 3
    links = re.findall(r'href="([^"]+)"', page)
    assert (out / L.tracking_dir("sub-001") / links[0]).resolve() == (out / "index.html").resolve()
    assert len(links) == 4 and all((out / L.tracking_dir("sub-001") / h).resolve().exists() for h in links[1:])
    # ids are stable when the tracking is recomputed (e.g. after a later visit is added)
    write_tracking(out, "sub-001", out / "manifest.tsv")
    assert read_tsv(out / L.tracking_lesions("sub-001")) == rows


def test_tracked_growth_feeds_the_pml_score(tmp_path):
    """A lesion that grows between scans gets growth_ml_per_month from tracking and is re-scored higher than
    the same lesion unchanged; a first-seen lesion lists growth as unavailable (issue 16)."""
    from pmlseg.characterise import load_rules, score_pml
    from pmlseg.report.visit import lesion_rows, write_lesion_table
    from pmlseg.workflow.tracking import write_tracking

    sys.path.insert(0, str(Path(__file__).parent))
    from test_characterise_pml import MS

    out = tmp_path / "res"
    out.mkdir()
    man = [dict(subject="sub-001", session=s, role=r, days=d, interval_days="", previous=p, reason="", status="ok",
                order=1, flair="x", t1w="", t2w="", dwi="")
           for s, r, d, p in (("ses-01", "rebaseline", 0, ""), ("ses-02", "follow-up", 30, "ses-01"),
                              ("ses-03", "follow-up", 91, "ses-02"))]
    from pmlseg.workflow.manifest import COLUMNS
    write_tsv(out / "manifest.tsv", man, COLUMNS)
    # ses-02: A (r 3) and B (r 3); ses-03: A grown to r 8, B unchanged.  Same features (an MS-like
    # periventricular lesion scored by the pipeline's own writer), so only growth can tell them apart.
    for ses, balls in (("ses-02", [((10, 10, 10), 3), ((30, 30, 30), 3)]),
                       ("ses-03", [((10, 10, 10), 8), ((30, 30, 30), 3)])):
        _detection(out, "sub-001", ses, "rebaseline", balls, [{}] * len(balls))
        scored = score_pml([dict(MS, lesion_id=i) for i in (1, 2)])
        cols, rows = lesion_rows([{"lesion_id": i, "volume_mm3": 100.0} for i in (1, 2)], scored)
        write_lesion_table(out / L.detect_dir("sub-001", ses, "rebaseline") / "lesions.tsv", cols, rows)
    write_tracking(out, "sub-001", out / "manifest.tsv")
    by = {(r["session"], r["detect_label"]): r for r in read_tsv(out / L.tracking_lesions("sub-001"))}
    a3, b3, a2 = by["ses-03", "1"], by["ses-03", "2"], by["ses-02", "1"]
    assert a3["lesion_id"] == a2["lesion_id"] != b3["lesion_id"]
    grown_ml = (float(a3["volume_mm3"]) - float(a2["volume_mm3"])) / 1000
    assert grown_ml > 3.0  # r 3 -> 8 voxels at 2 mm3
    assert float(a3["growth_ml_per_month"]) == pytest.approx(grown_ml / (61 / 30.44), rel=1e-3)
    assert float(b3["growth_ml_per_month"]) == 0.0
    def without_growth(r, key="pml_score"):  # the same lesion scored as detection does (volume = the label's)
        return score_pml([dict(MS, volume_mm3=float(r["volume_mm3"]))])[0][key]

    g = load_rules()["rules"]["growth"]
    strength = min(1.0, (float(a3["growth_ml_per_month"]) - g["zero"]) / (g["full"] - g["zero"]))
    assert strength > 0.5 and float(a3["pml_score"]) > without_growth(a3)
    assert float(a3["pml_logit"]) - without_growth(a3, "pml_logit") == pytest.approx(g["weight"] * strength, abs=2e-3)
    assert float(b3["pml_score"]) == pytest.approx(without_growth(b3))
    assert "grows" in a3["pml_explanation"] and "growth" not in a3["pml_unavailable"]
    assert "growth" in a3["reasons"] and "growth" not in b3["pml_unavailable"]
    # first seen at ses-02: no earlier volume, growth unmeasured and said so
    assert a2["growth_ml_per_month"] == "" and "growth (first seen at this visit" in a2["pml_unavailable"]
    assert float(a2["pml_score"]) == pytest.approx(without_growth(a2))
    tracks = {t["lesion_id"]: t for t in read_tsv(out / L.tracking_tracks("sub-001"))}
    assert float(tracks[a3["lesion_id"]]["max_pml_score"]) == float(a3["pml_score"])
    from pmlseg.workflow.cohort_index import write_index

    write_index(out)  # the cohort tables read the re-scored rows
    s = {r["session"]: r for r in read_tsv(out / "sessions.tsv")}
    assert float(s["ses-03"]["max_pml_score"]) == float(a3["pml_score"])


def test_cohort_index_tables_and_page(tmp_path):
    from pmlseg.workflow.cohort_index import write_index
    from pmlseg.workflow.tracking import write_tracking

    out = _workflow_out(tmp_path)
    for sub in ("sub-001", "sub-002", "sub-003"):
        write_tracking(out, sub, out / "manifest.tsv")
    clinical = tmp_path / "clinical.tsv"
    clinical.write_text("subject\tnatalizumab_start\tjcv_index\tprior_immunosuppressant\n"
                        "sub-001\t2020-01-01\t2.1\tno\nsub-002\t2023-01-01\tnegative\tno\n"
                        "sub-009\t2023-01-01\tnegative\tno\n")
    info = write_index(out, clinical, today=dt.date(2024, 9, 1))
    assert info["failed"] == 2  # sub-002 ses-02 (registration QC) and sub-003 ses-02 (no FLAIR)
    s = {(r["subject"], r["session"]): r for r in read_tsv(out / "sessions.tsv")}
    assert s["sub-001", "ses-03"]["new_lesions"] == "derivatives/pmlseg/sub-001/ses-03/detect-rebaseline/new_lesions.nii.gz"
    assert (out / s["sub-001", "ses-03"]["report"]).exists()
    assert s["sub-001", "ses-03"]["n_new_lesions"] == "3" and s["sub-001", "ses-03"]["n_new_since_previous"] == "1"
    assert s["sub-001", "ses-03"]["pml_suspicion"] == "high" and s["sub-001", "ses-03"]["qc"] == "ok"
    assert s["sub-002", "ses-02"]["qc"] == "failed" and "registration QC failed" in s["sub-002", "ses-02"]["reason"]
    assert s["sub-002", "ses-02"]["new_lesions"] == ""
    assert s["sub-003", "ses-02"]["qc"] == "failed" and "no usable FLAIR" in s["sub-003", "ses-02"]["reason"]
    les = read_tsv(out / "lesions.tsv")
    assert len(les) == 5 and {"subject", "session", "lesion_id", "pml_score"} <= set(les[0])
    page = (out / "index.html").read_text()
    assert "clinical.tsv line 4: its patient matches no ingested patient; row not used" in page  # not dropped
    assert "SECRETPATIENT" not in page and "2024-01-01" not in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    # suspicious patient first, problems with reasons, timeline, risk + overdue (last scan 244 days ago,
    # high risk -> every 4 months), report links
    cards = re.findall(r'<div class="card[^"]*" id="(sub-\d+)"', page)
    assert cards[0] == "sub-001"
    assert "registration QC failed" in page and "no usable FLAIR" in page and "single usable visit" in page
    assert page.count("<svg") >= 1 and "OVERDUE" in page
    assert "10 per 1000" in page or "7 per 1000" in page
    assert 'href="derivatives/pmlseg/sub-001/ses-03/detect-rebaseline/report.html"' in page
    assert 'href="derivatives/pmlseg/sub-001/tracking/sub-001_report.html"' in page
    assert s["sub-001", "ses-03"]["report_previous"] == "derivatives/pmlseg/sub-001/ses-03/detect-previous/report.html"
    assert 'href="derivatives/pmlseg/sub-001/ses-03/detect-previous/report.html"' in page
    # identified reports only when asked
    write_index(out, identified=True)
    assert "SECRETPATIENT" in (out / "index.html").read_text()


def test_runner_picks_squeue_when_accounting_is_off(tmp_path, monkeypatch):
    from pmlseg.workflow import snakemake_runner as R

    monkeypatch.setattr(R.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(R, "slurm_accounting_enabled", lambda: False)
    cmd = R.snakemake_command(tmp_path / "dicom", tmp_path / "out", executor="slurm", jobs=4)
    assert cmd[cmd.index("--slurm-status-command") + 1] == "squeue"
    assert cmd[cmd.index("--executor") + 1] == "slurm" and "--jobs" in cmd
    assert Path(cmd[cmd.index("--snakefile") + 1]).read_text().count("include:") >= 6
    monkeypatch.setattr(R, "slurm_accounting_enabled", lambda: True)
    cmd = R.snakemake_command(tmp_path / "dicom", tmp_path / "out", executor="slurm")
    assert "--slurm-status-command" not in cmd
    monkeypatch.setenv("PMLSEG_SNAKEFILE", str(tmp_path / "nope" / "Snakefile"))
    monkeypatch.setattr(R, "resource_dir", lambda: tmp_path)
    with pytest.raises(PmlsegError, match="Snakefile not found"):
        R.find_snakefile()


# ------------------------------------------------------------------ preflight and --config paths
def test_run_that_cannot_work_stops_before_any_job(tmp_path):
    import torch

    (tmp_path / "dicom").mkdir()
    cases = [("model=no-such-model", "model no-such-model: no model at")]
    if not torch.cuda.is_available():
        cases.append(("use_gpu=true", "use_gpu: true, but torch sees no CUDA GPU"))
    for item, words in cases:
        p = subprocess.run([sys.executable, "-m", "pmlseg", "run", str(tmp_path / "dicom"), str(tmp_path / "out"),
                            "--config", item], capture_output=True, text=True, timeout=300)
        assert p.returncode != 0, p.stderr[-2000:]
        (line,) = [ln for ln in p.stderr.splitlines() if "pmlseg: cannot run:" in ln]
        assert words in line and "Traceback" not in p.stderr
        assert not (tmp_path / "out" / "manifest.tsv").exists() and not (tmp_path / "out" / "logs").exists()


def test_config_paths_resolve_against_the_callers_folder(tmp_path, monkeypatch):
    from pmlseg.workflow.snakemake_runner import snakemake_command

    (tmp_path / "mymodels" / "m1").mkdir(parents=True)
    (tmp_path / "clin.tsv").write_text("subject\n")
    monkeypatch.chdir(tmp_path)
    cmd = snakemake_command(Path("dicom"), Path("out"), config=["clinical=clin.tsv", "model=mymodels/m1",
                                                                "today=2024-01-01"])
    assert f"clinical={tmp_path / 'clin.tsv'}" in cmd and f"model={tmp_path / 'mymodels' / 'm1'}" in cmd
    assert "today=2024-01-01" in cmd
    cmd = snakemake_command(Path("dicom"), Path("out"), config=["model=newlesion-2p5d"])
    assert "model=newlesion-2p5d" in cmd  # a name under models/ stays a name
