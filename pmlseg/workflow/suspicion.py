"""PML-suspicion levels in order, for the cohort, patient and tracking tables and the visit reports
(pmlseg.report.by_suspicion) that rank visits and lesions by it.

Its own module so that the tracking tables and the patient report (which tracking writes) both read it without
importing each other.
"""

SUSPICION_RANK = {"high": 3, "moderate": 2, "intermediate": 2, "medium": 2, "low": 1, "none": 0, "": 0}


def suspicion_rank(value: str) -> int:
    return SUSPICION_RANK.get(str(value).strip().lower(), 0)
