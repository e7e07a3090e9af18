"""Per-lesion crops (axial/coronal/sagittal, rebaseline vs follow-up, T1/DWI when present) with the
lesion outline, and the overview of a stable follow-up: one image per figure, for the HTML (PNG) and
the PDF page.

The panels are laid out with numpy on one canvas (nearest-neighbour scaling to their millimetre size, a
red ring around the lesion) instead of a matplotlib axes per panel: drawing and encoding 12 axes per
lesion was a third of a detection job's report time (issue 17). Titles are drawn onto the PNG and set as
real text on the PDF page, so the PDF stays searchable.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

_GAP = 8            # px between panels
_TITLE = 16         # px of title band above each panel
_HEAD = 26          # px of figure title band
_FONT = 10          # px, panel titles
_HEAD_FONT = 13     # px, figure title
_RED = np.array([255, 48, 48], np.uint8)
PAGE_DPI = 90       # the PDF page: one canvas pixel per 1/90 inch (the old figures' PNG resolution)


@dataclass
class Mosaic:
    """An RGB canvas of panels and the titles to set on it: (x, y of the text's top-left, text, font px)."""

    rgb: np.ndarray
    titles: list[tuple[int, int, str, int]]


def _window(a: np.ndarray) -> tuple:
    """Display window of ``a``: its 1st and 99.5th percentiles."""
    return np.percentile(a, [1, 99.5]) if a.size else (0, 1)


def _norm(a: np.ndarray, window: tuple | None = None) -> np.ndarray:
    lo, hi = _window(a) if window is None else window
    return np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)


def _scaled(a: np.ndarray, spacing: tuple[float, float], px_per_mm: float) -> np.ndarray:
    """``a`` (rows, cols) with pixel spacing ``spacing`` mm, resized by nearest neighbour to ``px_per_mm``."""
    h = max(1, int(round(a.shape[0] * spacing[0] * px_per_mm)))
    w = max(1, int(round(a.shape[1] * spacing[1] * px_per_mm)))
    rows = np.minimum((np.arange(h) + 0.5) * a.shape[0] / h, a.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(w) + 0.5) * a.shape[1] / w, a.shape[1] - 1).astype(int)
    return a[rows][:, cols]


def _panel(img: np.ndarray, mask: np.ndarray | None, spacing, px_per_mm: float) -> np.ndarray:
    """Gray image in [0, 1] as RGB uint8, with a 2 px red ring just outside ``mask``."""
    g = (_scaled(img, spacing, px_per_mm) * 255 + 0.5).astype(np.uint8)
    rgb = np.repeat(g[..., None], 3, axis=2)
    if mask is not None and mask.any():
        m = _scaled(mask, spacing, px_per_mm)
        rgb[ndi.binary_dilation(m, iterations=2) & ~m] = _RED
    return rgb


def _mosaic(title: str, rows: list[list[tuple[str, np.ndarray]]]) -> Mosaic:
    """Rows of (title, RGB panel) on a white canvas under a figure title."""
    heights = [max(p.shape[0] for _, p in row) for row in rows]
    width = max(sum(p.shape[1] for _, p in row) + _GAP * (len(row) + 1) for row in rows)
    canvas = np.full((_HEAD + sum(h + _TITLE + _GAP for h in heights), width, 3), 255, np.uint8)
    titles = [(_GAP, 5, title, _HEAD_FONT)]
    y = _HEAD
    for row, h in zip(rows, heights):
        x = _GAP
        for name, p in row:
            titles.append((x, y + 2, name, _FONT))
            canvas[y + _TITLE: y + _TITLE + p.shape[0], x: x + p.shape[1]] = p
            x += p.shape[1] + _GAP
        y += h + _TITLE + _GAP
    return Mosaic(canvas, titles)


