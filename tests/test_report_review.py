"""`pmlseg review import`: decisions are validated and folded into lesions.tsv."""

import json

import pytest

from pmlseg.cli import main
from pmlseg.errors import PmlsegError
from pmlseg.report.review import import_decisions
from pmlseg.tables import read_tsv


def _dir(tmp_path):
    (tmp_path / "lesions.tsv").write_text("lesion_id\tvolume_mm3\n1\t120.0\n2\t2000.0\n")
    return tmp_path


def test_import_folds_decisions(tmp_path):
    d = _dir(tmp_path)
    dec = tmp_path / "dec.json"
    dec.write_text(json.dumps({"format": "pmlseg-decisions", "version": 1, "decisions": [
        {"lesion_id": 2, "decision": "suspect_pml", "comment": "ill-defined\tborder"},
        {"lesion_id": 1, "decision": None, "comment": ""}]}))
    assert main(["review", "import", str(dec), str(d)]) == 0
    rows = read_tsv(d / "lesions.tsv")
    assert list(rows[0]) == ["lesion_id", "volume_mm3", "review_decision", "review_comment"]
    assert list(rows[1].values()) == ["2", "2000.0", "suspect_pml", "ill-defined\tborder"]  # quoted, kept
    assert rows[0]["review_decision"] == ""
    assert json.loads((d / "decisions.json").read_text())["decisions"][0]["lesion_id"] == 2


@pytest.mark.parametrize("payload,msg", [
    ({"format": "pmlseg-decisions", "version": 1, "decisions": [{"lesion_id": 1, "decision": "maybe"}]}, "decisions/0/decision"),
    ({"format": "other", "version": 1, "decisions": []}, "format"),
    ({"format": "pmlseg-decisions", "version": 1, "decisions": [{"lesion_id": 7, "decision": "not_a_lesion"}]}, "lesion_id 7"),
])
def test_bad_decisions_are_refused_and_tsv_untouched(tmp_path, payload, msg):
    d = _dir(tmp_path)
    before = (d / "lesions.tsv").read_text()
    dec = tmp_path / "dec.json"
    dec.write_text(json.dumps(payload))
    with pytest.raises(PmlsegError, match=msg):
        import_decisions(dec, d)
    assert (d / "lesions.tsv").read_text() == before
