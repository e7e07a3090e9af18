"""Published PML risk stratification and the MRI surveillance interval it implies, from a clinical TSV.

The numbers live in data/pml_risk.yaml with their references (Ho et al. 2017, Plavina et al. 2014,
MAGNIMS 2021), so they can be checked and updated without touching code.  The clinical TSV is keyed by
``subject`` (pseudonym) or ``patient_id`` (mapped through identity.tsv, never copied anywhere else).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from pmlseg.errors import PmlsegError
from pmlseg.tables import parse_date

log = logging.getLogger(__name__)

TABLE = Path(__file__).with_name("data") / "pml_risk.yaml"
# accepted spellings of the clinical TSV columns
ALIASES = {
    "subject": ("subject", "participant_id", "sub"),
    "patient_id": ("patient_id", "patientid", "patient"),
    "natalizumab_start": ("natalizumab_start", "natalizumab_start_date", "ntz_start", "start_date"),
    "jcv_index": ("jcv_index", "anti_jcv_index", "jcv_antibody_index", "jcv"),
    "jcv_status": ("jcv_status", "anti_jcv_status", "jcv_serostatus"),
    "prior_is": ("prior_immunosuppressant", "prior_is", "prior_immunosuppression"),
    "dosing_interval": ("dosing_interval_weeks", "dosing_interval", "interval_weeks"),
    "rebaseline_date": ("rebaseline_date", "rebaseline"),
}
YES = {"yes", "y", "true", "1", "x"}
NO = {"no", "n", "false", "0", ""}


@lru_cache(maxsize=1)
def risk_table() -> dict:
    return yaml.safe_load(TABLE.read_text())


@dataclass
class Clinical:
    subject: str
    natalizumab_start: dt.date | None = None
    jcv_index: float | None = None
    jcv_positive: bool | None = None
    prior_is: bool | None = None
    dosing_interval_weeks: float | None = None
    rebaseline_date: dt.date | None = None


@dataclass
class Risk:
    per_1000: float | None
    stratum: str
    high_risk: bool
    mri_interval_days: int
    exposure_months: float | None
    note: str = ""


def _pick(row: dict, key: str) -> str:
    lower = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
    for alias in ALIASES[key]:
        if alias in lower:
            return lower[alias]
    return ""


def read_clinical(path: str | Path, identity: list[dict], unmatched: list[str] | None = None) -> dict[str, Clinical]:
    """Clinical rows by subject label; bad values are errors naming the file, line and column.

    A row whose patient matches no ingested patient is not used: it is logged as a warning and, when
    ``unmatched`` is given, appended to it (by line number: the row's patient ID is never repeated)."""
    from pmlseg.tables import read_tsv

    path = Path(path)
    rows = read_tsv(path)
    by_patient = {r["patient_id"]: r["subject"] for r in identity if r.get("patient_id")}
    subjects = {r["subject"] for r in identity}
    out: dict[str, Clinical] = {}
    for line, r in enumerate(rows, 2):
        where = f"{path}:{line}"
        subject = _pick(r, "subject")
        if not subject:
            pid = _pick(r, "patient_id")
            if not pid:
                raise PmlsegError(f"{where}: needs a 'subject' or 'patient_id' column")
            subject = by_patient.get(pid)
        if subject is None or subject not in subjects:  # a typo, or a patient not (yet) ingested
            what = f"{path.name} line {line}: its patient matches no ingested patient; row not used"
            log.warning("clinical table %s", what)
            if unmatched is not None:
                unmatched.append(what)
            continue
        c = Clinical(subject)
        c.natalizumab_start = parse_date(_pick(r, "natalizumab_start"), f"{where} natalizumab_start")
        c.rebaseline_date = parse_date(_pick(r, "rebaseline_date"), f"{where} rebaseline_date")
        idx = _pick(r, "jcv_index")
        if idx.lower() in ("negative", "neg", "-"):
            c.jcv_positive = False
        elif idx:
            try:
                c.jcv_index = float(idx)
            except ValueError:
                raise PmlsegError(f"{where}: JCV antibody index {idx!r} is not a number") from None
            if c.jcv_index < 0:
                raise PmlsegError(f"{where}: JCV antibody index {idx!r} is negative")
        status = _pick(r, "jcv_status").lower()
        if status in ("positive", "pos", "+"):
            c.jcv_positive = True
        elif status in ("negative", "neg", "-"):
            c.jcv_positive = False
        elif status:
            raise PmlsegError(f"{where}: jcv_status {status!r} is not positive/negative")
        if c.jcv_positive is None and c.jcv_index is not None:
            c.jcv_positive = c.jcv_index > 0.2  # assay cut-off for seropositivity (Plavina et al. 2014)
        prior = _pick(r, "prior_is").lower()
        if prior in YES:
            c.prior_is = True
        elif prior in NO:
            c.prior_is = False if prior else None
        else:
            raise PmlsegError(f"{where}: prior_immunosuppressant {prior!r} is not yes/no")
        interval = _pick(r, "dosing_interval")
        if interval:
            try:
                c.dosing_interval_weeks = float(interval)
            except ValueError:
                raise PmlsegError(f"{where}: dosing interval {interval!r} is not a number of weeks") from None
        out[subject] = c
    return out


def stratify(c: Clinical, on: dt.date) -> Risk:
    """PML risk per 1000 and the recommended MRI interval for patient ``c`` on date ``on``."""
    t = risk_table()
    months = (on - c.natalizumab_start).days / 30.44 if c.natalizumab_start else None
    notes = []
    if c.dosing_interval_weeks and c.dosing_interval_weeks >= 5:
        notes.append(t["extended_interval_dosing_note"])
    if c.jcv_positive is False:
        return Risk(t["jcv_negative_per_1000"], "anti-JCV negative", False,
                    t["mri_interval_days"]["standard"], months, "; ".join(notes))
    if c.jcv_positive is None or months is None:
        missing = [n for n, v in (("JCV status", c.jcv_positive), ("natalizumab start", months)) if v is None]
        return Risk(None, "unknown (" + ", ".join(missing) + " missing)", False,
                    t["mri_interval_days"]["standard"], months, "; ".join(notes))
    bounds = t["exposure_months"]
    k = next((i for i, b in enumerate(bounds) if months <= b), len(bounds) - 1)
    if months > bounds[-1]:
        notes.append("beyond published data (> %d months): last stratum shown" % bounds[-1])
    lo, hi = t["index_thresholds"]
    if c.prior_is:
        per, stratum = t["prior_is"][k], "anti-JCV positive, prior immunosuppressant"
    elif c.jcv_index is None:
        per, stratum = t["no_prior_is"]["index_unknown"][k], "anti-JCV positive, index unknown"
    elif c.jcv_index <= lo:
        per, stratum = t["no_prior_is"]["index_le_0.9"][k], f"anti-JCV index <= {lo}"
    elif c.jcv_index <= hi:
        per, stratum = t["no_prior_is"]["index_0.9_to_1.5"][k], f"anti-JCV index {lo}-{hi}"
    else:
        per, stratum = t["no_prior_is"]["index_gt_1.5"][k], f"anti-JCV index > {hi}"
    lo_b = 0 if k == 0 else bounds[k - 1] + 1
    stratum += f", {lo_b}-{bounds[k]} months exposure"
    hr = t["high_risk"]
    high = months > hr["min_exposure_months"] and (
        bool(c.prior_is) or c.jcv_index is None or c.jcv_index > hr["min_index"])
    days = t["mri_interval_days"]["high_risk" if high else "standard"]
    return Risk(float(per), stratum, high, days, months, "; ".join(notes))
