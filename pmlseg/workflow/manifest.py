"""The visit manifest: which visits exist, which one is each patient's rebaseline, and what each can be used for.

Written once by the ingest checkpoint (from series.tsv and identity.tsv), so the Snakefile never scans
DICOM or NIfTI at parse time: every per-visit rule is expanded from this one small table.  Dates are
turned into day offsets here; the manifest holds no identifiers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from pmlseg import tables
from pmlseg.errors import PmlsegError
from pmlseg.tables import parse_date, read_tsv

COLUMNS = ["subject", "session", "order", "role", "days", "interval_days", "previous", "flair", "t1w", "t2w",
           "dwi", "status", "reason"]
# series.tsv classification -> manifest column (the first converted series of a kind is the main one)
KINDS = {"FLAIR": "flair", "T1w": "t1w", "T2w": "t2w", "dwi": "dwi"}


def compact_cell(value) -> str:
    """Cell text of the workflow's tables: floats with 6 significant digits."""
    return f"{value:.6g}" if isinstance(value, float) else tables.plain_cell(value)


def write_tsv(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    """Atomically write a workflow table with exactly ``columns`` (missing values empty)."""
    tables.write_tsv(path, rows, columns, cell=compact_cell)


@dataclass
class Visit:
    subject: str
    session: str
    date: dt.date | None = None
    images: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)


def collect_visits(out: Path) -> dict[str, list[Visit]]:
    """Visits per subject from ingest's series.tsv (images) and identity.tsv (dates), in scan order."""
    series = read_tsv(out / "series.tsv")
    identity = read_tsv(out / "identity.tsv") if (out / "identity.tsv").exists() else []
    dates = {(r["subject"], r["session"]): r.get("study_date", "") for r in identity}
    visits: dict[tuple[str, str], Visit] = {}
    for (sub, ses), d in dates.items():
        visits[(sub, ses)] = Visit(sub, ses, parse_date(d, str(out / "identity.tsv")))
    for r in series:
        key = (r["subject"], r["session"])
        if not key[0] or not key[1]:
            continue
        v = visits.setdefault(key, Visit(*key))
        kind = KINDS.get(r.get("classification", ""))
        status = r.get("status", "")
        if status == "failed" and r.get("classification") in KINDS:
            v.problems.append(f"{r['classification']} series {r.get('series_number', '')} unreadable: "
                              f"{r.get('reason', '')}".strip())
        if kind and status == "converted" and kind not in v.images:
            rel = r.get("path") or r.get("output") or ""
            if rel and (out / rel).exists():
                v.images[kind] = rel
    by_subject: dict[str, list[Visit]] = {}
    for v in visits.values():
        by_subject.setdefault(v.subject, []).append(v)
    for vs in by_subject.values():
        vs.sort(key=lambda v: (v.date is None, v.date or dt.date.min, v.session))
    return dict(sorted(by_subject.items()))


def build_manifest(out: Path, rebaseline_dates: dict[str, dt.date] | None = None) -> list[dict]:
    """One row per visit: role (rebaseline / follow-up / pre-rebaseline / unusable), day offsets, images, problems.

    The rebaseline is the first visit with a FLAIR on or after the clinical rebaseline date (if one is
    given for the subject), else the first visit with a FLAIR.  A follow-up's ``previous`` is the last
    earlier usable visit, for detection against the previous scan.
    """
    rebaseline_dates = rebaseline_dates or {}
    rows = []
    for subject, visits in collect_visits(out).items():
        since = rebaseline_dates.get(subject)
        usable = [v for v in visits if "flair" in v.images]
        candidates = [v for v in usable if since is None or (v.date is not None and v.date >= since)]
        base = candidates[0] if candidates else None
        prev_usable: Visit | None = None
        prev_date = None
        for i, v in enumerate(visits, 1):
            problems = list(v.problems)
            if "flair" not in v.images:
                problems.insert(0, "no usable FLAIR in this visit")
            if base is None:
                role = "unusable"
                if usable:
                    problems.append("no visit with a FLAIR on or after the clinical rebaseline date")
            elif v is base:
                role = "rebaseline"
            elif "flair" not in v.images:
                role = "unusable"
            elif visits.index(v) < visits.index(base):
                role = "pre-rebaseline"
            else:
                role = "follow-up"
            if role == "rebaseline" and len(candidates) == 1:
                problems.append("single usable visit: nothing to compare with")
            days = (v.date - base.date).days if (base and base.date and v.date) else ""
            interval = (v.date - prev_date).days if (prev_date and v.date) else ""
            rows.append({
                "subject": subject, "session": v.session, "order": i, "role": role, "days": days,
                "interval_days": interval,
                "previous": prev_usable.session if (role == "follow-up" and prev_usable) else "",
                **{k: v.images.get(k, "") for k in ("flair", "t1w", "t2w", "dwi")},
                "status": "ok" if role in ("rebaseline", "follow-up") and not problems else
                          ("warning" if role in ("rebaseline", "follow-up") else "skipped"),
                "reason": "; ".join(problems),
            })
            if v.date:
                prev_date = v.date
            if role in ("rebaseline", "follow-up"):
                prev_usable = v
    return rows


def write_manifest(out: Path, clinical: Path | None = None) -> list[dict]:
    from pmlseg.workflow.risk import read_clinical

    reb = {}
    if clinical:
        identity = read_tsv(out / "identity.tsv") if (out / "identity.tsv").exists() else []
        for subject, info in read_clinical(clinical, identity).items():
            if info.rebaseline_date:
                reb[subject] = info.rebaseline_date
    rows = build_manifest(out, reb)
    write_tsv(out / "manifest.tsv", rows, COLUMNS)
    return rows


def read_manifest(path: str | Path) -> list[dict]:
    rows = read_tsv(path)
    if rows and set(COLUMNS) - set(rows[0]):
        raise PmlsegError(f"{path}: not a pmlseg manifest (missing {sorted(set(COLUMNS) - set(rows[0]))})")
    return rows


@dataclass
class ManifestIndex:
    """The manifest's rows with the look-ups the workflow's input functions make, each O(1)."""

    rows: list[dict]
    visits: dict[tuple[str, str], dict] = field(default_factory=dict)     # (subject, session) -> row
    rebaselines: dict[str, dict] = field(default_factory=dict)           # subject -> its rebaseline row
    followups: dict[str, list[dict]] = field(default_factory=dict)       # subject -> follow-up rows, in order
    subjects: list[str] = field(default_factory=list)
    n_followups: int = 0                                                  # follow-up visits, all subjects

    def __post_init__(self):
        for r in self.rows:
            self.visits[(r["subject"], r["session"])] = r
            if r["role"] == "rebaseline":
                self.rebaselines[r["subject"]] = r
            elif r["role"] == "follow-up":
                self.followups.setdefault(r["subject"], []).append(r)
        self.subjects = sorted({r["subject"] for r in self.rows})
        self.n_followups = sum(len(v) for v in self.followups.values())


_INDEX: dict[str, tuple[tuple[int, int], ManifestIndex]] = {}


def manifest_index(path: str | Path) -> ManifestIndex:
    """The manifest at ``path``, read again only when the file changed (mtime or size).

    Snakemake calls the rules' input functions once per job, and every call asks about the manifest:
    reading it each time made building the job graph grow with the square of the visit count.
    """
    key = str(path)
    st = Path(path).stat()
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _INDEX.get(key)
    if cached is None or cached[0] != stamp:
        cached = _INDEX[key] = (stamp, ManifestIndex(read_manifest(path)))
    return cached[1]
