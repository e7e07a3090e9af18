"""Fold a reviewer's decisions.json (exported from report.html) back into DIR/lesions.tsv."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from pmlseg.atomic import write_text
from pmlseg.errors import PmlsegError
from pmlseg.tables import read_tsv, write_tsv

SCHEMA = {
    "type": "object",
    "required": ["format", "version", "decisions"],
    "properties": {
        "format": {"const": "pmlseg-decisions"},
        "version": {"const": 1},
        "report_id": {"type": "string"},
        "decisions": {"type": "array", "items": {
            "type": "object", "required": ["lesion_id", "decision"],
            "properties": {"lesion_id": {"type": "integer", "minimum": 1},
                           "decision": {"enum": ["confirm_new_lesion", "not_a_lesion", "suspect_pml", None]},
                           "comment": {"type": "string", "maxLength": 2000}},
            "additionalProperties": False}},
    },
}


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
    rows = read_tsv(tsv)
    if not rows or "lesion_id" not in rows[0]:
        raise PmlsegError(f"{tsv}: no lesion_id column")
    by_id = {int(r["lesion_id"]): r for r in rows}
    for d in data["decisions"]:
        if d["lesion_id"] not in by_id:
            raise PmlsegError(f"{decisions_path}: lesion_id {d['lesion_id']} is not in {tsv}")
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
