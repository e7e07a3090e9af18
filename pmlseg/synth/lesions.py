"""MS-like and PML-like lesions in template white matter, with a per-visit size history.

A lesion is a small parametric object (centre, axes, size per visit) rendered into soft fraction
maps only where needed (a box around it), so whole cohorts render in well under a second per visit.

- MS-like: ovoid, 3-15 mm; periventricular ones have their long axis perpendicular to the
  ventricle wall (Dawson fingers), juxtacortical ones touch the GM/WM boundary, the rest sit in
  deep white matter. Sharp-ish border.
- PML-like: a large irregular subcortical white-matter lesion (frontal or parieto-occipital) that
  reaches the cortex (it is cut at the GM/WM boundary: U-fibres involved, cortex spared), with an
  ill-defined border towards deep white matter, plus a few punctate satellite foci nearby.
  Its outer rim is the "active edge" (bright on DWI b1000).
All lesions are confined to white matter with the WM probability map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pmlseg.synth.anatomy import Tissues


@dataclass
class Lesion:
    """One lesion; ``scale[v]`` is its linear size at visit v (0 = not there yet)."""

    id: int
    kind: str                     # "ms" or "pml"
    location: str                 # periventricular / juxtacortical / deep / frontal / parieto-occipital / satellite
    center: np.ndarray            # template voxel coordinates (float)
    radii: np.ndarray             # semi-axes in mm at scale 1
    axes: np.ndarray              # 3x3, columns are the unit axes (template voxel space = RAS mm)
    scale: list[float]
    severity: float = 1.0         # 0..1, how far the intensity moves towards the lesion value
    t1_darkness: float = 1.0      # 0..1, extra factor on T1 only: chronic "black holes" 1, faint ones less
    seed: int = 0                 # for the irregular PML border
    blur_mm: float = 0.7          # border softness (PML: ill-defined)

    def status(self, visit: int) -> str:
        """'absent', 'new', 'enlarging' or 'stable' at ``visit`` vs the visit before."""
        now = self.scale[visit]
        if now <= 0:
            return "absent"
        if visit == 0:
            return "stable"  # baseline lesions: nothing to compare with
        before = self.scale[visit - 1]
        if before <= 0:
            return "new"
        if now > before * 1.05:
            return "enlarging"
        return "stable"


@dataclass
class LesionMaps:
    """Per-visit lesion fractions on the template grid (float32) and the label map (int16)."""

    ms: np.ndarray
    ms_t1: np.ndarray          # the MS fraction as T1 sees it (times each lesion's t1_darkness)
    pml: np.ndarray
    pml_edge: np.ndarray
    labels: np.ndarray
    bbox: tuple[slice, ...] | None = None    # box holding every lesion voxel (None: no lesion)
    fractions: dict[int, tuple[tuple[slice, ...], np.ndarray]] = field(default_factory=dict, repr=False)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _axes_along(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Orthonormal axes whose first column is ``direction``."""
    d = direction / (np.linalg.norm(direction) + 1e-9)
    other = rng.normal(size=3)
    other -= other.dot(d) * d
    other /= np.linalg.norm(other) + 1e-9
    return np.stack([d, other, np.cross(d, other)], axis=1)


def _pick(candidates: np.ndarray, rng: np.random.Generator, taken: list[tuple[np.ndarray, float]],
          radius: float) -> np.ndarray | None:
    """A candidate voxel far enough from lesions already placed (or None after a few tries)."""
    for _ in range(60):
        c = candidates[rng.integers(len(candidates))].astype(float)
        if all(np.linalg.norm(c - p) > radius + r + 2.0 for p, r in taken):
            return c
    return None


def _gradient_at(volume: np.ndarray, c: np.ndarray) -> np.ndarray:
    i, j, k = np.round(c).astype(int)
    g = np.array([volume[i + 1, j, k] - volume[i - 1, j, k], volume[i, j + 1, k] - volume[i, j - 1, k],
                  volume[i, j, k + 1] - volume[i, j, k - 1]], dtype=float)
    return g if np.linalg.norm(g) > 1e-6 else np.array([1.0, 0.0, 0.0])


