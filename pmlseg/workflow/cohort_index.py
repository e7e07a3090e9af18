"""The cohort at a glance: OUT/sessions.tsv, OUT/lesions.tsv and a self-contained OUT/index.html.

Patients with suspicious lesions come first; each has a timeline (inline SVG) of new-lesion count and
volume against the rebaseline, the PML risk stratum and MRI interval when a clinical table is given,
and links to every report.  Every problem (no FLAIR, single visit, QC failure, unreadable series) is
listed with its reason.  No identifiers appear unless identified reports are asked for.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from pathlib import Path

from pmlseg.atomic import write_text
from pmlseg.workflow import layout
from pmlseg.tables import parse_date, read_tsv
from pmlseg.workflow.manifest import read_manifest, write_tsv
from pmlseg.workflow.step import read_status
from pmlseg.workflow.suspicion import suspicion_rank
from pmlseg.workflow.tracking import lesion_columns

SESSION_COLUMNS = ["subject", "session", "role", "interval_days", "days_since_previous", "new_lesions", "report",
                   "report_previous", "qc", "reason", "n_new_lesions", "new_volume_mm3", "n_new_since_previous", "max_pml_score",
                   "pml_suspicion"]


def _num(x, default=0.0) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return default


def _visit_qc(out: Path, r: dict) -> tuple[str, str]:
    """QC status of a visit and the reason: the first failed stage wins, else detection's own qc.json."""
    sub, ses = r["subject"], r["session"]
    if r["role"] in ("unusable", "pre-rebaseline"):
        reason = r["reason"] or ("before the rebaseline" if r["role"] == "pre-rebaseline" else "")
        return ("skipped" if r["role"] == "pre-rebaseline" else "failed"), reason
    if r["role"] == "rebaseline":
        return ("ok" if r["status"] == "ok" else "warning"), r["reason"]
    # a failed earlier stage is carried into detection's status (pmlseg step --requires)
    st = read_status(out / layout.detect_status(sub, ses, "rebaseline"))
    if st.get("status") == "missing":
        return "failed", "detection did not run (see OUT/logs)"
    if st.get("status") != "ok":
        return "failed", f"{st.get('stage', 'detect')}: {st.get('reason', '')}"
    qc_path = out / layout.detect_dir(sub, ses, "rebaseline") / "qc.json"
    if qc_path.exists():
        try:
            qc = json.loads(qc_path.read_text())
        except json.JSONDecodeError:
            return "failed", f"{qc_path}: unreadable"
        st = str(qc.get("status", "ok")).lower()
        if st not in ("ok", "pass", "passed"):
            kind = "failed" if st in ("failed", "fail", "error") else "warning"
            return kind, str(qc.get("reason", qc.get("message", st)))
    prev = read_status(out / layout.detect_status(sub, ses, "previous"))
    if r.get("previous") and prev.get("status") == "failed":
        return "warning", f"detection against {r['previous']}: {prev.get('reason', '')}"
    return "ok", r["reason"]


def build_tables(out: Path) -> tuple[list[dict], list[dict]]:
    manifest = read_manifest(out / "manifest.tsv")
    lesions: list[dict] = []
    for sub in sorted({r["subject"] for r in manifest}):
        p = out / layout.tracking_lesions(sub)
        if p.exists():
            lesions += read_tsv(p)
    sessions = []
    for r in manifest:
        sub, ses = r["subject"], r["session"]
        qc, reason = _visit_qc(out, r)
        reason = reason.replace(f"{out.resolve()}{os.sep}", "").replace(f"{out}{os.sep}", "")
        mine = [x for x in lesions if x["subject"] == sub and x["session"] == ses]
        tracked = read_status(out / layout.tracking_status(sub))
        if r["role"] == "follow-up" and qc == "ok" and tracked.get("status") != "ok":
            qc, reason = "warning", f"tracking: {tracked.get('reason', '')}"
        det_rows = read_tsv(out / layout.detect_dir(sub, ses, "rebaseline") / "lesions.tsv") \
            if r["role"] == "follow-up" and qc != "failed" and \
            (out / layout.detect_dir(sub, ses, "rebaseline") / "lesions.tsv").exists() else []
        det = layout.detect_dir(sub, ses, "rebaseline")
        has_map = r["role"] == "follow-up" and qc != "failed" and (out / det / "new_lesions.nii.gz").exists()
        report = f"{det}/report.html" if has_map and (out / det / "report.html").exists() else ""
        prev = layout.detect_dir(sub, ses, "previous")
        report_prev = f"{prev}/report.html" if (read_status(out / prev / "status.json").get("status") == "ok"
                                                and (out / prev / "report.html").exists()) else ""
        scored = mine if mine and det_rows else det_rows
        sessions.append({
            "subject": sub, "session": ses, "role": r["role"], "interval_days": r["days"],
            "days_since_previous": r["interval_days"],
            "new_lesions": f"{det}/new_lesions.nii.gz" if has_map else "", "report": report,
            "report_previous": report_prev,
            "qc": qc, "reason": reason,
            # counts from detection itself, so they stay right even if tracking failed
            "n_new_lesions": len(det_rows) if has_map else "",
            "new_volume_mm3": round(sum(_num(x.get("volume_mm3")) for x in det_rows), 1) if has_map else "",
            "n_new_since_previous": sum(x.get("new_since_previous") == "yes" for x in mine) if has_map else "",
            # scores from tracking when it ran (they include growth since the previous visit), else detection's
            "max_pml_score": max((_num(x.get("pml_score"), 0) for x in scored), default="") if scored else "",
            "pml_suspicion": max((x.get("pml_suspicion", "") for x in scored), key=suspicion_rank, default=""),
        })
    return sessions, lesions


