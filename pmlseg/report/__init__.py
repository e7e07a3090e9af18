"""Reviewer's report: report.html (self-contained), report.pdf, decisions round-trip (review.py)."""

from pmlseg.workflow.suspicion import suspicion_rank

# the words both report.html and report.pdf use for a visit without a lesion (here, so that the PDF writer, run
# in a child process beside the HTML, need not import the HTML writer)
NO_LESION = "No new or enlarging lesion"


def detector_limits(name: str, metadata: dict | None) -> str:
    """What the detector is known to miss, for every report: a follow-up without lesions must not read as proof
    that nothing is new. From the model's metadata.json (operating_point.real: the shared real pairs scored at
    the shipped operating point), so it follows the model the reports came from."""
    real = ((metadata or {}).get("operating_point") or {}).get("real") or {}
    cases = {k: v for k, v in real.items() if isinstance(v, dict) and "/" in str(v.get("found", ""))}
    try:
        found, total = (sum(int(str(v["found"]).split("/")[i]) for v in cases.values()) for i in (0, 1))
        measured = (f"on {len(cases)} real follow-up pairs with expert change masks it found {found} of {total} "
                    f"new/enlarging lesions (sensitivity {found / total:.2f}) with {float(real['fp_per_case']):g} "
                    f"false positives per case") if cases and total else ""
    except (KeyError, ValueError, TypeError):
        measured = ""
    what = (f"Detector {name}: {measured}." if measured else
            f"Detector {name}: its sensitivity on real follow-ups is not recorded with it.")
    return what + " A report without lesions does not rule out new lesions: read the images."


def by_suspicion(lesions: list[dict]) -> list[dict]:
    """Lesions in the order both reports list them: the most PML-suspect first, then by PML score."""
    return sorted(lesions, key=lambda d: (-suspicion_rank(d.get("pml_suspicion", "")), -d.get("pml_score", 0)))
