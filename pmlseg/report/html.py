"""Self-contained reviewer's report (report.html): no network; the rebaseline and follow-up side by side in
NiiVue (pmlseg.report.viewer: library and volumes embedded), a lesion table that drives it, per-lesion crops
(PNG, base64) with the PML rules, and per-lesion decision capture exported as JSON.

Pseudonymous by default: the header shows only the pseudonym given in ``header['subject']``; the
identified fields (``header['identity']``) are printed only when ``identified=True``.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import time
from pathlib import Path

import SimpleITK as sitk

from pmlseg.atomic import write_text
from pmlseg.report import NO_LESION, by_suspicion
from pmlseg.report.figures import figure_png, lesion_figure, overview_figure
from pmlseg.report.viewer import NIIVUE_VERSION, lesion_targets, niivue_js, viewer_js, viewer_payload

DECISIONS = ("confirm_new_lesion", "not_a_lesion", "suspect_pml")

_JS = r"""
const L = JSON.parse(document.getElementById('lesion-data').textContent);
function collect() {
  const out = {format: 'pmlseg-decisions', version: 1, report_id: L.report_id, decisions: []};
  for (const l of L.lesions) {
    const sel = document.querySelector(`input[name="dec-${l}"]:checked`);
    const com = document.getElementById(`com-${l}`).value;
    out.decisions.push({lesion_id: l, centroid: L.centroids[l], decision: sel ? sel.value : null, comment: com});
  }
  return out;
}
function exportDecisions() {
  const blob = new Blob([JSON.stringify(collect(), null, 2)], {type: 'application/json'});
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'decisions.json';
  document.body.appendChild(a); a.click(); a.remove();
  window.lastExport = collect();
}
document.getElementById('export').addEventListener('click', exportDecisions);
"""

_CSS = """
body{font-family:sans-serif;margin:1.5em;max-width:1100px} table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px} .high{background:#fbb} .moderate{background:#fe9}
.low{background:#dfd} .lesion{border-top:2px solid #888;margin-top:1.5em} .warn{color:#a00}
img{max-width:100%} .small{font-size:12px;color:#555}
#lesion-table tr[data-lesion]{cursor:pointer} #lesion-table tr.current{outline:3px solid #1565c0}
tr.possible td:first-child{border-left:6px solid #2e9e44} .new-key{color:#d00;font-weight:bold}
.possible-key{color:#2e9e44;font-weight:bold} .vpair{display:flex;gap:8px} .vpair figure{flex:1;margin:0}
.vbox{height:440px;background:#000} .vpair canvas{width:100%;height:100%;display:block}
.vcontrols button.on{background:#1565c0;color:#fff} #viewer-pos{font-family:monospace}
.stable{background:#dfd;border:1px solid #6a6;padding:.6em;font-size:1.2em}
"""


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}"
    return html.escape(str(v))


def _lesion_table(order: list[dict]) -> str:
    """The lesion table that drives the viewer: one row per lesion (click or n/p: both views jump to it), the
    review-only "possible" lesions last (ids P1, P2, ...: no crops, no decision); the optional columns
    (category, confidence, PML explanation) only when some lesion has them."""
    present = lambda keys: [k for k in keys if any(d.get(k) not in (None, "") for d in order)]  # noqa: E731
    optional, explain = present(("category", "confidence")), present(("pml_explanation", "pml_unavailable"))
    head = ("<tr><th>lesion</th>" + "".join(f"<th>{k}</th>" for k in optional) +
            "<th>suspicion</th><th>score</th><th>volume mm³</th><th>max diam. mm</th><th>location</th>"
            "<th>lobe / side</th><th>new/enlarging</th>" + ("<th>why (top features, log-odds)</th>" if explain else "") +
            "</tr>")
    rows = []
    for d in order:
        lid = d["lesion_id"]
        cls = " ".join(x for x in (str(d.get("pml_suspicion") or ""), "possible" if d.get("category") == "possible"
                                   else "") if x)
        why = _fmt(d.get("pml_explanation")) if d.get("pml_explanation") not in (None, "") else ""
        if d.get("pml_unavailable"):
            why += f"<br><small>not measured: {_fmt(d['pml_unavailable'])}</small>"
        crops = "" if d.get("category") == "possible" else f" <a href='#lesion-{lid}' title='crops and rules'>crops</a>"
        rows.append(f"<tr class='{cls}' data-lesion='{lid}' title='show lesion {lid} in both views'>"
                    f"<td>{lid}{crops}</td>" +
                    "".join(f"<td>{_fmt(d.get(k))}</td>" for k in optional) +
                    f"<td>{_fmt(d.get('pml_suspicion'))}</td><td>{_fmt(d.get('pml_score'))}</td>"
                    f"<td>{_fmt(d.get('volume_mm3'))}</td><td>{_fmt(d.get('max_diameter_mm'))}</td>"
                    f"<td>{_fmt(d.get('location'))}</td><td>{_fmt(d.get('lobe'))} / {_fmt(d.get('hemisphere'))}</td>"
                    f"<td>{_fmt(d.get('new_or_enlarging'))}</td>" + (f"<td class=why>{why}</td>" if explain else "") + "</tr>")
    return f"<table id=lesion-table>{head}{''.join(rows)}</table>"


def _baseline_name(header: dict) -> str:
    """What the left view shows: the visit detection compared against (the rebaseline, or for a report
    against the previous visit, that visit), named by its session when the header has it."""
    return f"Baseline ({header['baseline_session']})" if header.get("baseline_session") else "Rebaseline"


def _viewer_panel(payload: dict | None, header: dict) -> str:
    if payload is None:
        return "<p id=viewer-status></p><p id=viewer-pos></p>"
    fu = "".join(f"<option value='{k}'>{html.escape(t)}</option>" for k, t in payload["labels"].items() if k != "flair_bl")
    toggles = "".join(f"<label><input type=checkbox data-overlay={k} checked> {t}</label> "
                      for k, t in (("new", "<span class=new-key>new lesions</span>"),
                                   ("possible", "<span class=possible-key>possible lesions</span>"))
                      if k in payload["overlays"])
    views = "".join(f"<button data-slice={v}>{v}</button>" for v in ("axial", "coronal", "sagittal", "multiplanar"))
    return f"""<div class=vcontrols>{views} &nbsp; {toggles} &nbsp; follow-up image <select id=fu-image>{fu}</select>
<br>window <input type=range id=wl-window min=2 max=200 value=100> level <input type=range id=wl-level min=0 max=150
value=50> <button id=wl-reset>reset</button> &nbsp; zoom <button id=zoom-out>−</button><button id=zoom-in>+</button>
&nbsp; <button id=prev>◀ previous lesion (p)</button> <button id=next>next lesion (n) ▶</button></div>
<div class=vpair><figure><figcaption>{html.escape(_baseline_name(header))} FLAIR</figcaption><div class=vbox>
<canvas id=nv-bl></canvas></div></figure><figure><figcaption id=fu-caption>Follow-up FLAIR (on the baseline grid)
</figcaption><div class=vbox><canvas id=nv-fu></canvas></div></figure></div><p id=viewer-pos></p><p id=viewer-status class=warn>loading the viewer ...</p>
<p class=small>Radiological convention (patient's right on the left, sagittal nose left; letters mark the sides).
Left click: move the crosshair (both views follow); right drag: window/level of that view; scroll: slices;
the table, n/p: jump to a lesion.</p>"""


def _possible_rows(rows: list[dict] | None, lesions: list[dict]) -> list[dict]:
    """possible_lesions.tsv rows as table rows (id P<n>, category "possible"); the other lesions then say
    "new" in the category column."""
    if not rows:
        return []
    for d in lesions:
        d.setdefault("category", "new")
    return [{**r, "lesion_id": f"P{r['lesion_id']}", "category": "possible"} for r in rows]


def render_html(lesions: list[dict], images: dict, labels: sitk.Image, qc: dict | None = None,
                header: dict | None = None, identified: bool = False, possible: sitk.Image | None = None,
                crop_mask: sitk.Image | None = None, possible_rows: list[dict] | None = None,
                figures: dict | None = None) -> str:
    """The report page; ``figures`` (lesion id -> lesion_figure, "overview" -> overview_figure) are used
    instead of drawing new ones."""
    header = header or {}
    qc = qc or {}
    lesions = [dict(d) for d in lesions]
    extra = _possible_rows(possible_rows, lesions)
    order = by_suspicion(lesions)
    report_id = header.get("report_id") or f"pmlseg-{int(time.time())}"
    head = [f"<p><b>Subject:</b> {html.escape(str(header.get('subject', 'pseudonymised')))}"
            f" &nbsp; <b>Follow-up:</b> {html.escape(str(header.get('session', 'n/a')))}"
            + (f" &nbsp; <b>Compared with:</b> {html.escape(str(header['baseline_session']))}"
               if header.get("baseline_session") else "") + "</p>"]
    if identified and header.get("identity"):
        head.append("<p class=warn><b>Identified report.</b> " +
                    ", ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in header["identity"].items()) + "</p>")
    qc_status = qc.get("status", "not assessed")
    counts = {lv: sum(d.get("pml_suspicion") == lv for d in lesions) for lv in ("high", "moderate", "low")}
    sections = []
    for d in order:
        lid = d["lesion_id"]
        fig = (figures or {}).get(lid)
        png = base64.b64encode(figure_png(fig if fig is not None else lesion_figure(lid, labels, images))).decode()
        reasons = "".join(f"<tr><td>{html.escape(r['rule'])}</td><td>{r['contribution']:+.2f}</td>"
                          f"<td>{html.escape(r['detail'])}</td></tr>" for r in d.get("reasons", []))
        radios = " ".join(f"<label><input type=radio name='dec-{lid}' value='{v}'> {v.replace('_', ' ')}</label>"
                          for v in DECISIONS)
        missing = (f"<p class=warn><b>Missing features</b> (not scored; the score uses the others): "
                   f"{html.escape(d['missing_features'])}</p>" if d.get("missing_features") else "")
        sections.append(
            f"<div class=lesion id='lesion-{lid}'><h3>Lesion {lid}: {_fmt(d.get('pml_suspicion'))} PML suspicion "
            f"(score {_fmt(d.get('pml_score'))})</h3><img alt='lesion {lid}' src='data:image/png;base64,{png}'>{missing}"
            f"<table><tr><th>rule</th><th>log-odds</th><th>detail</th></tr>{reasons}</table>"
            f"<p>{radios}<br><textarea id='com-{lid}' rows=2 cols=80 placeholder='comment'></textarea></p></div>")
    payload = viewer_payload(images, labels, possible, crop_mask)
    data = json.dumps({"report_id": report_id, "lesions": [d["lesion_id"] for d in order],
                       "order": [str(d["lesion_id"]) for d in order + extra],
                       "targets": lesion_targets(order + extra, labels),
                       "centroids": {d["lesion_id"]: [d.get(f"centroid_{a}") for a in "xyz"] if "centroid_x" in d
                                     else d.get("centroid_mm") for d in order}})
    scripts = (f"<script>{niivue_js()}</script><script>{viewer_js()}</script>" if payload else "")
    limits = (f"<p class=warn id=limits>{html.escape(header['detector_limits'])}</p>"
              if header.get("detector_limits") else "")
    stable = ""
    if not lesions:  # a stable follow-up: say so plainly and show what was compared
        fig = (figures or {}).get("overview")
        png = base64.b64encode(figure_png(fig if fig is not None else overview_figure(images))).decode()
        stable = (f"<p class=stable id=stable><b>{NO_LESION}.</b> Registration QC: {html.escape(str(qc_status))}.</p>"
                  f"{limits}<img alt='rebaseline and follow-up FLAIR' src='data:image/png;base64,{png}'>")
    return f"""<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>pmlseg lesion report</title>
<style>{_CSS}</style></head><body>
<h1>New-lesion report with PML-suspicion flags</h1>{''.join(head)}
<p><b>QC:</b> {html.escape(str(qc_status))} {html.escape(str(qc.get('detail', '')))}</p>{stable}
<p><b>Report id:</b> <code>{html.escape(report_id)}</code></p>
<p><b>{len(lesions)}</b> new/enlarging lesions: {counts['high']} high, {counts['moderate']} moderate, {counts['low']} low PML suspicion.</p>
{limits if lesions else ""}<p class=warn>The PML score is a transparent rule-based reading aid (docs/pml_score.md), not a diagnosis.</p>
{_lesion_table(order + extra)}
<h2>Viewer: {html.escape(_baseline_name(header).lower())} and follow-up, lesions overlaid</h2>
{_viewer_panel(payload, header)}
<h2>Lesions</h2>{''.join(sections)}
<p><button id=export>Export decisions (JSON)</button> then run <code>pmlseg review import decisions.json DIR</code></p>
<script type=application/json id=lesion-data>{data}</script>
<script type=application/json id=viewer-data>{json.dumps(payload)}</script>
<script>{_JS}</script>{scripts}
<p class=small>Viewer: NiiVue {NIIVUE_VERSION} (BSD-2-Clause, embedded).</p></body></html>"""


def write_report(out_dir, lesions: list[dict], images: dict, labels: sitk.Image, qc: dict | None = None,
                 header: dict | None = None, identified: bool = False, pdf: bool = True,
                 possible: sitk.Image | None = None, crop_mask: sitk.Image | None = None) -> dict[str, Path]:
    """Write OUT/report.html (and report.pdf, characterisation.json); returns the paths written.

    ``possible``: the map of "possible" lesions, drawn in another colour (read from
    OUT/possible_lesions.nii.gz when not given and that file exists; their rows, from OUT/possible_lesions.tsv,
    are listed in the lesion table); ``crop_mask``: the brain, to crop the viewer's volumes (else the head
    foreground of the rebaseline FLAIR).  The PDF is written beside the HTML by a child process when this one
    owns two cores (pmlseg.background.beside: both are Python-bound); everything is written when this returns."""
    out = Path(out_dir)
    if possible is None and (out / "possible_lesions.nii.gz").exists():
        possible = sitk.ReadImage(str(out / "possible_lesions.nii.gz"))
    possible_rows = None
    if possible is not None and (out / "possible_lesions.tsv").exists():
        from pmlseg.workflow.manifest import read_tsv

        possible_rows = read_tsv(out / "possible_lesions.tsv")
    paths = {"html": out / "report.html", "json": out / "characterisation.json"}
    # each lesion's figure (a stable follow-up: the overview) is drawn once, for the HTML (PNG) and the PDF page
    figures = None
    if pdf:
        figures = ({d["lesion_id"]: lesion_figure(d["lesion_id"], labels, images) for d in lesions} if lesions
                   else {"overview": overview_figure(images)})
    child = contextlib.nullcontext()
    if pdf:
        from pmlseg.background import beside
        from pmlseg.report.pdf import write_pdf

        paths["pdf"] = out / "report.pdf"
        child = beside(write_pdf, paths["pdf"], lesions, images, labels, qc, header, identified, figures)
    with child:  # the PDF is written (or its error raised) when the block ends
        write_text(paths["html"], render_html(lesions, images, labels, qc, header, identified, possible, crop_mask,
                                              possible_rows, figures))
        write_text(paths["json"], json.dumps(lesions, indent=1, default=float))
    return paths
