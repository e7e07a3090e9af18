"""Per-lesion crops (axial/coronal/sagittal, rebaseline vs follow-up, T1/DWI when present) with the
lesion outline, as PNG bytes for the HTML (base64) and pages for the PDF."""

from __future__ import annotations

import io

import numpy as np
import SimpleITK as sitk


def _window(a: np.ndarray) -> tuple:
    """Display window of ``a``: its 1st and 99.5th percentiles."""
    return np.percentile(a, [1, 99.5]) if a.size else (0, 1)


def _norm(a: np.ndarray, window: tuple | None = None) -> np.ndarray:
    lo, hi = _window(a) if window is None else window
    return np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)


def lesion_figure(lesion_id: int, labels: sitk.Image, images: dict[str, sitk.Image], half_mm: float = 30.0):
    """A matplotlib Figure: one row per image (FLAIR bl, FLAIR fu, T1 fu, DWI fu), three views."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lab = sitk.GetArrayViewFromImage(labels)  # views, cropped before any copy (whole volumes: ~10^7 voxels each)
    m = lab == lesion_id
    sp = np.array(labels.GetSpacing())[::-1]
    c = np.round(np.argwhere(m).mean(axis=0)).astype(int) if m.any() else np.array(lab.shape) // 2
    h = np.ceil(half_mm / sp).astype(int)
    lo = np.maximum(c - h, 0)
    hi = np.minimum(c + h + 1, lab.shape)
    rows = [(k, t) for k, t in (("flair_bl", "FLAIR rebaseline"), ("flair_fu", "FLAIR follow-up"),
                                ("t1_fu", "T1 follow-up"), ("dwi_fu", "DWI follow-up")) if images.get(k) is not None]
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), squeeze=False)
    for r, (key, title) in enumerate(rows):
        box = tuple(slice(l, u) for l, u in zip(lo, hi))
        a, mm = _norm(sitk.GetArrayViewFromImage(images[key])[box].astype(np.float32)), m[box]
        cc = c - lo
        views = (("axial", a[cc[0]], mm[cc[0]], sp[1] / sp[2]),
                 ("coronal", a[:, cc[1], :][::-1], mm[:, cc[1], :][::-1], sp[0] / sp[2]),
                 ("sagittal", a[:, :, cc[2]][::-1], mm[:, :, cc[2]][::-1], sp[0] / sp[1]))
        for col, (vname, img, msk, aspect) in enumerate(views):
            ax = axes[r][col]
            ax.imshow(img, cmap="gray", aspect=aspect, interpolation="nearest")
            if msk.any():
                ax.contour(msk.astype(float), [0.5], colors="#ff3030", linewidths=0.8)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{title} – {vname}", fontsize=7)
    height = 2.5 * len(rows)
    fig.suptitle(f"Lesion {lesion_id}", fontsize=9, y=1 - 0.12 / height)
    # fixed margins (inches): tight_layout drew every figure once more to measure its titles (~0.15 s per lesion)
    fig.subplots_adjust(left=0.03, right=0.97, bottom=0.1 / height, top=1 - 0.5 / height, wspace=0.08, hspace=0.14)
    return fig


def overview_figure(images: dict[str, sitk.Image], n_slices: int = 4):
    """Axial slices through the brain, rebaseline FLAIR above follow-up FLAIR (on the rebaseline grid): the
    images of a report with no lesion crop to show, so the reader sees what was compared."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bl = sitk.GetArrayFromImage(images["flair_bl"]).astype(np.float32)
    head = bl > np.percentile(bl[bl > 0], 50) if (bl > 0).any() else bl >= bl.min()
    head = np.repeat(np.arange(head.shape[0]), head.sum(axis=(1, 2)))  # the slice index of every head voxel
    zs = np.unique(np.quantile(head, np.linspace(0.3, 0.8, n_slices)).round().astype(int))
    sp = images["flair_bl"].GetSpacing()
    rows = [(k, t) for k, t in (("flair_bl", "FLAIR rebaseline"), ("flair_fu", "FLAIR follow-up"))
            if images.get(k) is not None]
    fig, axes = plt.subplots(len(rows), len(zs), figsize=(2.0 * len(zs), 2.2 * len(rows)), squeeze=False)
    for r, (key, title) in enumerate(rows):
        a = sitk.GetArrayFromImage(images[key]).astype(np.float32)
        window = _window(a)  # of the whole volume; only the slices shown are scaled
        for c, z in enumerate(zs):
            ax = axes[r][c]
            ax.imshow(_norm(a[z], window), cmap="gray", aspect=sp[1] / sp[0], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{title} – slice {z + 1}", fontsize=6)
    fig.tight_layout()
    return fig


def figure_png(fig, close: bool = True) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    if close:
        plt.close(fig)
    return buf.getvalue()
