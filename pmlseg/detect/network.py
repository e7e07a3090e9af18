"""The detection network: a 2.5D MONAI BasicUNet on axial slices of the rebaseline working grid.

Input channels are (2k+1) neighbouring slices each of rebaseline FLAIR, follow-up FLAIR and their
difference (follow-up minus baseline), all intensity-normalised; with ``t2_input`` the same three again
for T2-weighted images (zeros where a visit has no T2: trained with modality dropout, so FLAIR alone still
works); output one logit map (new or enlarging lesion) for the centre slice. 2.5D keeps CPU training and inference cheap and suits the
thick-slice clinical FLAIR this is used on (Hitziger et al. 2022 used a similar triplanar design).
"""

from __future__ import annotations

DEFAULT_CONFIG = {
    "context": 1,  # neighbouring slices on each side -> 3 slices per image
    "features": [16, 24, 32, 64, 128, 16],
    "inplane_mm": 1.0,
    # working-grid slice spacing (mm); None = the rebaseline's own. A fine grid keeps a follow-up lesion
    # that lies between the rebaseline's thick slices (linear resampling at 4 mm slices averages it away)
    "slice_mm": None,
    # ... never finer than this (mm; None = no floor): a 1 mm 3D rebaseline is given a slice profile of this
    # FWHM and laid on such slices, as the training pairs' 2D acquisitions were (predictor.thick_slices)
    "min_slice_mm": None,
    "roi_size": [192, 192],
    "sw_batch_size": 16,
    "overlap": 0.25,
    "threshold": 0.5,             # operating point (lesions reported as new/enlarging; pmlseg.detect.candidates)
    "review_threshold": None,     # lower cut for "possible new lesions -- please check" (None: no review band)
    "calibration": None,          # {"peak": [...], "confidence": [...]}: peak probability -> confidence
    "tta_flips": [],              # tensor dims (2 = x, 3 = y of (n, C, x, y)) averaged with flipped inputs
    # a second output channel trained on every lesion the follow-up shows (single-visit segmentation as an
    # auxiliary task, issue 15); inference reads channel 0 only
    "aux_lesion_head": False,
    # T2-weighted rebaseline, follow-up and difference as three more slice stacks (issue 15: several of the
    # real pairs' new lesions change more on T2W than on FLAIR, docs/detection.md "Phase 12"); zeros when absent
    "t2_input": False,
    "min_size_mm3": 10.0,
    "min_followup_peak": 1.1,     # postprocess.plausible: a new lesion is FLAIR-bright at follow-up ...
    "min_mean_difference": 0.1,   # ... and brighter than at the rebaseline (x median brain)
}


def in_channels(config: dict) -> int:
    return 3 * (2 * int(config["context"]) + 1) * (2 if config.get("t2_input") else 1)


def out_channels(config: dict) -> int:
    return 2 if config.get("aux_lesion_head") else 1


def build_network(config: dict):
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=in_channels(config), out_channels=out_channels(config),
                     features=tuple(config["features"]), dropout=0.0)


def save_torchscript(state_dict: dict, config: dict, path) -> None:
    """The network with these weights traced to TorchScript (``path``, written atomically), so inference needs
    neither MONAI nor its import (pmlseg.detect.sliding_window). Traced on one window of ``roi_size``: the
    sliding window only ever passes such windows (a multiple of 16, so BasicUNet's skip sizes always match)."""
    import warnings

    import torch

    from pmlseg.atomic import atomic_path

    roi = [int(r) for r in config["roi_size"]]
    if any(r % 16 for r in roi):
        raise ValueError(f"roi_size {roi}: TorchScript export needs multiples of 16")
    net = build_network(config)
    net.load_state_dict(state_dict)
    net.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarning: the skip-size check is constant for these windows
        traced = torch.jit.trace(net, torch.zeros(2, in_channels(config), *roi))
    with atomic_path(path) as tmp:
        traced.save(str(tmp))


def stack_channels(bl, fu, k0: int, k1: int, context: int, t2: tuple | None = None, t2_input: bool = False):
    """Channels for centre slices k0..k1-1 of (x, y, z) arrays: [bl slices, fu slices, diff slices], and with
    ``t2_input`` the same for ``t2`` = (bl T2, fu T2) on the same grid (zeros when ``t2`` is None).

    Returns an array (n, C, x, y); slices beyond the volume edge repeat the edge slice.
    """
    import numpy as np

    nz = bl.shape[2]
    stacks = [(bl, fu)] + ([t2] if t2_input else [])
    out = []
    for k in range(k0, k1):
        idx = [min(max(k + d, 0), nz - 1) for d in range(-context, context + 1)]
        parts = []
        for pair in stacks:
            if pair is None:
                parts.append(np.zeros((3 * len(idx),) + bl.shape[:2], np.float32))
                continue
            b = pair[0][:, :, idx].transpose(2, 0, 1)
            f = pair[1][:, :, idx].transpose(2, 0, 1)
            parts.append(np.concatenate([b, f, f - b], axis=0))
        out.append(np.concatenate(parts, axis=0))
    return np.stack(out).astype(np.float32)