# ---------------------------------------------------------------- HTML
CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;font-size:.9em;text-align:left}
th{background:#f3f3f3}.sus{background:#fde2e2}.warn{color:#a15c00}.fail{color:#b00020;font-weight:bold}
.ok{color:#1b7a1b}.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}
.card.suspicious{border-color:#d33;border-width:2px}.small{font-size:.85em;color:#555}
"""


def _e(x) -> str:
    return html.escape(str(x if x is not None else ""))


def timeline_svg(points: list[tuple[float, int, float, str]], width: int = 420, height: int = 150,
                 due_day: float | None = None) -> str:
    """Inline SVG: new-lesion count (bars) and new-lesion volume (line) against days since rebaseline, and
    the next scan due (dashed line, when a clinical table gives the interval)."""
    if not points:
        return '<p class="small">no analysed follow-up</p>'
    pad_l, pad_r, pad_t, pad_b = 40, 50, 12, 28
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    xmax = max(max(p[0] for p in points), due_day or 0.0, 1.0)
    cmax = max(max(p[1] for p in points), 1)
    vmax = max(max(p[2] for p in points), 1.0)
    X = lambda d: pad_l + w * d / xmax  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="new lesions over time">',
             f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#888"/>',
             f'<text x="{pad_l}" y="{height - 6}" font-size="10">0</text>',
             f'<text x="{pad_l + w - 40}" y="{height - 6}" font-size="10">{xmax:.0f} days</text>',
             f'<text x="2" y="{pad_t + 8}" font-size="10" fill="#c0392b">{cmax} les.</text>',
             f'<text x="{pad_l + w + 4}" y="{pad_t + 8}" font-size="10" fill="#2c6fbb">{vmax:.0f} mm³</text>']
    for d, c, v, ses in points:
        bh = h * c / cmax
        parts.append(f'<rect x="{X(d) - 5:.1f}" y="{pad_t + h - bh:.1f}" width="10" height="{bh:.1f}" '
                     f'fill="#e6a0a0"><title>{_e(ses)}: {c} new lesions, {v:.0f} mm³</title></rect>')
        parts.append(f'<text x="{X(d) - 12:.1f}" y="{pad_t + h + 11}" font-size="9">{_e(ses)}</text>')
    line = " ".join(f"{X(d):.1f},{pad_t + h - h * v / vmax:.1f}" for d, c, v, ses in points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#2c6fbb" stroke-width="2"/>')
    for d, c, v, ses in points:
        parts.append(f'<circle cx="{X(d):.1f}" cy="{pad_t + h - h * v / vmax:.1f}" r="3" fill="#2c6fbb"/>')
    if due_day is not None:
        parts.append(f'<line x1="{X(due_day):.1f}" y1="{pad_t}" x2="{X(due_day):.1f}" y2="{pad_t + h}" stroke="#b00020" '
                     f'stroke-dasharray="4 3"><title>next scan due (day {due_day:.0f})</title></line>'
                     f'<text x="{X(due_day) - 3:.1f}" y="{pad_t + 22}" font-size="9" fill="#b00020" '
                     f'text-anchor="end">next scan due</text>')
    parts.append("</svg>")
    return "".join(parts)


def _detector_check_box(out: Path) -> str:
    """`pmlseg demo`'s grading of the detector against the synthetic truth, when OUT has one."""
    from pmlseg.synth.grade import CHECK_FILE, summary_lines

    path = out / CHECK_FILE
    if not path.is_file():
        return ""
    try:
        first, *rest = summary_lines(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, ValueError):
        return f'<p class="warn">{_e(CHECK_FILE)}: unreadable</p>'
    return (f'<div class="card"><b>{_e(first)}</b><br>' + "<br>".join(_e(x.strip()) for x in rest)
            + f' (<a href="{_e(CHECK_FILE)}">{_e(CHECK_FILE)}</a>)</div>')


def _detector_limits(out: Path, sessions: list[dict]) -> str:
    """What the detector misses, as the visits' detection recorded it (qc.json, pmlseg.report.detector_limits);
    the first follow-up's that has one (a cohort is run with one detector)."""
    for s in sessions:
        if s["report"]:
            try:
                text = json.loads((out / s["report"]).with_name("qc.json").read_text()).get("detector_limits")
            except (OSError, ValueError):
                continue
            if text:
                return str(text)
    return ""


def _link(href: str, text: str) -> str:
    return f'<a href="{_e(href)}">{_e(text)}</a>' if href else ""


def triage(sub: str, sessions: list[dict], risk: dict) -> tuple[tuple, list[str]]:
    """(sort key, reasons) for what a reader should open first: high PML suspicion, then new lesions at the
    latest analysed follow-up, then any suspicion, an overdue scan, a failed visit; then the PML score."""
    mine = [s for s in sessions if s["subject"] == sub]
    sus = max((suspicion_rank(s.get("pml_suspicion", "")) for s in mine), default=0)
    score = max((_num(s.get("max_pml_score")) for s in mine), default=0.0)
    analysed = [s for s in mine if s["n_new_lesions"] != ""]
    latest = analysed[-1] if analysed else None
    n_new = int(_num(latest["n_new_lesions"])) if latest else 0
    failed = [s for s in mine if s["qc"] == "failed"]
    why = []
    if sus >= 2:
        at = [s["session"] for s in mine if suspicion_rank(s.get("pml_suspicion", "")) == sus]
        why.append(f"{'high' if sus >= 3 else 'moderate'} PML suspicion ({', '.join(at)})")
    if n_new:
        why.append(f"{n_new} new lesion{'s' if n_new > 1 else ''} at {latest['session']}")
    if risk.get("overdue"):
        why.append(f"scan overdue by {-risk['due_in_days']} days" if "due_in_days" in risk else "scan overdue")
    why += [f"failed visit {s['session']}: {s['reason'] or 'see logs'}" for s in failed]
    key = (-(sus >= 3), -(n_new > 0), -sus, -bool(risk.get("overdue")), -bool(failed), -score)
    return key, why


def render_index(out: Path, sessions: list[dict], lesions: list[dict], risks: dict, *,
                 identities: dict | None = None, today: dt.date | None = None,
                 scan_dates: dict | None = None, warnings: list[str] = (), detector_limits: str = "") -> str:
    subjects = sorted({s["subject"] for s in sessions})
    # from the visit rows (detection's own tables), so a failed tracking step cannot hide a suspicious lesion
    sus_of = {sub: max((suspicion_rank(x.get("pml_suspicion", "")) for x in sessions if x["subject"] == sub),
                       default=0) for sub in subjects}
    score_of = {sub: max((_num(x.get("max_pml_score")) for x in sessions if x["subject"] == sub), default=0.0)
                for sub in subjects}
    overdue = {sub for sub, r in risks.items() if r.get("overdue")}
    needs = {sub: triage(sub, sessions, risks.get(sub, {})) for sub in subjects}
    order = sorted(subjects, key=lambda s: (needs[s][0], s))
    problems = [s for s in sessions if s["qc"] not in ("ok", "skipped") or s["reason"]]
    n_sus = sum(1 for s in subjects if sus_of[s] >= 2)
    body = [f"<h1>pmlseg cohort index</h1><p>{len(subjects)} patients, {len(sessions)} visits, "
            f"{sum(1 for s in sessions if s['role'] == 'follow-up' and s['qc'] != 'failed')} follow-ups analysed, "
            f"<b>{n_sus}</b> patient(s) with suspicious lesions, {len(problems)} visit(s) with problems, "
            f"{len(overdue)} overdue scan(s).</p>",
            '<p class="small">Research reading aid, not a diagnostic device: every flag must be confirmed by a '
            "neuroradiologist. Tables: <a href=\"sessions.tsv\">sessions.tsv</a>, "
            '<a href="lesions.tsv">lesions.tsv</a>.</p>',
            f'<p class="warn" id="limits">{_e(detector_limits)}</p>' if detector_limits else "",
            _detector_check_box(out)]
    body.append("<h2>Patients, most in need of a reader first</h2><table id=patients><tr><th>subject</th>"
                "<th>needs a reader because</th><th>max PML suspicion</th><th>max PML score</th>"
                "<th>new lesions (latest)</th><th>PML risk /1000</th><th>MRI interval</th><th>next scan</th></tr>")
    for sub in order:
        last = [s for s in sessions if s["subject"] == sub and s["n_new_lesions"] != ""]
        r = risks.get(sub, {})
        cls = ' class="sus"' if sus_of[sub] >= 2 else ""
        sus = max((x.get("pml_suspicion", "") for x in sessions if x["subject"] == sub), key=suspicion_rank,
                  default="")
        body.append(f'<tr{cls} data-subject="{_e(sub)}"><td><a href="#{_e(sub)}">{_e(sub)}</a></td>'
                    f'<td>{"; ".join(_e(x) for x in needs[sub][1]) or "no flag: no new lesion found"}</td>'
                    f'<td>{_e(sus or "none")}</td>'
                    f"<td>{score_of[sub]:.2f}</td><td>{_e(last[-1]['n_new_lesions'] if last else '-')}</td>"
                    f"<td>{_e(r.get('per_1000', ''))}</td><td>{_e(r.get('interval', ''))}</td>"
                    f"<td>{'<span class=fail>OVERDUE</span> ' if r.get('overdue') else ''}{_e(r.get('due', ''))}</td></tr>")
    body.append("</table>")
    if problems:
        body.append("<h2>Problems</h2><table><tr><th>subject</th><th>session</th><th>role</th><th>status</th>"
                    "<th>reason</th></tr>")
        for s in problems:
            cls = "fail" if s["qc"] == "failed" else "warn"
            body.append(f"<tr><td>{_e(s['subject'])}</td><td>{_e(s['session'])}</td><td>{_e(s['role'])}</td>"
                        f'<td class="{cls}">{_e(s["qc"])}</td><td>{_e(s["reason"])}</td></tr>')
        body.append("</table>")
    if warnings:
        body.append("<h2>Clinical table</h2><ul>" + "".join(f'<li class="warn">{_e(w)}</li>' for w in warnings)
                    + "</ul>")
    for sub in order:
        mine = [s for s in sessions if s["subject"] == sub]
        pts = [(_num(s["interval_days"]), int(_num(s["n_new_lesions"])), _num(s["new_volume_mm3"]), s["session"])
               for s in mine if s["n_new_lesions"] != "" or (s["role"] == "rebaseline" and len(mine) > 1)]
        title = _e(sub) + (f" — {_e(identities[sub])}" if identities and sub in identities else "")
        cls = "card suspicious" if sus_of[sub] >= 2 else "card"
        body.append(f'<div class="{cls}" id="{_e(sub)}"><h2>{title}</h2>')
        if (out / layout.patient_report(sub)).exists():
            body.append(f'<p>{_link(layout.patient_report(sub), "lesion growth curves and all reports")}</p>')
        r = risks.get(sub)
        if r:
            body.append(f"<p><b>PML risk</b>: {_e(r['per_1000'])} per 1000 ({_e(r['stratum'])}); "
                        f"recommended MRI every {_e(r['interval'])}; {_e(r['due'])}"
                        f"{' — <span class=fail>OVERDUE</span>' if r.get('overdue') else ''}"
                        f"{'. ' + _e(r['note']) if r.get('note') else ''}</p>")
        last_day = max((_num(s["interval_days"]) for s in mine if s["interval_days"] != ""), default=None)
        due_day = last_day + r["interval_days"] if r and last_day is not None else None
        body.append(timeline_svg(pts, due_day=due_day))
        dates = (scan_dates or {}).get(sub)
        body.append("<table><tr><th>session</th>" + ("<th>scan date</th>" if dates else "") +
                    "<th>role</th><th>days</th><th>QC</th><th>new lesions</th>"
                    "<th>volume mm³</th><th>new since previous</th><th>PML suspicion</th><th>reports</th></tr>")
        for s in mine:
            qcls = {"ok": "ok", "failed": "fail"}.get(s["qc"], "warn")
            body.append(f"<tr><td>{_e(s['session'])}</td>" + (f"<td>{_e(dates.get(s['session'], ''))}</td>" if dates else "")
                        + f"<td>{_e(s['role'])}</td><td>{_e(s['interval_days'])}</td>"
                        f'<td class="{qcls}" title="{_e(s["reason"])}">{_e(s["qc"])}</td>'
                        f"<td>{_e(s['n_new_lesions'])}</td><td>{_e(s['new_volume_mm3'])}</td>"
                        f"<td>{_e(s['n_new_since_previous'])}</td><td>{_e(s['pml_suspicion'])}</td>"
                        f"<td>{_link(s['report'], 'vs rebaseline')} {_link(s['report_previous'], 'vs previous')}</td></tr>")
        body.append("</table>")
        tracks_p = out / layout.tracking_tracks(sub)
        tracks = read_tsv(tracks_p) if tracks_p.exists() else []
        if tracks:
            body.append("<table><tr><th>lesion</th><th>first seen</th><th>visits</th><th>volume mm³ by visit</th>"
                        "<th>max PML score</th><th>suspicion</th></tr>")
            for t in tracks:
                cls = ' class="sus"' if suspicion_rank(t["pml_suspicion"]) >= 2 else ""
                body.append(f"<tr{cls}><td>{_e(t['lesion_id'])}</td><td>{_e(t['first_seen'])}</td>"
                            f"<td>{_e(t['n_visits'])}</td><td>{_e(t['growth_curve'].replace(';', ', '))}</td>"
                            f"<td>{_e(t['max_pml_score'])}</td><td>{_e(t['pml_suspicion'])}</td></tr>")
            body.append("</table>")
        body.append("</div>")
    stamp = (today or dt.date.today()).isoformat() if identities else ""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>pmlseg cohort index</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}"
            f"<p class=small>pmlseg {_e(__import__('pmlseg').__version__)} {stamp}</p></body></html>\n")


def compute_risks(out: Path, clinical: Path | None, today: dt.date, identified: bool = False,
                  unmatched: list[str] | None = None) -> dict[str, dict]:
    """Risk stratum, MRI interval, days to the next scan and overdue flag per subject (dates stay inside this
    function unless ``identified``); clinical rows that match no patient are appended to ``unmatched``."""
    if not clinical:
        return {}
    from pmlseg.workflow.risk import read_clinical, stratify

    identity = read_tsv(out / "identity.tsv") if (out / "identity.tsv").exists() else []
    last_scan: dict[str, dt.date] = {}
    for r in identity:
        d = parse_date(r.get("study_date", ""), str(out / "identity.tsv"))
        if d and (r["subject"] not in last_scan or d > last_scan[r["subject"]]):
            last_scan[r["subject"]] = d
    risks = {}
    for sub, c in read_clinical(clinical, identity, unmatched).items():
        last = last_scan.get(sub)
        risk = stratify(c, last or today)
        months = risk.mri_interval_days / 30.44
        interval = f"{months:.0f} months"
        extra = {}
        if last:
            since = (today - last).days
            left = risk.mri_interval_days - since
            overdue = left < 0
            nxt = f"overdue by {-left} days" if overdue else f"due in {left} days"
            due = f"last scan {since} days ago; next scan {nxt}" if since >= 0 else "last scan after the reference date"
            extra = {"due_in_days": left}
            if identified:
                extra["due_date"] = (last + dt.timedelta(days=risk.mri_interval_days)).isoformat()
                due += f" ({extra['due_date']})"
        else:
            overdue, due = False, "no scan yet"
        risks[sub] = {"per_1000": "unknown" if risk.per_1000 is None else f"{risk.per_1000:g}",
                      "stratum": risk.stratum, "high_risk": risk.high_risk, "interval": interval,
                      "interval_days": risk.mri_interval_days, "overdue": overdue, "due": due,
                      "note": risk.note, **extra}
    return risks


def write_index(out: Path, clinical: Path | None = None, identified: bool = False,
                today: dt.date | None = None) -> dict:
    today = today or dt.date.today()
    sessions, lesions = build_tables(out)
    write_tsv(out / "sessions.tsv", sessions, SESSION_COLUMNS)
    write_tsv(out / "lesions.tsv", lesions, lesion_columns(lesions))
    unmatched: list[str] = []
    risks = compute_risks(out, clinical, today, identified, unmatched)
    identities = scan_dates = None
    if identified:
        identity = read_tsv(out / "identity.tsv")
        identities = {r["subject"]: r["patient_id"] for r in identity}
        scan_dates = {}
        for r in identity:
            d = parse_date(r.get("study_date", ""), str(out / "identity.tsv"))
            if d and r.get("session"):
                scan_dates.setdefault(r["subject"], {})[r["session"]] = d.isoformat()
    write_text(out / "index.html", render_index(out, sessions, lesions, risks, identities=identities, today=today,
                                                scan_dates=scan_dates, warnings=unmatched,
                                                detector_limits=_detector_limits(out, sessions)))
    return {"sessions": len(sessions), "lesions": len(lesions),
            "failed": sum(s["qc"] == "failed" for s in sessions), "risks": len(risks)}