def ms_candidates(tissues: Tissues) -> dict[str, np.ndarray]:
    """Voxel indices where each kind of MS lesion may be centred (deep, periventricular, juxtacortical)."""
    wm, dv, dc = tissues.wm, tissues.dist_ventricle, tissues.dist_cortex
    brainstem_cut = np.zeros_like(tissues.brain)
    z_mm = tissues.affine[2, 2] * np.arange(wm.shape[2]) + tissues.affine[2, 3]
    brainstem_cut[:, :, z_mm > -10] = True   # keep lesions supratentorial (cerebrum)
    sl = (slice(None, None, 2),) * 3  # a 2 mm lattice of candidates is plenty
    out = {
        "periventricular": (wm > 0.9) & (dv > 1) & (dv < 5) & brainstem_cut,
        "juxtacortical": (wm > 0.6) & (dc > 0.5) & (dc < 2.5) & brainstem_cut,
        "deep": (wm > 0.95) & (dv > 9) & (dc > 4) & brainstem_cut,
    }
    result = {}
    for k, m in out.items():
        grid = np.zeros_like(m)
        grid[sl] = True
        result[k] = np.argwhere(m & grid)
    return result


def make_ms_lesion(tissues: Tissues, rng: np.random.Generator, lesion_id: int, n_visits: int,
                   location: str | None = None, taken: list | None = None,
                   candidates: dict[str, np.ndarray] | None = None) -> Lesion | None:
    """One MS-like ovoid (3-15 mm) in WM, present at every visit at scale 1 (caller edits ``scale``)."""
    candidates = candidates or ms_candidates(tissues)
    taken = taken if taken is not None else []
    location = location or rng.choice(["periventricular", "juxtacortical", "deep"], p=[0.45, 0.25, 0.30])
    if location == "periventricular":
        radii = np.array([rng.uniform(3.0, 7.5), rng.uniform(1.5, 3.0), rng.uniform(1.5, 3.0)])
    elif location == "juxtacortical":
        radii = np.array([rng.uniform(1.5, 4.5), rng.uniform(1.5, 3.0), rng.uniform(1.5, 3.0)])
    else:
        radii = np.sort(rng.uniform(1.5, 5.5, size=3))[::-1]
    c = _pick(candidates[location], rng, taken, radii.max() * 1.6)
    if c is None:
        return None
    if location == "periventricular":
        axes = _axes_along(_gradient_at(tissues.dist_ventricle, c), rng)  # perpendicular to the wall
    elif location == "juxtacortical":
        axes = _axes_along(rng.normal(size=3), rng)
    else:
        axes = _random_rotation(rng)
    taken.append((c, radii.max() * 1.6))
    return Lesion(id=lesion_id, kind="ms", location=str(location), center=c, radii=radii, axes=axes,
                  scale=[1.0] * n_visits, severity=float(rng.uniform(0.75, 1.0)),
                  blur_mm=float(rng.uniform(0.5, 0.9)), t1_darkness=float(rng.uniform(0.45, 1.0)))


def _near_but_outside(lesion: Lesion, tissues: Tissues, cand: np.ndarray, visit: int,
                      lo_mm: float, hi_mm: float) -> np.ndarray:
    """Candidates between ``lo_mm`` and ``hi_mm`` from the lesion's rendered extent at ``visit``
    (its largest), so satellites sit near the lesion but are never swallowed by a lobe of it."""
    from scipy import ndimage

    box, frac = lesion_fraction(lesion, tissues, visit)
    margin = int(np.ceil(hi_mm)) + 1
    lo = np.maximum(np.array([s.start for s in box]) - margin, 0)
    hi = np.minimum(np.array([s.stop for s in box]) + margin, tissues.shape)
    region = np.zeros(tuple(hi - lo), bool)
    region[tuple(slice(s.start - a, s.stop - a) for s, a in zip(box, lo))] = frac > 0.05
    dist = ndimage.distance_transform_edt(~region)
    inside = np.all((cand >= lo) & (cand < hi), axis=1)
    near = cand[inside]
    d = dist[tuple((near - lo).T)]
    return near[(d > lo_mm) & (d < hi_mm)]


