"""Refuse series whose slices cannot form a correct volume, before dcm2niix ever sees them.

dcm2niix warns (and may still write a volume) when slices are missing, duplicated or unevenly
spaced; a silently wrong volume is worse than none, so every series is checked here: one image size,
one orientation, every slice position along the slice normal present the same number of times
(once per volume, e.g. per DWI direction), and evenly spaced positions.
"""

from __future__ import annotations

import numpy as np

from pmlseg.ingest.index import FileInfo


def dedupe(files: list[FileInfo]) -> tuple[list[FileInfo], int]:
    """Drop exact copies of one image (same SOPInstanceUID), which PACS exports often contain."""
    seen, out = set(), []
    for f in files:
        key = f.sop_uid or f.path
        if key in seen:
            continue
        seen.add(key)
        out.append(f)
    return out, len(files) - len(out)


def check(files: list[FileInfo]) -> str | None:
    """None if the series makes a correct volume, else a one-line reason."""
    sizes = {(f.rows, f.cols) for f in files}
    if len(sizes) > 1:
        return f"mixed image sizes in one series ({', '.join(f'{r}x{c}' for r, c in sorted(sizes, key=str))})"
    iops, pos, bvals = [], [], []
    for f in files:
        frame_bvals = f.bvals if len(f.bvals) == len(f.positions) else [None] * len(f.positions)
        for iop, p, b in zip(f.iops, f.positions, frame_bvals):
            if iop is None or p is None:
                return "a slice lacks ImageOrientationPatient/ImagePositionPatient"
            iops.append(iop)
            pos.append(p)
            bvals.append(-1.0 if b is None else round(float(b), 1))
    iops = np.asarray(iops, float)
    pos = np.asarray(pos, float)
    if np.abs(iops - iops[0]).max() > 1e-3:
        return "slice orientation changes within the series"
    row, col = iops[0, :3], iops[0, 3:]
    normal = np.cross(row, col)
    if np.linalg.norm(normal) < 0.5:
        return "invalid ImageOrientationPatient"
    normal /= np.linalg.norm(normal)
    if len(pos) == 1:
        return None
    depth = pos @ normal
    # Slices must stack along the normal: no in-plane shift between them (gantry tilt, shifted slabs).
    inplane = (pos - pos[0]) - np.outer(depth - depth[0], normal)
    spacing_xy = min(files[0].pixel_spacing or (1.0, 1.0))
    if np.abs(inplane).max() > max(0.1 * spacing_xy, 0.05):
        return "slices are not stacked along the slice normal (tilted or shifted)"
    order = np.sort(depth)
    gaps = np.diff(order)
    # Cluster positions: repeats (one per volume) are at the same depth within 0.01 mm.
    starts = np.concatenate([[True], gaps > 0.01])
    uniq = order[starts]
    counts = np.diff(np.concatenate([np.flatnonzero(starts), [len(order)]]))
    if counts.min() != counts.max():
        odd = int(np.argmin(counts) if (counts == counts.max()).sum() > (counts == counts.min()).sum()
                  else np.argmax(counts)) + 1
        return (f"duplicate or missing slices: slice positions occur {counts.min()} to {counts.max()} times "
                f"(first odd one is slice {odd} of {len(uniq)})")
    # Per volume: every slice position must carry the same b-values (one slice of each volume).
    order_idx = np.argsort(depth, kind="stable")
    slice_of = np.cumsum(starts) - 1
    per_slice: dict[int, list] = {}
    for k, i in enumerate(order_idx):
        per_slice.setdefault(int(slice_of[k]), []).append(bvals[i])
    signatures = {tuple(sorted(v)) for v in per_slice.values()}
    if len(signatures) > 1:
        odd = min(k for k, v in per_slice.items() if tuple(sorted(v)) != tuple(sorted(per_slice[0]))) + 1
        return (f"missing or duplicate slice in some volume: slice {odd} of {len(uniq)} has different "
                "b-values than slice 1")
    if len(uniq) < 2:
        return None
    steps = np.diff(uniq)
    step = float(np.median(steps))
    tol = 0.01 * step + 0.005
    bad = np.flatnonzero(np.abs(steps - step) > tol)
    if bad.size:
        i = int(bad[0])
        ratio = steps[i] / step
        if abs(ratio - round(ratio)) < 0.05 and round(ratio) >= 2:
            return f"missing slice: gap of {ratio:.0f} slice spacings after slice {i + 1} of {len(uniq)}"
        return (f"inconsistent slice spacing: {steps.min():.3f} to {steps.max():.3f} mm "
                f"(first odd gap after slice {i + 1} of {len(uniq)})")
    return None


def n_volumes(files: list[FileInfo]) -> int:
    """How many times each slice position occurs (volumes), assuming ``check`` passed."""
    depth = []
    for f in files:
        for iop, p in zip(f.iops, f.positions):
            n = np.cross(iop[:3], iop[3:])
            depth.append(float(np.dot(p, n)))
    depth = np.sort(np.asarray(depth))
    uniq = 1 + int((np.diff(depth) > 0.01).sum()) if len(depth) else 0
    return len(depth) // max(uniq, 1)
