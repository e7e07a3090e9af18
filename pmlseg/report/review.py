"""Fold a reviewer's decisions.json (exported from report.html) back into DIR/lesions.tsv.

Lesion ids are renumbered whenever detection runs again, so a decision must not land on whatever lesion
now has its id: the decisions carry the report id (DIR/qc.json's report_id: a hash of the inputs, the
model and the lesion table) and each lesion's centroid, and both must match the run on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from pmlseg.atomic import write_text
from pmlseg.errors import PmlsegError
from pmlseg.tables import read_tsv, write_tsv

SCHEMA = {
    "type": "object",
    "required": ["format", "version", "report_id", "decisions"],
    "properties": {
        "format": {"const": "pmlseg-decisions"},
        "version": {"const": 1},
        "report_id": {"type": "string"},
        "decisions": {"type": "array", "items": {
            "type": "object", "required": ["lesion_id", "centroid", "decision"],
            "properties": {"lesion_id": {"type": "integer", "minimum": 1},
                           "centroid": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
                           "decision": {"enum": ["confirm_new_lesion", "not_a_lesion", "suspect_pml", None]},
                           "comment": {"type": "string", "maxLength": 2000}},
            "additionalProperties": False}},
    },
}
CENTROID_TOLERANCE_MM = 0.5  # lesions.tsv and the report both round centroids to 0.1 mm


def _report_id_on_disk(out_dir: Path) -> str:
    qc = out_dir / "qc.json"
    try:
        rid = json.loads(qc.read_text()).get("report_id")
    except (OSError, json.JSONDecodeError):
        rid = None
    if not rid:
        raise PmlsegError(f"{qc}: no report id (missing or unreadable; run pmlseg detect again)")
    return rid


def import_decisions(decisions_path, out_dir) -> int:
    """Validate the JSON, add review_decision/review_comment columns to lesions.tsv; returns how many set."""
    decisions_path, out_dir = Path(decisions_path), Path(out_dir)
    try:
        data = json.loads(decisions_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PmlsegError(f"{decisions_path}: not readable JSON ({exc})") from None
    try:
        jsonschema.validate(data, SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise PmlsegError(f"{decisions_path}: invalid decisions file at {where}: {exc.message}") from None
    tsv = out_dir / "lesions.tsv"
    if not tsv.exists():
        raise PmlsegError(f"{tsv}: missing (run pmlseg detect first)")
    rid = _report_id_on_disk(out_dir)
    if data["report_id"] != rid:
        raise PmlsegError(f"{decisions_path}: decisions are for report {data['report_id']}, but {out_dir} holds report "
                          f"{rid} (detection ran again: review the current report.html)")
    rows = read_tsv(tsv)
    if not rows or "lesion_id" not in rows[0]:
        raise PmlsegError(f"{tsv}: no lesion_id column")
    by_id = {int(r["lesion_id"]): r for r in rows}
    for d in data["decisions"]:
        if d["lesion_id"] not in by_id:
            raise PmlsegError(f"{decisions_path}: lesion_id {d['lesion_id']} is not in {tsv}")
        r = by_id[d["lesion_id"]]
        try:
            here = [float(r[f"centroid_{a}"]) for a in "xyz"]
        except (KeyError, ValueError):
            raise PmlsegError(f"{tsv}: lesion {d['lesion_id']} has no centroid_x/y/z") from None
        if max(abs(a - b) for a, b in zip(here, d["centroid"])) > CENTROID_TOLERANCE_MM:
            raise PmlsegError(f"{decisions_path}: lesion {d['lesion_id']} was at {d['centroid']} in the reviewed report "
                              f"but is at {here} in {tsv} (renumbered lesion): not imported")
    n = 0
    for d in data["decisions"]:
        r = by_id[d["lesion_id"]]
        r["review_decision"] = d["decision"] or ""
        r["review_comment"] = d.get("comment") or ""
        n += d["decision"] is not None
    fields = list(rows[0].keys())
    for extra in ("review_decision", "review_comment"):
        if extra not in fields:
            fields.append(extra)
    write_text(out_dir / "decisions.json", json.dumps(data, indent=1))
    write_tsv(tsv, rows, fields)
    return n