def make_pml_lesions(tissues: Tissues, rng: np.random.Generator, first_id: int, n_visits: int,
                     appear: int, taken: list | None = None) -> list[Lesion]:
    """The PML-like lesion (appears at ``appear``, grows at the next visit) and 3-5 satellite foci."""
    taken = taken if taken is not None else []
    aff = tissues.affine
    y_mm = aff[1, 1] * np.arange(tissues.shape[1]) + aff[1, 3]
    z_mm = aff[2, 2] * np.arange(tissues.shape[2]) + aff[2, 3]
    region = str(rng.choice(["frontal", "parieto-occipital"]))
    in_region = np.zeros(tissues.shape, bool)
    if region == "frontal":
        in_region[:, (y_mm > 10) & (y_mm < 45), :] = True
        in_region[:, :, z_mm < 0] = False
    else:
        in_region[:, (y_mm < -45) & (y_mm > -85), :] = True
        in_region[:, :, z_mm < 5] = False
    cand = np.argwhere(in_region & (tissues.wm > 0.8) & (tissues.dist_cortex > 2) & (tissues.dist_cortex < 5)
                       & (tissues.dist_ventricle > 12))
    radius = rng.uniform(6.5, 8.5)
    scale = [0.0] * n_visits
    for v in range(appear, n_visits):
        scale[v] = 1.0 if v == appear else float(rng.uniform(1.45, 1.7)) * scale[v - 1]
    reach = radius * max(scale) * 1.6  # largest extent, lobulation included
    c = _pick(cand, rng, taken, reach)
    if c is None:
        c = cand[rng.integers(len(cand))].astype(float)
    # a lobulated ellipsoid centred in subcortical WM; WM confinement cuts it at the cortex
    main = Lesion(id=first_id, kind="pml", location=region, center=c,
                  radii=np.array([radius * 1.25, radius, radius * 0.85]), axes=_random_rotation(rng),
                  scale=scale, severity=1.0, seed=int(rng.integers(2**31)), blur_mm=2.0)
    taken.append((c, reach))
    out = [main]
    sat_cand = _near_but_outside(main, tissues, cand, n_visits - 1, lo_mm=3.0, hi_mm=12.0)
    target = int(rng.integers(3, 6))
    for _ in range(25):
        if len(out) - 1 >= target or len(sat_cand) == 0:
            break
        i = len(out) - 1
        sc = sat_cand[rng.integers(len(sat_cand))].astype(float)
        if any(np.linalg.norm(sc - o.center) < 5 for o in out[1:]) or any(
                np.linalg.norm(sc - p) < r + 4 for p, r in taken[:-1]):
            continue
        s_scale = [0.0] * n_visits
        # the first satellite comes with the lesion, the others with its growth
        start = appear if (i == 0 or n_visits - 1 == appear) else min(appear + 1, n_visits - 1)
        for v in range(start, n_visits):
            s_scale[v] = 1.0
        sat = Lesion(id=first_id + len(out), kind="pml", location="satellite", center=sc,
                     radii=np.full(3, rng.uniform(1.3, 1.9)), axes=np.eye(3), scale=s_scale,
                     severity=0.9, blur_mm=0.6)
        if visible(sat, tissues, min_voxels=4):
            out.append(sat)
    return out


def _smooth_noise(shape: tuple[int, ...], seed: int, sigma: float) -> np.ndarray:
    """A smooth random field with unit standard deviation (deterministic for ``seed``)."""
    from scipy import ndimage

    n = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    n = ndimage.gaussian_filter(n, sigma)
    return n / (n.std() + 1e-6)


