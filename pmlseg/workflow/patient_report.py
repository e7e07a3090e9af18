"""One patient's longitudinal page: every tracked lesion's growth curve and links to the visit reports.

Written by `pmlseg track` next to tracks.tsv; self-contained HTML (inline SVG, no scripts, no network),
pseudonyms only.
"""

from __future__ import annotations

import html
from pathlib import Path

from pmlseg.atomic import write_text
from pmlseg.workflow import layout
from pmlseg.workflow.suspicion import suspicion_rank

COLOURS = ["#c0392b", "#2c6fbb", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#2c3e50"]


def _e(x) -> str:
    return html.escape(str(x if x is not None else ""))


def growth_svg(curves: dict[str, list[tuple[float, float]]], width: int = 520, height: int = 220) -> str:
    """Volume (mm³) against days since the rebaseline, one polyline per lesion."""
    pts = [p for c in curves.values() for p in c]
    if not pts:
        return "<p>No new or enlarging lesion was found at any follow-up.</p>"
    pl, pr, pt, pb = 50, 70, 10, 30
    w, h = width - pl - pr, height - pt - pb
    xmax = max(max(d for d, _ in pts), 1.0)
    ymax = max(max(v for _, v in pts), 1.0)
    X = lambda d: pl + w * d / xmax  # noqa: E731
    Y = lambda v: pt + h - h * v / ymax  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           'aria-label="lesion growth curves">',
           f'<line x1="{pl}" y1="{pt + h}" x2="{pl + w}" y2="{pt + h}" stroke="#888"/>',
           f'<line x1="{pl}" y1="{pt}" x2="{pl}" y2="{pt + h}" stroke="#888"/>',
           f'<text x="{pl}" y="{height - 8}" font-size="10">0</text>',
           f'<text x="{pl + w - 50}" y="{height - 8}" font-size="10">{xmax:.0f} days</text>',
           f'<text x="2" y="{pt + 10}" font-size="10">{ymax:.0f} mm³</text>']
    for i, (lid, c) in enumerate(sorted(curves.items())):
        col = COLOURS[i % len(COLOURS)]
        line = " ".join(f"{X(d):.1f},{Y(v):.1f}" for d, v in c)
        out.append(f'<polyline points="{line}" fill="none" stroke="{col}" stroke-width="2"/>')
        for d, v in c:
            out.append(f'<circle cx="{X(d):.1f}" cy="{Y(v):.1f}" r="3" fill="{col}">'
                       f"<title>{_e(lid)}: {v:.0f} mm³ at day {d:.0f}</title></circle>")
        d, v = c[-1]
        out.append(f'<text x="{X(d) + 5:.1f}" y="{Y(v) + 4:.1f}" font-size="10" fill="{col}">{_e(lid)}</text>')
    out.append("</svg>")
    return "".join(out)


def write_patient_report(out: Path, subject: str, manifest: list[dict], lesions: list[dict],
                         tracks: list[dict]) -> Path:
    days = {r["session"]: float(r["days"]) for r in manifest if r["subject"] == subject and r["days"] != ""}
    curves: dict[str, list[tuple[float, float]]] = {}
    for t in tracks:
        for item in t["growth_curve"].split(";") if t["growth_curve"] else []:
            ses, vol = item.split(":")
            if ses in days:
                curves.setdefault(t["lesion_id"], []).append((days[ses], float(vol)))
    report = out / layout.patient_report(subject)
    up = "../" * (len(Path(layout.patient_report(subject)).parts) - 1)
    rows = []
    for r in manifest:
        if r["subject"] != subject:
            continue
        links = []
        for against in ("rebaseline", "previous"):
            rel = f"{layout.detect_dir(subject, r['session'], against)}/report.html"
            if (out / rel).exists():
                links.append(f'<a href="{_e(up + rel)}">vs {against}</a>')
        n = sum(1 for x in lesions if x["session"] == r["session"])
        rows.append(f"<tr><td>{_e(r['session'])}</td><td>{_e(r['role'])}</td><td>{_e(r['days'])}</td>"
                    f"<td>{n if r['role'] == 'follow-up' else ''}</td><td>{_e(r['reason'])}</td>"
                    f"<td>{' '.join(links)}</td></tr>")
    trows = []
    for t in tracks:
        cls = ' style="background:#fde2e2"' if suspicion_rank(t["pml_suspicion"]) >= 2 else ""
        trows.append(f"<tr{cls}><td>{_e(t['lesion_id'])}</td><td>{_e(t['first_seen'])}</td>"
                     f"<td>{_e(t['last_seen'])}</td><td>{_e(t['first_volume_mm3'])}</td>"
                     f"<td>{_e(t['last_volume_mm3'])}</td><td>{_e(t['max_pml_score'])}</td>"
                     f"<td>{_e(t['pml_suspicion'])}</td></tr>")
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(subject)}: new lesions over time</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.25em .5em;font-size:.9em}th{background:#f3f3f3}</style></head><body>"
        f"<h1>{_e(subject)}: new and enlarging lesions since the rebaseline</h1>"
        f'<p><a href="{up}index.html">cohort index</a> · research reading aid; confirm every flag.</p>'
        f"<h2>Growth curves</h2>{growth_svg(curves)}"
        "<h2>Lesions</h2><table><tr><th>lesion</th><th>first seen</th><th>last seen</th><th>first mm³</th>"
        f"<th>last mm³</th><th>max PML score</th><th>PML suspicion</th></tr>{''.join(trows)}</table>"
        "<h2>Visits</h2><table><tr><th>session</th><th>role</th><th>days</th><th>new lesions</th><th>notes</th>"
        f"<th>reports</th></tr>{''.join(rows)}</table></body></html>\n")
    write_text(report, page)
    return report
