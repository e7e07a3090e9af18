"""Reviewer's report: report.html (self-contained), report.pdf, decisions round-trip (review.py)."""

# the words both report.html and report.pdf use for a visit without a lesion (here, so that the PDF writer, run
# in a child process beside the HTML, need not import the HTML writer)
NO_LESION = "No new or enlarging lesion"


def by_suspicion(lesions: list[dict]) -> list[dict]:
    """Lesions in the order both reports list them: the most PML-suspect first, then by PML score."""
    from pmlseg.workflow.suspicion import suspicion_rank

    return sorted(lesions, key=lambda d: (-suspicion_rank(d.get("pml_suspicion", "")), -d.get("pml_score", 0)))
