"""Self-contained reviewer's report (report.html): no network, images base64-embedded, a small canvas
slice viewer (hand-written, no bundled library: the volumes are embedded as 8-bit base64 arrays of the
follow-up FLAIR and the label map, which stays small), and per-lesion decision capture exported as JSON.

Pseudonymous by default: the header shows only the pseudonym given in ``header['subject']``; the
identified fields (``header['identity']``) are printed only when ``identified=True``.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pmlseg.atomic import write_text
from pmlseg.report.figures import figure_png, lesion_figure, overview_figure

DECISIONS = ("confirm_new_lesion", "not_a_lesion", "suspect_pml")
NO_LESION = "No new or enlarging lesion"
SUSPICION_ORDER = {"high": 0, "moderate": 1, "low": 2}

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
// slice viewer: 8-bit volume + label map, axial slices, lesion outline in red
(function () {
  const V = JSON.parse(document.getElementById('viewer-data').textContent);
  if (!V) return;
  const dec = s => Uint8Array.from(atob(s), c => c.charCodeAt(0));
  const img = dec(V.image), lab = dec(V.labels);
  const [nz, ny, nx] = V.shape;
  const cv = document.getElementById('viewer'), ctx = cv.getContext('2d');
  cv.width = nx; cv.height = ny;
  const slider = document.getElementById('slice');
  slider.max = nz - 1; slider.value = V.start;
  function draw() {
    const z = +slider.value, id = ctx.createImageData(nx, ny);
    for (let i = 0; i < nx * ny; i++) {
      const v = img[z * nx * ny + i], l = lab[z * nx * ny + i];
      id.data[4 * i] = l ? 255 : v; id.data[4 * i + 1] = l ? v * 0.4 : v; id.data[4 * i + 2] = l ? v * 0.4 : v;
      id.data[4 * i + 3] = 255;
    }
    ctx.putImageData(id, 0, 0);
    document.getElementById('slice-no').textContent = `slice ${z + 1}/${nz}`;
  }
  slider.addEventListener('input', draw); draw();
})();
"""

_CSS = """
body{font-family:sans-serif;margin:1.5em;max-width:1100px} table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px} .high{background:#fbb} .moderate{background:#fe9}
.low{background:#dfd} .lesion{border-top:2px solid #888;margin-top:1.5em} .warn{color:#a00}
.stable{background:#dfd;border:1px solid #6a6;padding:.6em;font-size:1.2em}
canvas{image-rendering:pixelated;width:512px;border:1px solid #444} img{max-width:100%}
"""


def _viewer_payload(labels: sitk.Image, image: sitk.Image, max_inplane: int = 192) -> dict:
    a = sitk.GetArrayFromImage(image).astype(np.float32)
    lab = sitk.GetArrayFromImage(labels)
    step = max(1, int(np.ceil(max(a.shape[1:]) / max_inplane)))
    a, lab = a[:, ::step, ::step], lab[:, ::step, ::step]
    lo, hi = np.percentile(a, [1, 99.5])
    u8 = (np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    zs = np.argwhere(lab > 0)[:, 0]
    return {"shape": list(u8.shape), "start": int(np.median(zs)) if zs.size else u8.shape[0] // 2,
            "image": base64.b64encode(u8.tobytes()).decode(), "labels": base64.b64encode((lab > 0).astype(np.uint8).tobytes()).decode()}


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}"
    return html.escape(str(v))


