"""`pmlseg review import`: decisions are validated and folded into lesions.tsv."""

import json

import pytest

from pmlseg.cli import main
from pmlseg.errors import PmlsegError
from pmlseg.report.review import import_decisions
from pmlseg.tables import read_tsv


RID = "pmlseg-0123456789abcdef"
C1, C2 = [10.0, -20.5, 30.1], [-40.2, 5.0, 12.3]


def _dir(tmp_path):
    (tmp_path / "lesions.tsv").write_text("lesion_id\tvolume_mm3\tcentroid_x\tcentroid_y\tcentroid_z\n"
                                          "1\t120.0\t10.0\t-20.5\t30.1\n2\t2000.0\t-40.2\t5.0\t12.3\n")
    (tmp_path / "qc.json").write_text(json.dumps({"status": "ok", "report_id": RID}))
    return tmp_path


def _payload(*decisions, rid=RID):
    return {"format": "pmlseg-decisions", "version": 1, "report_id": rid, "decisions": list(decisions)}


def test_import_folds_decisions(tmp_path):
    d = _dir(tmp_path)
    dec = tmp_path / "dec.json"
    dec.write_text(json.dumps(_payload(
        {"lesion_id": 2, "centroid": C2, "decision": "suspect_pml", "comment": "ill-defined\tborder"},
        {"lesion_id": 1, "centroid": C1, "decision": None, "comment": ""})))
    assert main(["review", "import", str(dec), str(d)]) == 0
    rows = read_tsv(d / "lesions.tsv")
    assert list(rows[0])[-2:] == ["review_decision", "review_comment"]
    assert [rows[1][k] for k in ("lesion_id", "volume_mm3", "review_decision", "review_comment")] == \
        ["2", "2000.0", "suspect_pml", "ill-defined\tborder"]  # quoted, kept
    assert rows[0]["review_decision"] == ""
    assert json.loads((d / "decisions.json").read_text())["decisions"][0]["lesion_id"] == 2


@pytest.mark.parametrize("payload,msg", [
    (_payload({"lesion_id": 1, "centroid": C1, "decision": "maybe"}), "decisions/0/decision"),
    ({**_payload(), "format": "other"}, "format"),
    (_payload({"lesion_id": 7, "centroid": C1, "decision": "not_a_lesion"}), "lesion_id 7"),
    # decisions exported from another run's report (lesion ids are renumbered between runs)
    (_payload({"lesion_id": 1, "centroid": C1, "decision": "not_a_lesion"}, rid="pmlseg-ffffffffffffffff"),
     "decisions are for report pmlseg-ffffffffffffffff, but .* holds report " + RID),
    # same report id but the lesion that was reviewed as 1 is now elsewhere: renumbered, refused
    (_payload({"lesion_id": 1, "centroid": C2, "decision": "not_a_lesion"}), "lesion 1 was at .*renumbered lesion"),
    ({k: v for k, v in _payload().items() if k != "report_id"}, "report_id"),
    (_payload({"lesion_id": 1, "decision": "not_a_lesion"}), "centroid"),
])
def test_bad_decisions_are_refused_and_tsv_untouched(tmp_path, payload, msg):
    d = _dir(tmp_path)
    before = (d / "lesions.tsv").read_text()
    dec = tmp_path / "dec.json"
    dec.write_text(json.dumps(payload))
    with pytest.raises(PmlsegError, match=msg):
        import_decisions(dec, d)
    assert (d / "lesions.tsv").read_text() == before


def test_decisions_need_the_report_id_on_disk(tmp_path):
    d = _dir(tmp_path)
    (d / "qc.json").unlink()
    dec = tmp_path / "dec.json"
    dec.write_text(json.dumps(_payload({"lesion_id": 1, "centroid": C1, "decision": "not_a_lesion"})))
    with pytest.raises(PmlsegError, match=r"qc.json: no report id") as e:
        import_decisions(dec, d)
    assert "\n" not in str(e.value)
