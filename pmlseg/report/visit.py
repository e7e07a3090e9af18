"""After detection: characterise each new lesion, score PML suspicion, write the reviewer's outputs.

Glue between `pmlseg.detect` (label map and lesion rows on the rebaseline grid) and
`pmlseg.characterise` / `pmlseg.report`, so one `pmlseg detect` call leaves the complete per-visit
result: lesions.tsv with the feature and score columns, report.html/.pdf, DICOM SEG + SR.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["pml_score", "pml_suspicion", "pml_explanation", "pml_unavailable", "reasons"]


def reasons_text(reasons: list[dict]) -> str:
    """The rules that moved the score, strongest first: 'juxtacortical +1.20 (cortical contact 40%); ...'."""
    fired = sorted((r for r in reasons if r["contribution"]), key=lambda r: -abs(r["contribution"]))
    return "; ".join(f"{r['rule']} {r['contribution']:+.2f} ({r['detail']})" for r in fired) or "no rule fired"


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return str(round(v, 4))  # keep the producers' precision (volumes are compared to voxel counts)
    return str(v)


def lesion_rows(detected: list[dict], scored: list[dict], columns: list[str] | None = None) -> tuple[list[str], list[dict]]:
    """Detection rows extended with the scalar features and the score (detection values win on clashes);
    ``columns``: the detection columns to use when there is no row (a stable follow-up's header)."""
    by_id = {int(s["lesion_id"]): s for s in scored}
    columns = list(detected[0].keys()) if detected else list(columns or ["lesion_id"])
    extra: list[str] = []
    rows = []
    for d in detected:
        s = by_id.get(int(d["lesion_id"]), {})
        row = dict(d)
        for k, v in s.items():
            if k in row or k in SCORE_COLUMNS or isinstance(v, (list, dict, tuple)):
                continue
            row[k] = v
            if k not in extra:
                extra.append(k)
        row["pml_score"] = s.get("pml_score")
        row["pml_suspicion"] = s.get("pml_suspicion")
        row["pml_explanation"] = s.get("pml_explanation")
        row["pml_unavailable"] = s.get("pml_unavailable")
        row["reasons"] = reasons_text(s.get("reasons", []))
        rows.append(row)
    return columns + extra + SCORE_COLUMNS, rows


def write_lesion_table(path: Path, columns: list[str], rows: list[dict]) -> None:
    from pmlseg.tables import write_tsv

    write_tsv(path, rows, columns, cell=_cell)


def characterise_and_report(out_dir, labels, detected: list[dict], images: dict, qc: dict,
                            header: dict | None = None, identified: bool = False, dicom: bool = True,
                            brain_mask=None, crop_mask=None, priors=None,
                            unavailable: dict[str, str] | None = None,
                            columns: list[str] | None = None, derived_series: list | None = None) -> list[dict]:
    """Characterise and score the detected lesions, then write lesions.tsv, report.html/.pdf and DICOM.

    ``labels``: label map on the rebaseline grid (value i = row i of ``detected``); ``images``: 'flair_bl',
    'flair_fu' and optional 't1_fu', 't1ce_fu', 'dwi_fu', 't2_fu', all on that grid; ``crop_mask`` (else
    ``brain_mask``): the brain the report's viewer is cropped to. ``priors`` (the checked template fit),
    ``unavailable`` (optional image -> why not used) go to characterise_lesions; ``columns`` are the
    detection columns of a header-only lesions.tsv; ``derived_series``: the DICOM derived series already
    encoded (dicom_outputs.encode_derived_series), else encoded here. Returns the merged rows (each with the full feature
    dict under 'features').
    """
    from pmlseg.characterise import characterise_lesions, load_rules, score_pml
    from pmlseg.report.html import write_report

    out = Path(out_dir)
    images = {k: v for k, v in images.items() if v is not None}
    scored = score_pml(characterise_lesions(labels, images, brain_mask=brain_mask, priors=priors,
                                            unavailable=unavailable), load_rules()) if detected else []
    columns, rows = lesion_rows(detected, scored, columns)
    write_lesion_table(out / "lesions.tsv", columns, rows)
    by_id = {int(s["lesion_id"]): s for s in scored}
    report_lesions = [{**by_id.get(int(r["lesion_id"]), {}), **{k: r[k] for k in r if k != "reasons"},
                       "reasons": by_id.get(int(r["lesion_id"]), {}).get("reasons", [])} for r in rows]
    report_lesions.sort(key=lambda r: -(r.get("pml_score") or 0.0))
    child = contextlib.nullcontext()
    if dicom:
        from pmlseg.background import beside
        from pmlseg.report.dicom_outputs import write_dicom_outputs

        pseudonym = (header or {}).get("subject") or "pseudonymised"
        # pydicom is Python-bound: a child process writes the DICOM beside the HTML/PDF when the job owns two cores
        child = beside(write_dicom_outputs, out, labels, images["flair_bl"], report_lesions, pseudonym, derived_series)
    with child:  # the DICOM is written (or its error raised) when the block ends
        write_report(out, report_lesions, images, labels, qc=qc, header=header, identified=identified,
                     crop_mask=crop_mask if crop_mask is not None else brain_mask)
    high = sum(r.get("pml_suspicion") == "high" for r in rows)
    log.info("characterised %d lesion(s); %d with high PML suspicion", len(rows), high)
    return rows