def lesion_figure(lesion_id: int, labels: sitk.Image, images: dict[str, sitk.Image], half_mm: float = 30.0,
                  px_per_mm: float = 3.4) -> Mosaic:
    """One row per image (FLAIR bl, FLAIR fu, T1 fu, DWI fu), three views through the lesion's centre."""
    lab = sitk.GetArrayViewFromImage(labels)  # views, cropped before any copy (whole volumes: ~10^7 voxels each)
    sp = np.array(labels.GetSpacing())[::-1]
    h = np.ceil(half_mm / sp).astype(int)
    m = lab == lesion_id
    c = np.round(np.argwhere(m).mean(axis=0)).astype(int) if m.any() else np.array(lab.shape) // 2
    lo = np.maximum(c - h, 0)
    hi = np.minimum(c + h + 1, lab.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    mm = m[box]
    cc = c - lo
    rows = []
    for key, title in (("flair_bl", "FLAIR rebaseline"), ("flair_fu", "FLAIR follow-up"),
                       ("t1_fu", "T1 follow-up"), ("dwi_fu", "DWI follow-up")):
        if images.get(key) is None:
            continue
        a = _norm(sitk.GetArrayViewFromImage(images[key])[box].astype(np.float32))
        views = (("axial", a[cc[0]], mm[cc[0]], (sp[1], sp[2])),
                 ("coronal", a[:, cc[1], :][::-1], mm[:, cc[1], :][::-1], (sp[0], sp[2])),
                 ("sagittal", a[:, :, cc[2]][::-1], mm[:, :, cc[2]][::-1], (sp[0], sp[1])))
        rows.append([(f"{title} – {v}", _panel(img, msk, s, px_per_mm)) for v, img, msk, s in views])
    return _mosaic(f"Lesion {lesion_id}", rows)


def overview_figure(images: dict[str, sitk.Image], n_slices: int = 4, panel_px: int = 180) -> Mosaic:
    """Axial slices through the brain, rebaseline FLAIR above follow-up FLAIR (on the rebaseline grid): the
    images of a report with no lesion crop to show, so the reader sees what was compared."""
    bl = sitk.GetArrayViewFromImage(images["flair_bl"])
    pos = bl[bl > 0]
    head = bl > np.percentile(pos, 50) if pos.size else bl >= bl.min()
    head = np.repeat(np.arange(head.shape[0]), head.sum(axis=(1, 2)))  # the slice index of every head voxel
    zs = np.unique(np.quantile(head, np.linspace(0.3, 0.8, n_slices)).round().astype(int))
    sp = images["flair_bl"].GetSpacing()
    px_per_mm = panel_px / max(bl.shape[1] * sp[1], bl.shape[2] * sp[0])
    rows = []
    for key, title in (("flair_bl", "FLAIR rebaseline"), ("flair_fu", "FLAIR follow-up")):
        if images.get(key) is None:
            continue
        a = sitk.GetArrayViewFromImage(images[key])
        window = _window(a)  # of the whole volume; only the slices shown are scaled
        rows.append([(f"{title} – slice {z + 1}",
                      _panel(_norm(a[z].astype(np.float32), window), None, (sp[1], sp[0]), px_per_mm)) for z in zs])
    return _mosaic("Rebaseline and follow-up FLAIR", rows)


@functools.cache
def _font(size: int):
    """DejaVu Sans (matplotlib's bundled font, as on the PDF pages; Pillow's default has no en dash)."""
    from pathlib import Path

    import matplotlib
    from PIL import ImageFont

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return ImageFont.truetype(str(ttf), size) if ttf.exists() else ImageFont.load_default(size=size)


def figure_png(fig: Mosaic) -> bytes:
    """The mosaic as PNG, titles drawn in."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(fig.rgb)
    draw = ImageDraw.Draw(im)
    for x, y, text, size in fig.titles:
        draw.text((x, y), text, fill=(0, 0, 0), font=_font(size))
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def figure_page(fig: Mosaic):
    """The mosaic as a matplotlib Figure for a PDF page: the canvas as one embedded image, titles as text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = fig.rgb.shape[:2]
    page = plt.figure(figsize=(w / PAGE_DPI, h / PAGE_DPI), dpi=PAGE_DPI)
    ax = page.add_axes((0, 0, 1, 1))
    ax.imshow(fig.rgb, interpolation="none", aspect="auto")
    ax.set_axis_off()
    for x, y, text, size in fig.titles:
        page.text(x / w, 1 - y / h, text, va="top", ha="left", fontsize=size * 72 / PAGE_DPI)
    return page
