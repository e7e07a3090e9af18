"""The cohort index page in a real headless Chromium (network off): patients most in need of a reader first
(high PML suspicion above failed visits above a stable patient), failed visits with their reason, a timeline
with the next scan due, a link to every visit report, no identifiers, no console error."""

import datetime as dt
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

from pmlseg.workflow import layout as L
from pmlseg.workflow.manifest import COLUMNS, read_tsv, write_tsv
from test_workflow_units import _detection, _workflow_out  # noqa: E402  (tests dir is on sys.path)


def _cohort(tmp_path) -> Path:
    """The units' cohort (sub-001 high suspicion, sub-002 failed registration, sub-003 no usable FLAIR) plus
    sub-004: one follow-up without a new lesion (stable)."""
    from pmlseg.workflow.cohort_index import write_index
    from pmlseg.workflow.tracking import write_tracking

    out = _workflow_out(tmp_path)
    man = read_tsv(out / "manifest.tsv")
    for ses, role, days in (("ses-01", "rebaseline", 0), ("ses-02", "follow-up", 120)):
        man.append({**man[0], "subject": "sub-004", "session": ses, "role": role, "days": days,
                    "interval_days": days or "", "previous": "ses-01" if days else "", "reason": "", "status": "ok"})
    write_tsv(out / "manifest.tsv", man, COLUMNS)
    identity = read_tsv(out / "identity.tsv")  # sub-004 is an ingested patient too (clinical rows must match one)
    identity += [{**identity[0], "patient_id": "PAT4SECRET", "subject": "sub-004", "session": ses}
                 for ses in ("ses-01", "ses-02")]
    write_tsv(out / "identity.tsv", identity, list(identity[0]))
    _detection(out, "sub-004", "ses-02", "rebaseline", [], [])
    qc = out / L.detect_dir("sub-004", "ses-02", "rebaseline") / "qc.json"   # as pmlseg.detect.pipeline records it
    qc.write_text(json.dumps({**json.loads(qc.read_text()), "detector_limits": "Detector m1: it found 3 of 10. "
                              "A report without lesions does not rule out new lesions: read the images."}))
    for sub in ("sub-001", "sub-002", "sub-003", "sub-004"):
        write_tracking(out, sub, out / "manifest.tsv")
    clinical = tmp_path / "clinical.tsv"
    clinical.write_text("subject\tnatalizumab_start\tjcv_index\tprior_immunosuppressant\n"
                        "sub-001\t2020-01-01\t2.1\tno\nsub-004\t2022-01-01\tnegative\tno\n")
    write_index(out, clinical, today=dt.date(2024, 3, 1))
    return out


def test_index_orders_patients_by_need_in_chromium(tmp_path, chromium):
    out = _cohort(tmp_path)
    page = (out / "index.html").read_text()
    assert "SECRETPATIENT" not in page and "2024-01-01" not in page
    drv = chromium
    drv.get((out / "index.html").resolve().as_uri())
    rows = drv.find_elements("css selector", "#patients tr[data-subject]")
    order = [r.get_attribute("data-subject") for r in rows]
    assert order[0] == "sub-001" and order[-1] == "sub-004" and set(order[1:3]) == {"sub-002", "sub-003"}
    why = {r.get_attribute("data-subject"): r.find_elements("tag name", "td")[1].text for r in rows}
    assert why["sub-001"].startswith("high PML suspicion (ses-03); 3 new lesions at ses-03")
    assert "failed visit ses-02: register: flair.nii.gz: registration QC failed" in why["sub-002"]
    assert "failed visit ses-02: no usable FLAIR in this visit" in why["sub-003"]
    assert why["sub-004"] == "no flag: no new lesion found"
    # what the detector misses stands on the page, as the visits' detection recorded it
    assert drv.find_element("id", "limits").text.startswith("Detector m1: it found 3 of 10. A report without lesions")
    # risk and schedule: sub-001 is high risk (every 4 months), last scan 60 days before the reference date
    card = drv.find_element("id", "sub-001").text
    assert "PML risk: 7 per 1000 (anti-JCV index > 1.5, 37-48 months exposure)" in card
    assert "next scan due in 62 days" in card
    assert len(drv.find_elements("css selector", "#sub-001 svg line[stroke-dasharray]")) == 1  # next-due marker
    assert "anti-JCV negative" in drv.find_element("id", "sub-004").text
    # every visit report is linked, and every link opens a file that exists
    hrefs = [a.get_attribute("href") for a in drv.find_elements("css selector", "a[href]")]
    files = [Path(unquote(urlparse(h).path)) for h in hrefs if h.startswith("file:")]
    assert all(f.exists() for f in files), [f for f in files if not f.exists()]
    linked = {f.resolve() for f in files}
    for sub, ses in (("sub-001", "ses-02"), ("sub-001", "ses-03"), ("sub-004", "ses-02")):
        assert (out / L.detect_dir(sub, ses, "rebaseline") / "report.html").resolve() in linked
    drv.save_screenshot(str(tmp_path / "index.png"))
    errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    # identified on request: patient ID, scan dates and the date the next scan is due
    from pmlseg.workflow.cohort_index import write_index

    write_index(out, tmp_path / "clinical.tsv", identified=True, today=dt.date(2024, 3, 1))
    page = (out / "index.html").read_text()
    assert "SECRETPATIENT" in page and "<td>2024-01-01</td>" in page and "next scan due in 62 days (2024-05-02)" in page