def render_html(lesions: list[dict], images: dict, labels: sitk.Image, qc: dict | None = None,
                header: dict | None = None, identified: bool = False) -> str:
    header = header or {}
    qc = qc or {}
    order = sorted(lesions, key=lambda d: (SUSPICION_ORDER.get(d.get("pml_suspicion"), 3), -d.get("pml_score", 0)))
    report_id = header.get("report_id") or f"pmlseg-{int(time.time())}"
    head = [f"<p><b>Subject:</b> {html.escape(str(header.get('subject', 'pseudonymised')))}"
            f" &nbsp; <b>Follow-up:</b> {html.escape(str(header.get('session', 'n/a')))}</p>"]
    if identified and header.get("identity"):
        head.append("<p class=warn><b>Identified report.</b> " +
                    ", ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in header["identity"].items()) + "</p>")
    qc_status = qc.get("status", "not assessed")
    counts = {lv: sum(d.get("pml_suspicion") == lv for d in lesions) for lv in ("high", "moderate", "low")}
    rows = []
    for d in order:
        rows.append(f"<tr class='{d.get('pml_suspicion')}'><td><a href='#lesion-{d['lesion_id']}'>{d['lesion_id']}</a></td>"
                    f"<td>{_fmt(d.get('pml_suspicion'))}</td><td>{_fmt(d.get('pml_score'))}</td>"
                    f"<td>{_fmt(d.get('volume_mm3'))}</td><td>{_fmt(d.get('max_diameter_mm'))}</td>"
                    f"<td>{_fmt(d.get('location'))}</td><td>{_fmt(d.get('lobe'))} / {_fmt(d.get('hemisphere'))}</td>"
                    f"<td>{_fmt(d.get('new_or_enlarging'))}</td></tr>")
    sections = []
    for d in order:
        lid = d["lesion_id"]
        png = base64.b64encode(figure_png(lesion_figure(lid, labels, images))).decode()
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
    viewer = _viewer_payload(labels, images["flair_fu"]) if images.get("flair_fu") is not None else None
    data = json.dumps({"report_id": report_id, "lesions": [d["lesion_id"] for d in order],
                       "centroids": {d["lesion_id"]: [d.get(f"centroid_{a}") for a in "xyz"] if "centroid_x" in d
                                     else d.get("centroid_mm") for d in order}})
    stable = ""
    if not lesions:  # a stable follow-up: say so plainly and show what was compared
        png = base64.b64encode(figure_png(overview_figure(images))).decode()
        stable = (f"<p class=stable id=stable><b>{NO_LESION}.</b> Registration QC: {html.escape(str(qc_status))}.</p>"
                  f"<img alt='rebaseline and follow-up FLAIR' src='data:image/png;base64,{png}'>")
    return f"""<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>pmlseg lesion report</title>
<style>{_CSS}</style></head><body>
<h1>New-lesion report with PML-suspicion flags</h1>{''.join(head)}
<p><b>QC:</b> {html.escape(str(qc_status))} {html.escape(str(qc.get('detail', '')))}</p>{stable}
<p><b>Report id:</b> <code>{html.escape(report_id)}</code></p>
<p><b>{len(lesions)}</b> new/enlarging lesions: {counts['high']} high, {counts['moderate']} moderate, {counts['low']} low PML suspicion.</p>
<p class=warn>The PML score is a transparent rule-based reading aid (docs/pml_score.md), not a diagnosis.</p>
<table><tr><th>lesion</th><th>suspicion</th><th>score</th><th>volume mm³</th><th>max diam. mm</th><th>location</th>
<th>lobe / side</th><th>new/enlarging</th></tr>{''.join(rows)}</table>
<h2>Viewer (follow-up FLAIR on the rebaseline grid, lesions red)</h2>
<canvas id=viewer></canvas><br><input type=range id=slice min=0 value=0 style='width:512px'> <span id=slice-no></span>
<h2>Lesions</h2>{''.join(sections)}
<p><button id=export>Export decisions (JSON)</button> then run <code>pmlseg review import decisions.json DIR</code></p>
<script type=application/json id=lesion-data>{data}</script>
<script type=application/json id=viewer-data>{json.dumps(viewer)}</script>
<script>{_JS}</script></body></html>"""


def write_report(out_dir, lesions: list[dict], images: dict, labels: sitk.Image, qc: dict | None = None,
                 header: dict | None = None, identified: bool = False, pdf: bool = True) -> dict[str, Path]:
    """Write OUT/report.html (and report.pdf, characterisation.json); returns the paths written."""
    out = Path(out_dir)
    paths = {"html": out / "report.html", "json": out / "characterisation.json"}
    write_text(paths["html"], render_html(lesions, images, labels, qc, header, identified))
    write_text(paths["json"], json.dumps(lesions, indent=1, default=float))
    if pdf:
        from pmlseg.report.pdf import write_pdf

        paths["pdf"] = out / "report.pdf"
        write_pdf(paths["pdf"], lesions, images, labels, qc, header, identified)
    return paths
