"""From a template-space contrast to what a scanner stores: head pose, slice grid, blur, bias, noise.

Each visit has its own head pose (a small rigid motion plus ~1-2 % scaling, as gradient
calibration differs between scanners) and each series its own grid (3D 1 mm or 2D thick-slice,
sagittal or axial, possibly angulated). Thick slices get a box slice profile by averaging
sub-slices. A smooth multiplicative bias field is fixed to the scanner (not to the head), and the
magnitude image gets Rician noise. Images are SimpleITK images in LPS physical space, so the
DICOM writer and the ground-truth writer share one geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pmlseg.synth.anatomy import Tissues, to_sitk

#: approximate brain centre of the ICBM152 template (LPS mm): grids are centred near it
HEAD_CENTER_LPS = np.array([0.0, 18.0, 14.0])

def _orientation(row, col) -> np.ndarray:
    row, col = np.asarray(row, float), np.asarray(col, float)
    return np.column_stack([row, col, np.cross(row, col)])


#: LPS direction matrices, columns = row direction (along a row), column direction (down), slice normal;
#: as most scanners write them (sagittal: rows anterior->posterior, columns superior->inferior)
ORIENTATIONS = {
    "axial": _orientation([1, 0, 0], [0, 1, 0]),
    "sagittal": _orientation([0, 1, 0], [0, 0, -1]),
    "coronal": _orientation([1, 0, 0], [0, 0, -1]),
}


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix from angles in degrees about x, y, z (applied x, then y, then z)."""
    ax, ay, az = np.deg2rad([rx, ry, rz])
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


@dataclass
class Grid:
    """A series' voxel grid in scanner LPS space (sizes/spacings in SimpleITK x, y, z = column, row, slice)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    direction: np.ndarray        # 3x3, columns = row direction, column direction, slice normal
    origin: np.ndarray           # LPS centre of the first voxel of the first slice

    @property
    def thickness(self) -> float:
        return float(self.spacing[2])

    def geometry(self, n_sub: int = 1) -> tuple[tuple, tuple, tuple, tuple]:
        """(size, origin, spacing, direction) for SimpleITK; ``n_sub`` sub-slices per slice (slice profile)."""
        nx, ny, nz = self.size
        sx, sy, sz = self.spacing
        shift = -(n_sub - 1) / 2.0 * (sz / n_sub)
        return ((int(nx), int(ny), int(nz * n_sub)), tuple(float(v) for v in self.origin + shift * self.direction[:, 2]),
                (float(sx), float(sy), float(sz / n_sub)), tuple(float(v) for v in self.direction.ravel()))

    def reference(self, n_sub: int = 1):
        """An empty SimpleITK image on this grid; ``n_sub`` sub-slices per slice for the slice profile."""
        import SimpleITK as sitk

        size, origin, spacing, direction = self.geometry(n_sub)
        ref = sitk.Image(*size, sitk.sitkUInt8)
        ref.SetSpacing(spacing)
        ref.SetDirection(direction)
        ref.SetOrigin(origin)
        return ref

    def slice_positions(self) -> np.ndarray:
        """ImagePositionPatient of every slice (LPS mm), shape (nz, 3)."""
        k = np.arange(self.size[2])[:, None]
        return self.origin[None, :] + k * self.spacing[2] * self.direction[:, 2][None, :]

    def physical_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LPS coordinates of every voxel as three float32 arrays shaped like the image array (z, y, x)."""
        nx, ny, nz = self.size
        d = self.direction * np.asarray(self.spacing)[None, :]
        i = np.arange(nx, dtype=np.float32)[None, None, :]
        j = np.arange(ny, dtype=np.float32)[None, :, None]
        k = np.arange(nz, dtype=np.float32)[:, None, None]
        return tuple((self.origin[m] + d[m, 0] * i + d[m, 1] * j + d[m, 2] * k).astype(np.float32)
                     for m in range(3))


def make_grid(orientation: str, size: tuple[int, int, int], spacing: tuple[float, float, float],
              center: np.ndarray = HEAD_CENTER_LPS, tilt_deg: tuple[float, float, float] = (0, 0, 0)) -> Grid:
    """A grid of ``size`` voxels centred on ``center`` (LPS), optionally angulated by ``tilt_deg``."""
    direction = rotation(*tilt_deg) @ ORIENTATIONS[orientation]
    extent = (np.asarray(size) - 1) * np.asarray(spacing)
    origin = np.asarray(center, float) - direction @ (extent / 2.0)
    return Grid(size=tuple(int(s) for s in size), spacing=tuple(float(s) for s in spacing),
                direction=direction, origin=origin)


