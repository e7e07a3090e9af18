"""report.pdf with matplotlib's PdfPages (pure Python): a summary page, then one page per lesion
with its crops and rule contributions.  Pseudonymous unless ``identified``."""

from __future__ import annotations

import textwrap

from pmlseg.atomic import atomic_path
from pmlseg.report import NO_LESION, by_suspicion
from pmlseg.report.figures import figure_page, lesion_figure, overview_figure


def write_pdf(path, lesions, images, labels, qc=None, header=None, identified=False, figures=None) -> None:
    """``figures``: lesion id -> lesion_figure ("overview" -> overview_figure) already drawn for the HTML,
    else drawn anew."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    header, qc = header or {}, qc or {}
    order = by_suspicion(lesions)
    with atomic_path(path) as tmp, PdfPages(tmp) as pdf:
        fig = plt.figure(figsize=(8.27, 11.69))
        lines = ["New-lesion report with PML-suspicion flags", "",
                 f"Subject: {header.get('subject', 'pseudonymised')}   Follow-up: {header.get('session', 'n/a')}"]
        if identified and header.get("identity"):
            lines.append("IDENTIFIED: " + ", ".join(f"{k}: {v}" for k, v in header["identity"].items()))
        lines += [f"QC: {qc.get('status', 'not assessed')} {qc.get('detail', '')}",
                  f"Report id: {header.get('report_id', 'n/a')}",
                  f"{len(lesions)} new/enlarging lesions" if lesions else f"{NO_LESION}.", "",
                  *textwrap.wrap(header.get("detector_limits", ""), 100),
                  "The PML score is a rule-based reading aid, not a diagnosis.", "",
                  f"{'id':>4} {'suspicion':>9} {'score':>6} {'vol mm3':>8} {'diam mm':>8}  location / lobe"]
        for d in order:
            lines.append(f"{d['lesion_id']:>4} {d['pml_suspicion']:>9} {d['pml_score']:>6.2f} {d['volume_mm3']:>8.0f} "
                         f"{d['max_diameter_mm']:>8.1f}  {d.get('location')} / {d.get('lobe')} {d.get('hemisphere')}")
        fig.text(0.05, 0.95, "\n".join(lines[:70]), va="top", family="monospace", fontsize=8)
        pdf.savefig(fig)
        plt.close(fig)
        if not lesions:  # stable follow-up: the images that were compared
            fig = figure_page((figures or {}).get("overview") or overview_figure(images))
            pdf.savefig(fig)
            plt.close(fig)
        for d in order:
            fig = figure_page((figures or {}).get(d["lesion_id"]) or lesion_figure(d["lesion_id"], labels, images))
            pdf.savefig(fig)
            plt.close(fig)
            fig = plt.figure(figsize=(8.27, 5))
            txt = [f"Lesion {d['lesion_id']}: {d['pml_suspicion']} (score {d['pml_score']:.2f})", ""]
            txt += [f"{r['rule']:<24}{r['contribution']:+.2f}  {r['detail']}" for r in d.get("reasons", [])]
            if d.get("missing_features"):
                txt += ["", "Missing features (not scored):"] + [f"  {m}" for m in d["missing_features"].split("; ")]
            fig.text(0.03, 0.95, "\n".join(txt), va="top", family="monospace", fontsize=8)
            pdf.savefig(fig)
            plt.close(fig)