def lesion_fraction(lesion: Lesion, tissues: Tissues, visit: int) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Soft fraction (0..1) of ``lesion`` at ``visit`` in a box of the template grid, or None if absent."""
    s = lesion.scale[visit]
    if s <= 0:
        return None
    radii = lesion.radii * s
    irregular = lesion.kind == "pml" and lesion.location != "satellite"
    # irregular lesions: box fixed to the largest size so the noise field is the same at every visit
    half = int(np.ceil((lesion.radii * max(lesion.scale) if irregular else radii).max() * 1.6 + 3 * lesion.blur_mm + 2))
    c = np.round(lesion.center).astype(int)
    lo = np.maximum(c - half, 0)
    hi = np.minimum(c + half + 1, tissues.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    grids = np.meshgrid(*[np.arange(a, b, dtype=np.float32) - lesion.center[i] for i, (a, b) in enumerate(zip(lo, hi))],
                        indexing="ij")
    pts = np.stack(grids, axis=-1) @ lesion.axes.astype(np.float32)  # coordinates along the lesion axes
    r = np.sqrt(((pts / radii.astype(np.float32)) ** 2).sum(-1))
    dist = (r - 1.0) * float(radii.min())  # ~ mm outside the surface
    if irregular:
        # irregular, lobulated outline from a smooth random field that is the same at every visit
        dist = dist + 0.35 * float(lesion.radii.mean()) * s * _smooth_noise(dist.shape, lesion.seed, 3.0)
    frac = np.clip(0.5 - dist / (2.0 * lesion.blur_mm), 0.0, 1.0)
    wm = tissues.wm[box]
    frac *= np.clip((wm - 0.35) / 0.3, 0.0, 1.0)  # confine to WM: above half only where wm > 0.5
    return box, frac.astype(np.float32)


def render_lesions(lesions: list[Lesion], tissues: Tissues, visit: int) -> LesionMaps:
    """All lesions of one visit as fraction maps (ms, pml, pml active edge) and a label map (ids)."""
    shape = tissues.shape
    ms = np.zeros(shape, np.float32)
    ms_t1 = np.zeros(shape, np.float32)
    pml = np.zeros(shape, np.float32)
    edge = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.int16)
    best = np.zeros(shape, np.float32)
    fractions = {}
    for les in lesions:
        got = lesion_fraction(les, tissues, visit)
        if got is None:
            continue
        box, frac = got
        fractions[les.id] = (box, frac)
        target = pml if les.kind == "pml" else ms
        np.maximum(target[box], frac * les.severity, out=target[box])
        if les.kind == "ms":
            np.maximum(ms_t1[box], frac * les.severity * les.t1_darkness, out=ms_t1[box])
        win = (frac > 0.5) & (frac > best[box])
        labels[box][win] = les.id
        np.maximum(best[box], frac, out=best[box])
        if les.kind == "pml" and les.location != "satellite":
            # active edge: the outer ~3 mm rim of the lesion (newest, restricted diffusion)
            from scipy import ndimage

            core = ndimage.grey_erosion(frac, size=(5, 5, 5))
            np.maximum(edge[box], np.clip(frac - core, 0, 1), out=edge[box])
        elif les.kind == "pml" and les.status(visit) == "new":
            np.maximum(edge[box], frac, out=edge[box])
    total = ms + pml
    over = total > 1
    if over.any():
        ms[over] /= total[over]
        ms_t1[over] /= total[over]
        pml[over] /= total[over]
    bbox = None
    if fractions:
        lo = np.min([[s.start for s in box] for box, _ in fractions.values()], axis=0)
        hi = np.max([[s.stop for s in box] for box, _ in fractions.values()], axis=0)
        bbox = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    return LesionMaps(ms=ms, ms_t1=ms_t1, pml=pml, pml_edge=edge, labels=labels, bbox=bbox, fractions=fractions)


def visible(lesion: Lesion, tissues: Tissues, min_voxels: int = 8) -> bool:
    """True if the lesion has at least ``min_voxels`` voxels above half fraction at its first visit."""
    first = next(v for v, sc in enumerate(lesion.scale) if sc > 0)
    got = lesion_fraction(lesion, tissues, first)
    return got is not None and int((got[1] > 0.5).sum()) >= min_voxels


def plan_patient(tissues: Tissues, rng: np.random.Generator, n_visits: int, pml: bool,
                 n_baseline: tuple[int, int] = (8, 16)) -> list[Lesion]:
    """Lesion histories of one patient: baseline MS lesions, 1-3 new and 0-2 enlarging per follow-up,
    the rest unchanged; with ``pml`` the PML-like lesion appears at visit max(0, K-2) and grows after."""
    cand = ms_candidates(tissues)
    taken: list = []
    lesions: list[Lesion] = []
    next_id = 1

    def add_ms(start: int) -> Lesion | None:
        nonlocal next_id
        for _ in range(5):  # redraw lesions that white-matter confinement would leave invisible
            les = make_ms_lesion(tissues, rng, next_id, n_visits, taken=taken, candidates=cand)
            if les is None:
                return None
            les.scale = [0.0] * start + [1.0] * (n_visits - start)
            if visible(les, tissues, min_voxels=8):
                lesions.append(les)
                next_id += 1
                return les
            taken.pop()
        return None

    for _ in range(int(rng.integers(n_baseline[0], n_baseline[1] + 1))):
        add_ms(0)
    for v in range(1, n_visits):
        for _ in range(int(rng.integers(1, 4))):
            add_ms(v)
        grown = [les for les in lesions if les.kind == "ms" and les.scale[v - 1] > 0 and les.radii.max() * max(les.scale) < 4.7]
        for les in rng.permutation(np.array(grown, dtype=object))[: int(rng.integers(1, 3))]:
            factor = float(rng.uniform(1.35, 1.6))
            les.scale = les.scale[:v] + [s * factor for s in les.scale[v:]]
    if pml:
        lesions.extend(make_pml_lesions(tissues, rng, next_id, n_visits, appear=max(0, n_visits - 2), taken=taken))
    return lesions
