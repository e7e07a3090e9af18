"""Every registration that feeds a score is checked, and decisions cannot land on another run's lesions.

Real pair patient01 study1 -> study2 with a wrong-patient follow-up T1 (patient04's) and the right T2:
the T1 fails its registration QC, so T1 features stay NA with the reason, the PML score uses the other
features, the report says what is missing; the T2 is used.  Then the report's decisions round-trip, and
are refused once detection has run again (report id) or for a renumbered lesion (centroid)."""

import json
import re

import pytest

from pmlseg.detect import pipeline
from pmlseg.detect.predictor import Predictor, prepare_pair, read_image
from pmlseg.errors import PmlsegError
from pmlseg.report.review import import_decisions
from pmlseg.workflow.manifest import read_tsv

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory):
    d = shared_data / "ljubljana-longitudinal/patient01"
    bl, fu = d / "study1_FLAIR.nii.gz", d / "study2_FLAIR.nii.gz"
    pair = prepare_pair(read_image(bl, "bl"), read_image(fu, "fu"), baseline_name=str(bl), followup_name=str(fu))
    out = tmp_path_factory.mktemp("checked") / "o"
    optional = {"followup_t1": shared_data / "ljubljana-longitudinal/patient04/study1_T1W.nii.gz",
                "followup_t2": d / "study2_T2W.nii.gz"}
    res = pipeline.run_case(bl, fu, out, method="classical", pair=pair, optional=optional)
    return bl, fu, pair, out, res


def test_wrong_patient_t1_leaves_its_features_na_with_the_reason(run):
    import SimpleITK as sitk

    bl, fu, _, out, res = run
    qc = json.loads((out / "qc.json").read_text())
    regs = qc["input_registrations"]
    assert regs["followup_t1"]["passed"] is False and regs["followup_t2"]["passed"] is True
    assert qc["template_registration"]["passed"] is True
    assert not (out / "baseline_space/followup_T1w.nii.gz").exists()
    t2 = out / "baseline_space/followup_T2w.nii.gz"
    # written in the source's integer pixel type, on the rebaseline FLAIR grid
    src_type = sitk.ReadImage(str(fu).replace("FLAIR", "T2W")).GetPixelID()
    t2_img = sitk.ReadImage(str(t2))
    assert t2_img.GetPixelID() == src_type and t2_img.GetSize() == sitk.ReadImage(str(bl)).GetSize()
    rows = read_tsv(out / "lesions.tsv")
    assert res.n_lesions >= 1 and len(rows) == res.n_lesions
    for r in rows:
        assert r["t1_ratio"] == "" and float(r["t2_ratio"]) > 0
        assert "t1_ratio: followup T1w registration failed QC" in r["missing_features"]
        assert "t2_ratio" not in r["missing_features"]
        assert 0 < float(r["pml_score"]) < 1 and "t1_hypointense" not in r["reasons"]
    html = (out / "report.html").read_text()
    assert "Missing features" in html and "followup T1w registration failed QC" in html


def test_template_qc_failure_leaves_location_na_and_scores_the_rest(run):
    """A template fit that failed its QC: location features NA, never defaults; the score still comes out."""
    import dataclasses

    from pmlseg.characterise import characterise_lesions, score_pml
    from pmlseg.characterise.location import register_to_template
    from pmlseg.registration.qc import QCResult

    _, _, pair, out, res = run
    import SimpleITK as sitk

    labels = sitk.ReadImage(str(out / "new_lesions.nii.gz"))
    flair_fu = sitk.Resample(read_image(run[1], "fu"), pair.baseline, pair.transform, sitk.sitkLinear, 0.0,
                             sitk.sitkFloat32)
    priors = register_to_template(pair.baseline)
    bad = dataclasses.replace(priors, qc=QCResult(0.1, False, "template -> rebaseline FLAIR: failed (forced)"))
    imgs = {"flair_bl": pair.baseline, "flair_fu": flair_fu}
    good = {f["lesion_id"]: f for f in score_pml(characterise_lesions(labels, imgs, priors=priors))}
    for f in score_pml(characterise_lesions(labels, imgs, priors=bad)):
        assert f["location"] is None and f["lobe"] is None and f["juxtacortical"] is None
        assert "location: template registration failed QC" in f["missing_features"]
        by_rule = {r["rule"]: r for r in f["reasons"]}
        assert by_rule["cortex_contact"]["contribution"] == 0 and by_rule["ventricle_contact"]["contribution"] == 0
        assert f["volume_mm3"] == good[f["lesion_id"]]["volume_mm3"] and 0 < f["pml_score"] < 1


def test_decisions_round_trip_and_are_refused_after_a_rerun(run, tmp_path):
    bl, fu, pair, out, res = run
    data = json.loads(re.search(r"id=lesion-data>(.*?)</script>", (out / "report.html").read_text()).group(1))
    dec = {"format": "pmlseg-decisions", "version": 1, "report_id": data["report_id"],
           "decisions": [{"lesion_id": lid, "centroid": data["centroids"][str(lid)], "decision": "not_a_lesion",
                          "comment": ""} for lid in data["lesions"]]}
    assert data["report_id"] == json.loads((out / "qc.json").read_text())["report_id"]
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(dec))
    assert import_decisions(path, out) == res.n_lesions
    # detection runs again (here: the model instead of the classical baseline): ids may now mean other lesions
    pipeline.run_case(bl, fu, out, predictor=Predictor(None, "cpu"), pair=pair)
    assert not (out / "decisions.json").exists()  # the previous run's review went with it
    with pytest.raises(PmlsegError, match=r"decisions are for report pmlseg-\w+, but .* holds report") as e:
        import_decisions(path, out)
    assert "\n" not in str(e.value)
