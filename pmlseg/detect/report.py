"""A first, self-contained HTML report of one detection: QC, counts, lesion table, per-lesion crops.

Crops come from the working grid (both visits registered, intensity-normalised) with the lesion
outline, embedded as base64 PNG so the file can be mailed or archived alone. The full clinical
report (characterisation, PML score) is pmlseg.report's job; this one is for checking detection.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

MAX_CROPS = 40


def _crop_png(pair, lab_w: np.ndarray, lesion: int, half: int = 20) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = np.argwhere(lab_w == lesion)
    if len(pts) == 0:
        return ""
    # the slice where the lesion is largest
    k = int(np.bincount(pts[:, 2]).argmax())
    cx, cy = pts[pts[:, 2] == k][:, :2].mean(0).round().astype(int)
    sl = (slice(max(0, cx - half), cx + half), slice(max(0, cy - half), cy + half), k)
    fig, axes = plt.subplots(1, 2, figsize=(3.6, 1.9), dpi=80)
    for ax, img, title in ((axes[0], pair.bl, "rebaseline"), (axes[1], pair.fu, "follow-up")):
        # (x, y) array, LPS: show with anterior up and patient's right on the left (radiological)
        ax.imshow(img[sl].T, cmap="gray", vmin=0, vmax=2.2, origin="upper")
        ax.contour((lab_w[sl] == lesion).T.astype(float), levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_report(path, result) -> None:
    """Write ``result`` (pipeline.CaseResult) as report.html, atomically."""
    import SimpleITK as sitk

    from pmlseg.atomic import write_text
    from pmlseg.detect.predictor import to_array

    pair, qc, rows = result.pair, result.qc, result.rows
    lab_w = to_array(sitk.Resample(result.labels, pair.grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                   sitk.sitkUInt16))
    reg = qc["registration"]
    e = html.escape
    body = ["<h1>New and enlarging lesions</h1>",
            f"<p>Registration QC: <b>{'passed' if reg['passed'] else 'FAILED'}</b> "
            f"(similarity {reg['similarity']:.2f}; {e(reg['transform'])}).</p>",
            f"<p><b>{len(rows)}</b> lesion(s): {qc['n_new']} new, {qc['n_enlarging']} enlarging; "
            f"total {qc['total_volume_mm3']} mm³. Detector: {e(str(qc['model'].get('name')))}"
            + (f" (sha256 {e(qc['model']['sha256'][:12])}…)" if qc["model"].get("sha256") else "") + ".</p>",
            f"<p>Centroids in {e(qc['coordinates'])}. Crops: registered, intensity-normalised FLAIR on the "
            "working grid, outline = detected lesion.</p>",
            "<table><tr><th>lesion</th><th>volume (mm³)</th><th>centroid x, y, z</th><th>kind</th>"
            "<th>rebaseline | follow-up</th></tr>"]
    for r in rows:
        png = _crop_png(pair, lab_w, r["lesion_id"]) if r["lesion_id"] <= MAX_CROPS else ""
        img = f'<img alt="lesion {r["lesion_id"]}" src="data:image/png;base64,{png}">' if png else ""
        body.append(f"<tr><td>{r['lesion_id']}</td><td>{r['volume_mm3']}</td>"
                    f"<td>{r['centroid_x']}, {r['centroid_y']}, {r['centroid_z']}</td>"
                    f"<td>{r['new_or_enlarging']}</td><td>{img}</td></tr>")
    body.append("</table>")
    if len(rows) > MAX_CROPS:
        body.append(f"<p>Crops shown for the {MAX_CROPS} largest lesions only.</p>")
    css = ("body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:.2em .5em;font-size:.9em;text-align:left;vertical-align:middle}")
    doc = ("<!doctype html><html><head><meta charset='utf-8'><title>pmlseg detect</title>"
           f"<style>{css}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    write_text(path, doc)
