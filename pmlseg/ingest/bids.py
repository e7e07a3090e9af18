"""Pseudonym labels, BIDS file names and the two tables (identity.tsv, series.tsv).

Labels are generated (sub-001, ses-01), never taken from tags, so no header value can reach a path.
identity.tsv is the only place that links labels to patients; it is read back on every run so labels
stay stable. Session numbers are chronological (by StudyDate) within the studies of a patient that
are first seen in one run; a study found later gets the next free number even if it is older (existing
sessions are never relabelled; identity.tsv keeps each session's study_date).
"""

from __future__ import annotations

import os
from pathlib import Path

from pmlseg.atomic import write_text
from pmlseg.tables import read_tsv, write_tsv

IDENTITY_COLUMNS = ["patient_id", "subject", "study_uid", "study_date", "session", "accession_number"]
SERIES_COLUMNS = ["subject", "session", "series_uid", "series_number", "series_description", "classification",
                  "status", "reason", "path", "n_files"]
SUFFIX = {"FLAIR": ("anat", "", "FLAIR"), "T1w": ("anat", "", "T1w"), "T1w-ce": ("anat", "gadolinium", "T1w"),
          "T2w": ("anat", "", "T2w"), "dwi": ("dwi", "", "dwi")}


class Identity:
    """patient key -> subject label and study UID -> (subject, session), persisted in identity.tsv."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = read_tsv(path, missing_ok=True)
        self.subject_of = {r["patient_id"]: r["subject"] for r in self.rows}
        self.session_of = {r["study_uid"]: (r["subject"], r["session"]) for r in self.rows}

    def _next_subject(self) -> str:
        used = [int(s.split("-")[1]) for s in self.subject_of.values() if s.split("-")[-1].isdigit()]
        return f"sub-{(max(used) if used else 0) + 1:03d}"

    def _next_session(self, subject: str) -> int:
        used = [int(ses.split("-")[1]) for sub, ses in self.session_of.values()
                if sub == subject and ses.split("-")[-1].isdigit()]
        return (max(used) if used else 0) + 1

    def assign(self, studies: list[dict]) -> None:
        """Give labels to studies not seen before; ``studies``: dicts with patient_key, study_uid, date, time, accession."""
        new = [s for s in studies if s["study_uid"] not in self.session_of]
        by_patient: dict[str, list[dict]] = {}
        for s in new:
            by_patient.setdefault(s["patient_key"], []).append(s)
        first_seen = sorted(by_patient, key=lambda k: (min(_date_key(s) for s in by_patient[k]), k))
        for key in first_seen:
            if key not in self.subject_of:
                self.subject_of[key] = self._next_subject()
            subject = self.subject_of[key]
            for s in sorted(by_patient[key], key=_date_key):
                session = f"ses-{self._next_session(subject):02d}"
                self.session_of[s["study_uid"]] = (subject, session)
                self.rows.append({"patient_id": key, "subject": subject, "study_uid": s["study_uid"],
                                  "study_date": s["date"], "session": session, "accession_number": s["accession"]})

    def save(self) -> None:
        self.rows.sort(key=lambda r: (r["subject"], r["session"]))
        write_tsv(self.path, self.rows, IDENTITY_COLUMNS)


def _date_key(s: dict) -> tuple:
    date = s.get("date") or ""
    return (0 if date else 1, date, s.get("time") or "", s["study_uid"])


def bids_name(subject: str, session: str, classification: str, run: int) -> str:
    """Relative path (from OUT) of the NIfTI for this series, e.g. sub-001/ses-01/anat/sub-001_ses-01_T1w.nii.gz."""
    folder, ce, suffix = SUFFIX[classification]
    parts = [subject, session]
    if ce:
        parts.append(f"ce-{ce}")
    if run > 1:
        parts.append(f"run-{run}")
    parts.append(suffix)
    return f"{subject}/{session}/{folder}/{'_'.join(parts)}.nii.gz"


def free_name(out: Path, subject: str, session: str, classification: str, taken: set[str]) -> str:
    """First run number whose name is neither on disk (owned by series.tsv) nor used in this run."""
    run = 1
    while True:
        rel = bids_name(subject, session, classification, run)
        if rel not in taken:
            return rel
        run += 1


def install(converted, out: Path, rel: str, sidecar: dict) -> None:
    """Move a converted series into place: sidecar/bval/bvec first, the volume last, each by rename."""
    import json

    from pmlseg.atomic import atomic_path

    final = out / rel
    final.parent.mkdir(parents=True, exist_ok=True)
    stem = str(final)[: -len(".nii.gz")]
    with atomic_path(stem + ".json") as tmp:
        Path(tmp).write_text(json.dumps(sidecar, indent=2) + "\n")
    for src, ext in ((converted.bval, ".bval"), (converted.bvec, ".bvec")):
        if src is not None:
            os.replace(src, stem + ext)
    os.replace(converted.nifti, final)


def write_dataset_files(out: Path, dcm2niix_version: str = "") -> None:
    """dataset_description.json (required by BIDS) and a .bidsignore for the two inventory tables, once."""
    import json

    from pmlseg import __version__

    desc = out / "dataset_description.json"
    if not desc.exists():
        generated = [{"Name": "pmlseg ingest", "Version": __version__}]
        if dcm2niix_version:
            generated.append({"Name": "dcm2niix", "Version": dcm2niix_version})
        write_text(desc, json.dumps({"Name": "pmlseg ingest", "BIDSVersion": "1.9.0", "DatasetType": "raw",
                                     "GeneratedBy": generated}, indent=2) + "\n")
    ignore = out / ".bidsignore"
    if not ignore.exists():
        write_text(ignore, "series.tsv\nidentity.tsv\n")

