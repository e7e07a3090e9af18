"""Model inference: the working grid shared with training, and a Predictor loaded once per process.

Why a shared ``working_grid``: the network was trained on synthetic pairs laid out on the rebaseline's
grid reoriented to LPS, 1 mm in plane, native slice spacing (pmlseg.detect.pairs.make_pair), with each
image divided by its median brain intensity and 0 outside the brain. Inference must see the same
geometry and intensity scale, so ``prepare_pair`` builds exactly that from two raw FLAIRs and the
affine registration (linear interpolation); the model and the classical baseline both use it. ``add_t2``
does the same for each visit's T2-weighted image (a model with ``t2_input``).
Build one ``Predictor`` per process and reuse it across cases (weights loaded and checked once).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pmlseg.errors import PmlsegError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "newlesion-2p5d"


# ----------------------------------------------------------------------------- working grid
def working_grid(baseline, inplane_mm: float = 1.0, slice_mm: float | None = None,
                 min_slice_mm: float | None = None):
    """Empty reference image (SimpleITK) for ``baseline``: LPS axes, ``inplane_mm`` in plane, slice spacing
    kept but never finer than ``min_slice_mm`` (thin-slice 3D rebaselines: see ``thick_slices``), or
    ``slice_mm`` (a model trained on that grid: both visits interpolated onto it, the floor not applied).

    The physical extent is kept (the first voxel centre moves by half the change of voxel size).
    """
    import SimpleITK as sitk

    img = sitk.DICOMOrient(baseline, "LPS")
    sp = np.array(img.GetSpacing(), float)
    z = max(sp[2], float(min_slice_mm or 0.0)) if slice_mm is None else float(slice_mm)
    new_sp = np.array([inplane_mm, inplane_mm, z])
    size = [max(2, int(round(n * s / ns))) for n, s, ns in zip(img.GetSize(), sp, new_sp)]
    direction = np.array(img.GetDirection()).reshape(3, 3)
    origin = np.array(img.GetOrigin()) + direction @ ((new_sp - sp) / 2.0)
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing(new_sp.tolist())
    ref.SetOrigin(origin.tolist())
    ref.SetDirection(img.GetDirection())
    return ref


def thick_slices(image, slice_mm: float):
    """``image`` (LPS axes) as a ``slice_mm``-thick axial acquisition would show it: a Gaussian slice
    profile of FWHM ``slice_mm`` along z (added to the image's own), nothing in plane.

    Why: the network was trained on 2D acquisitions, 2.5-5 mm slices with that profile
    (pmlseg.detect.pairs.acquire); a 1 mm 3D FLAIR laid on 1 mm slices shows it neighbours 1 mm apart,
    which it never saw, and costs three times the slices. Thin images are blurred to the working
    grid's slice spacing before they are sampled on it.
    """
    import SimpleITK as sitk

    from pmlseg.registration.grid import smooth

    img = sitk.DICOMOrient(image, "LPS")
    own = img.GetSpacing()[2]
    sigma = float(np.sqrt(max(slice_mm ** 2 - own ** 2, 0.0)) / 2.3548)
    return smooth(img, [0.0, 0.0, sigma])


def to_array(img) -> np.ndarray:
    """SimpleITK image -> numpy array indexed (x, y, z) like the training pairs."""
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(img).transpose(2, 1, 0)


def from_array(arr: np.ndarray, ref, pixel=None):
    """numpy (x, y, z) array -> SimpleITK image on ``ref``'s grid."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.CopyInformation(ref)
    return img if pixel is None else sitk.Cast(img, pixel)


def normalise(arr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Divide by the median brain intensity, 0 outside the brain (the rule of pairs.normalise)."""
    from pmlseg.detect.pairs import normalise as _norm

    return (_norm(arr, mask) * mask).astype(np.float32)


@dataclass
class PreparedPair:
    """Both visits on the working grid, normalised, plus what QC and the report need."""

    grid: object                # SimpleITK reference image (working grid)
    bl: np.ndarray              # (x, y, z) float32, median brain = 1, 0 outside brain
    fu: np.ndarray              # follow-up on the rebaseline's intensity scale (harmonise.py)
    mask: np.ndarray            # bool brain mask on the working grid
    baseline: object            # original rebaseline image (SimpleITK float32): the output grid
    transform: object           # rebaseline points -> follow-up points
    qc: object = None           # pmlseg.registration.qc.QCResult
    timings: dict = field(default_factory=dict)
    slice_profile_mm: float | None = None  # slice profile (FWHM) both FLAIRs got before resampling; None: none
    # T2-weighted images of both visits (add_t2), normalised and harmonised as bl and fu; None: no T2
    bl_t2: np.ndarray | None = None
    fu_t2: np.ndarray | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(self.grid.GetSpacing())


def read_image(path: str | Path, what: str):
    """Read a 3D image; a one-line error naming the file when it is missing or unreadable."""
    import SimpleITK as sitk

    p = Path(path)
    if not p.is_file():
        raise PmlsegError(f"{p}: {what} not found")
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise PmlsegError(f"{p}: cannot read {what} ({str(exc).strip().splitlines()[-1][:150]})") from None
    if img.GetDimension() != 3 or min(img.GetSize()) < 2 or img.GetNumberOfComponentsPerPixel() != 1:
        raise PmlsegError(f"{p}: {what} is not a 3D scalar image (size {img.GetSize()})")
    return sitk.Cast(img, sitk.sitkFloat32)


def prepare_pair(baseline, followup, transform=None, *, baseline_name: str = "baseline",
                 followup_name: str = "followup", inplane_mm: float = 1.0,
                 slice_mm: float | None = None, min_slice_mm: float | None = None) -> PreparedPair:
    """Register (unless ``transform`` is given), QC, and lay both visits on the working grid.

    ``transform`` maps rebaseline points to follow-up points (``register REB FU`` convention).
    When the working grid's slices are coarser than the rebaseline's (``min_slice_mm``), both visits are
    first given that slice profile (``thick_slices``; the follow-up along its own slice axis).
    """
    import SimpleITK as sitk

    from pmlseg.registration.affine import check_image, register_affine
    from pmlseg.registration.preprocess import brain_mask
    from pmlseg.registration.qc import registration_qc

    timings = {}
    t = time.perf_counter()
    baseline = check_image(baseline, baseline_name)
    followup = check_image(followup, followup_name)
    # with its template fit, which lesion location reuses (pmlseg.characterise.location.register_to_template)
    mask_bl = brain_mask(baseline, "FLAIR", name=baseline_name, return_transform=True)[0]
    timings["brain_mask_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    if transform is None:
        transform = register_affine(baseline, followup, fixed_mask=mask_bl, fixed_name=baseline_name,
                                    moving_name=followup_name).transform
        timings["registration_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    qc = registration_qc(baseline, followup, transform, fixed_mask=mask_bl, fixed_name=baseline_name,
                         moving_name=followup_name)
    timings["registration_qc_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    grid = working_grid(baseline, inplane_mm, slice_mm, min_slice_mm)
    thick = grid.GetSpacing()[2]
    coarser = slice_mm is None and thick > sitk.DICOMOrient(baseline, "LPS").GetSpacing()[2] + 1e-3
    bl, fu = _on_working_grid(baseline, followup, grid, sitk.Transform(), transform, thick if coarser else None)
    mask = to_array(sitk.Resample(mask_bl, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)) > 0
    # the follow-up may not cover the whole baseline brain: keep only voxels both visits see
    ones = sitk.Image(followup.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(followup)
    mask &= to_array(sitk.Resample(ones, grid, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)) > 0
    if mask.sum() < 1000:
        raise PmlsegError(f"{baseline_name}: brain mask on the working grid is (nearly) empty")
    bl, fu = _normalised_visits(bl, fu, mask, tuple(grid.GetSpacing()))
    timings["resample_s"] = round(time.perf_counter() - t, 2)
    return PreparedPair(grid, bl, fu, mask, baseline, transform, qc, timings, thick if coarser else None)


def _on_working_grid(bl_img, fu_img, grid, bl_tx, fu_tx, profile_mm: float | None):
    """Both visits' images as arrays on the working grid (linear), given ``profile_mm`` slices first when the
    grid is coarser than the rebaseline's (``thick_slices``); the transforms map grid points to image points."""
    import SimpleITK as sitk

    if profile_mm is not None:
        bl_img, fu_img = thick_slices(bl_img, profile_mm), thick_slices(fu_img, profile_mm)
    return tuple(to_array(sitk.Resample(img, grid, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
                 for img, tx in ((bl_img, bl_tx), (fu_img, fu_tx)))


def _normalised_visits(bl: np.ndarray, fu: np.ndarray, mask: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Each visit divided by its median brain intensity, the follow-up then harmonised to the rebaseline."""
    from pmlseg.detect.harmonise import harmonise_followup

    bl = normalise(bl, mask)
    return bl, harmonise_followup(bl, normalise(fu, mask), mask, spacing)


def add_t2(pair: PreparedPair, bl_t2, fu_t2, bl_t2_tx, fu_t2_tx) -> None:
    """Lay each visit's T2-weighted image on ``pair``'s working grid (``pair.bl_t2``, ``pair.fu_t2``) for a
    model with ``t2_input``: the same slice profile, normalisation and follow-up harmonisation as the FLAIRs,
    so the T2 channels are on the scale the network was trained on.

    ``bl_t2_tx``: rebaseline FLAIR points -> rebaseline T2 points; ``fu_t2_tx``: follow-up FLAIR points ->
    follow-up T2 points (same-session registrations, pmlseg.detect.same_session.intra_visit_transform). The
    follow-up T2 is reached through the pair's transform first, then ``fu_t2_tx``.
    """
    import SimpleITK as sitk

    t = time.perf_counter()
    fu_tx = sitk.CompositeTransform([fu_t2_tx, pair.transform])  # the last added is applied first
    bl, fu = _on_working_grid(bl_t2, fu_t2, pair.grid, bl_t2_tx, fu_tx, pair.slice_profile_mm)
    pair.bl_t2, pair.fu_t2 = _normalised_visits(bl, fu, pair.mask, pair.spacing)
    pair.timings["t2_resample_s"] = round(time.perf_counter() - t, 2)


# ----------------------------------------------------------------------------- model
def resolve_model(name_or_dir: str | Path | None) -> Path:
    """A model folder: an existing directory, or a name under $PMLSEG_MODELS_DIR or the shipped models/
    (the checkout's, or the copy inside an installed wheel: pmlseg.paths)."""
    from pmlseg.paths import find_model

    name = str(name_or_dir or DEFAULT_MODEL)
    p = Path(name)
    return p if (p.is_dir() or "/" in name) else find_model(name)


def pick_device(device: str = "auto") -> str:
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise PmlsegError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise PmlsegError("--device cuda: no CUDA GPU is available to torch on this machine")
    return device


def _verified(path: Path, expected, what: str) -> str:
    """``path``'s sha256, refused (naming the file) unless it is the one metadata.json records."""
    from pmlseg.detect.train import sha256

    actual = sha256(path)
    if actual != expected:
        raise PmlsegError(f"{path}: sha256 {actual[:12]}… does not match metadata.json ({str(expected)[:12]}…): "
                          f"{what} corrupt or replaced")
    return actual


class Predictor:
    """The detection network, loaded and checksum-verified once; ``probability`` per case.

    The metadata, checksums and inference config are read at once (errors name the file at construction);
    torch and the weights load in a background thread when the process owns more than one core
    (pmlseg.background), beside the first case's reading and resampling. Load errors (naming the file)
    surface at first use. On CPU the network is the model's TorchScript (model.ts, traced from model.pt)
    run by pmlseg.detect.sliding_window, bit-identical to MONAI's BasicUNet + SlidingWindowInferer without
    importing MONAI (~4-5 s of CPU per job); on CUDA, or for a model without model.ts, MONAI's. A model folder
    may add a second, lesion-level stage (lesion_classifier.json, sha256 checked here; ``scored``).
    """

    def __init__(self, model: str | Path | None = None, device: str = "auto"):
        from pmlseg.background import worker
        from pmlseg.detect.network import DEFAULT_CONFIG

        self.dir = resolve_model(model)
        meta_path = self.dir / "metadata.json"
        if not meta_path.is_file():
            raise PmlsegError(f"{meta_path}: model metadata missing (is {self.dir} a model folder?)")
        try:
            self.metadata = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise PmlsegError(f"{meta_path}: unreadable model metadata ({exc})") from None
        weights = self.dir / self.metadata.get("weights", "model.pt")
        if not weights.is_file():
            raise PmlsegError(f"{weights}: model weights missing")
        self.sha256 = _verified(weights, self.metadata.get("sha256"), "weights")
        self.torchscript = self._checked_torchscript()
        self.classifier = self._checked_classifier()
        self.meta = self.metadata
        self.name = self.metadata.get("name", self.dir.name)
        self.config = dict(DEFAULT_CONFIG)
        inf = self.dir / "inference.json"
        if inf.is_file():
            try:
                self.config.update(json.loads(inf.read_text()))
            except ValueError as exc:
                raise PmlsegError(f"{inf}: unreadable inference config ({exc})") from None
        # "cpu" needs no torch to decide; "auto"/"cuda" ask torch now, so a missing GPU is refused here
        self.device = "cpu" if device == "cpu" else pick_device(device)
        pool = worker("load-model")
        self._loaded = pool.submit(self._load, weights)
        pool.shutdown(wait=False)

    def _named_file(self, key: str, default: str, what: str) -> tuple[Path, str] | None:
        """(path, sha256) of the file metadata.json names under ``key``, its sha256 checked; None when unnamed."""
        entry = self.metadata.get(key)
        if not entry:
            return None
        path = self.dir / entry.get("file", default)
        if not path.is_file():
            raise PmlsegError(f"{path}: {what} named in metadata.json is missing")
        return path, _verified(path, entry.get("sha256"), "file")

    def _checked_torchscript(self) -> Path | None:
        """model.ts when the metadata names it: its sha256 checked, and traced from these very weights."""
        named = self._named_file("torchscript", "model.ts", "TorchScript network")
        if named is None:
            return None
        path = named[0]
        if self.metadata["torchscript"].get("traced_from_sha256") != self.sha256:
            raise PmlsegError(f"{path}: traced from other weights than {self.metadata.get('weights', 'model.pt')} "
                              "(re-export it with pmlseg.detect.network.save_torchscript)")
        return path

    def _checked_classifier(self):
        """The second stage (lesion_classifier.json) when the metadata names it, its sha256 checked."""
        named = self._named_file("lesion_classifier", "lesion_classifier.json", "lesion classifier")
        if named is None:
            return None
        from pmlseg.detect.lesion_classifier import LesionClassifier

        path, self.classifier_sha256 = named
        return LesionClassifier.load(path)

    def scored(self, prob: np.ndarray, pair):
        """The second stage's (candidate labels, scores) for ``pair``, or None for a one-stage model."""
        if self.classifier is None:
            return None
        from pmlseg.detect.candidates import scored_candidates

        return scored_candidates(prob, pair.bl, pair.fu, pair.mask, pair.spacing, self.config, self.classifier)

    def _load(self, weights: Path):
        import torch

        if self.device == "cpu":
            torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        if self.torchscript is not None and self.device == "cpu":
            from pmlseg.detect.sliding_window import SlidingWindow

            import warnings

            try:
                with warnings.catch_warnings():  # torch 2.13 marks torch.jit deprecated; torch.export.load costs ~3 s
                    warnings.simplefilter("ignore", DeprecationWarning)
                    net = torch.jit.load(str(self.torchscript), map_location="cpu")
            except Exception as exc:  # torch raises several types for bad files
                raise PmlsegError(f"{self.torchscript}: cannot load the TorchScript network "
                                  f"({str(exc).splitlines()[0][:150]})") from None
            net.eval()
            log.info("model %s (sha256 %s…, TorchScript) on cpu", self.name, self.sha256[:12])
            return net, SlidingWindow(self.config["roi_size"], int(self.config["sw_batch_size"]),
                                      float(self.config["overlap"]))
        from monai.inferers import SlidingWindowInferer

        from pmlseg.detect.network import build_network

        net = build_network(self.config)
        try:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except Exception as exc:  # torch raises several types for bad files
            raise PmlsegError(f"{weights}: cannot load weights ({str(exc).splitlines()[0][:150]})") from None
        net.to(self.device).eval()
        inferer = SlidingWindowInferer(roi_size=tuple(self.config["roi_size"]),
                                       sw_batch_size=int(self.config["sw_batch_size"]),
                                       overlap=float(self.config["overlap"]), mode="gaussian",
                                       padding_mode="constant")
        log.info("model %s (sha256 %s…) on %s", self.name, self.sha256[:12], self.device)
        return net, inferer

    @property
    def net(self):
        """The network on ``device`` in eval mode (waits for the background load; re-raises its error)."""
        return self._loaded.result()[0]

    @property
    def inferer(self):
        return self._loaded.result()[1]

    def probability(self, bl: np.ndarray, fu: np.ndarray, mask: np.ndarray | None = None,
                    slices_per_batch: int = 16, exact_above: float | None = None, *,
                    bl_t2: np.ndarray | None = None, fu_t2: np.ndarray | None = None) -> np.ndarray:
        """Per-voxel probability of a new/enlarging lesion on the working grid (x, y, z); 0 outside ``mask``.

        ``bl_t2``, ``fu_t2`` (PreparedPair's, same grid) feed a ``t2_input`` model's T2 channels when both are
        given; without them those channels are zeros (the model was trained with T2 dropout). A FLAIR-only
        model ignores them.

        Test-time flips (``tta_flips``) are averaged in only on slices where the plain pass reaches
        ``n * exact_above - (n - 1)`` somewhere (n passes): the mean can only reach ``exact_above`` where the
        plain pass does, so every voxel at or above it is exactly the flip average. Default ``exact_above``:
        the lower of the operating and review thresholds (what the lesions are cut at), or with a lesion
        classifier the ``flips_above`` its features were made with; 0 flips every slice.
        """
        import torch

        from pmlseg.detect.network import stack_channels
        from pmlseg.logs import progress
        from pmlseg.registration.grid import bounding_box

        out = np.zeros(bl.shape, np.float32)
        # only the brain's bounding box (+ margin) and slices that contain brain: outside is 0 anyway.  8 voxels
        # in plane (16 before session 12), fewer on an axis where the brain fits one window and 8 would not
        # (session 14): a second, overlapping window per slice costs as much again (docs/detection.md)
        region = mask if mask is not None else (bl != 0) | (fu != 0)
        tight = bounding_box(region, margin=(0, 0, 0))
        if tight is None:
            return out
        extent = [s.stop - s.start for s in tight[:2]]
        margin = [min(8, (int(r) - e) // 2) if e <= int(r) else 8 for e, r in zip(extent, self.config["roi_size"])]
        box = bounding_box(region, margin=(*margin, 1))
        if exact_above is None and self.classifier is not None:  # its thresholds cut scores, not probability
            exact_above = float(self.classifier.candidates["flips_above"])
        elif exact_above is None:
            exact_above = min(float(self.config["threshold"]),
                              float(self.config.get("review_threshold") or self.config["threshold"]))
        flips = [(d,) for d in self.config.get("tta_flips") or []]
        n = len(flips) + 1
        bound = n * exact_above - (n - 1)
        bl_c, fu_c = bl[box], fu[box]
        t2_input = bool(self.config.get("t2_input"))
        t2_c = (bl_t2[box], fu_t2[box]) if t2_input and bl_t2 is not None and fu_t2 is not None else None
        nz = bl_c.shape[2]
        ctx = int(self.config["context"])
        amp = self.device == "cuda"
        res = np.zeros(bl_c.shape, np.float32)

        def sigmoid(x):
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp):
                logits = self.inferer(x, self.net)
            return torch.sigmoid(logits[:, :1].float())  # channel 0: new/enlarging (1: auxiliary head)

        with torch.inference_mode():
            for k0 in progress(range(0, nz, slices_per_batch), desc="detect", unit="batch"):
                k1 = min(nz, k0 + slices_per_batch)
                x = torch.from_numpy(stack_channels(bl_c, fu_c, k0, k1, ctx, t2_c, t2_input)).to(self.device)
                prob = sigmoid(x)
                rows = torch.nonzero(prob.flatten(1).amax(1) >= bound).flatten() if flips else []
                if len(rows):  # test-time augmentation: mean probability over in-plane flips
                    xs, acc = x[rows], prob[rows]
                    for dims in flips:
                        acc = acc + torch.flip(sigmoid(torch.flip(xs, dims)), dims)
                    prob[rows] = acc / n
                res[:, :, k0:k1] = prob[:, 0].cpu().numpy().transpose(1, 2, 0)
        out[box] = res
        return out if mask is None else out * mask