def random_motion(rng: np.random.Generator, max_deg: float = 4.0, max_mm: float = 4.0,
                  max_scale: float = 0.02):
    """Head pose of one visit: a SimpleITK AffineTransform mapping scanner points to template points
    (few degrees, few mm, per-axis scaling within ±``max_scale``), centred on the head."""
    import SimpleITK as sitk

    m = rotation(*rng.uniform(-max_deg, max_deg, 3)) @ np.diag(1.0 + rng.uniform(-max_scale, max_scale, 3))
    tfm = sitk.AffineTransform(3)
    tfm.SetCenter(tuple(HEAD_CENTER_LPS))
    tfm.SetMatrix(tuple(m.ravel()))
    tfm.SetTranslation(tuple(rng.uniform(-max_mm, max_mm, 3)))
    return tfm


def bias_field(grid: Grid, rng: np.random.Generator, strength: float = 0.12) -> np.ndarray:
    """Smooth multiplicative field (array z, y, x; mean ~1): exp of a random quadratic in scanner space.

    The quadratic in physical coordinates is a quadratic in voxel indices (i, j, k), so it is
    summed from three 2D planes instead of evaluated voxel by voxel.
    """
    g = rng.normal(0.0, strength, 3)
    q = rng.normal(0.0, strength * 0.6, 6)
    quad = np.array([[q[0], q[3] / 2, q[4] / 2], [q[3] / 2, q[1], q[5] / 2], [q[4] / 2, q[5] / 2, q[2]]])
    # u = (x - centre) / 100 mm = o + A @ (i, j, k)
    a_mat = grid.direction * np.asarray(grid.spacing)[None, :] / 100.0
    o = (grid.origin - HEAD_CENTER_LPS) / 100.0
    c0 = g @ o + o @ quad @ o
    lin = a_mat.T @ g + 2 * a_mat.T @ quad @ o
    m = a_mat.T @ quad @ a_mat
    nx, ny, nz = grid.size
    i = np.arange(nx, dtype=np.float64)
    j = np.arange(ny, dtype=np.float64)
    k = np.arange(nz, dtype=np.float64)
    f_kj = (c0 + lin[1] * j[None, :] + m[1, 1] * j[None, :] ** 2 + lin[2] * k[:, None] + m[2, 2] * k[:, None] ** 2
            + 2 * m[1, 2] * k[:, None] * j[None, :])
    g_ki = lin[0] * i[None, :] + m[0, 0] * i[None, :] ** 2 + 2 * m[0, 2] * k[:, None] * i[None, :]
    h_ji = 2 * m[0, 1] * j[:, None] * i[None, :]
    log_b = f_kj.astype(np.float32)[:, :, None] + g_ki.astype(np.float32)[:, None, :]
    log_b += h_ji.astype(np.float32)[None, :, :]
    return np.exp(log_b, out=log_b)


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise (Rician), float32."""
    n1 = rng.standard_normal(signal.shape, dtype=np.float32)
    n1 *= sigma
    n1 += signal
    n2 = rng.standard_normal(signal.shape, dtype=np.float32)
    n2 *= sigma
    return np.sqrt(n1 * n1 + n2 * n2)


def resample(volume, tissues_affine: np.ndarray, grid: Grid, motion, labels: bool = False):
    """Template-space ``volume`` ([x, y, z] array or SimpleITK image) onto ``grid`` through ``motion``.

    Intensities: linear interpolation and a box slice profile (sub-slices ~1 mm apart averaged
    over the slice thickness). Labels: nearest neighbour at the slice centre.
    Returns a float32 (or int16 for labels) SimpleITK image on the grid.
    """
    import SimpleITK as sitk

    img = volume if isinstance(volume, sitk.Image) else to_sitk(volume, tissues_affine)

    def onto(n_sub, interpolator, pixel_type):
        size, origin, spacing, direction = grid.geometry(n_sub)
        return sitk.Resample(img, size, motion, interpolator, origin, spacing, direction, 0.0, pixel_type)

    if labels:
        return onto(1, sitk.sitkNearestNeighbor, sitk.sitkInt16)
    n_sub = max(1, int(round(grid.thickness / 1.0))) if grid.thickness > 1.5 else 1
    out = onto(n_sub, sitk.sitkLinear, sitk.sitkFloat32)
    if n_sub == 1:
        return out
    arr = sitk.GetArrayViewFromImage(out)
    nz = grid.size[2]
    avg = arr.reshape(nz, n_sub, arr.shape[1], arr.shape[2]).mean(axis=1, dtype=np.float32)
    res = sitk.GetImageFromArray(avg)
    _, origin, spacing, direction = grid.geometry(1)
    res.SetOrigin(origin)
    res.SetSpacing(spacing)
    res.SetDirection(direction)
    return res


def acquire(volume, tissues: Tissues, grid: Grid, motion, bias: np.ndarray | None,
            noise_sigma: float, rng: np.random.Generator):
    """One series: resample with slice profile, multiply by ``bias``, add Rician noise (SimpleITK image)."""
    import SimpleITK as sitk

    img = resample(volume, tissues.affine, grid, motion)
    arr = sitk.GetArrayFromImage(img)
    if bias is not None:
        arr *= bias
    arr = rician(arr, noise_sigma, rng)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out
