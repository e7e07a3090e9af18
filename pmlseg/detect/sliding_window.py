"""Gaussian-weighted sliding-window inference, the same arithmetic as MONAI's SlidingWindowInferer.

Why: ``import monai`` loads every MONAI submodule (scipy.stats and scikit-learn among them), ~4-5 s of
CPU in every detection job, for two objects: the network class and the sliding window. With the network
shipped as TorchScript (models/<name>/model.ts) inference needs neither. This follows
monai.inferers.utils.sliding_window_inference (MONAI 1.x; non-buffered path, "gaussian" blending,
constant padding) operation for operation, so the probabilities are bit-identical to MONAI's
(tests/test_detect_units.py compares the two on padded, exact and multi-window inputs).
"""

from __future__ import annotations

import math


def importance_map(roi_size: tuple[int, ...], sigma_scale: float = 0.125, device=None):
    """monai.data.utils.compute_importance_map(roi_size, mode="gaussian", sigma_scale)."""
    import torch

    imp = None
    for i, n in enumerate(roi_size):
        sigma = n * sigma_scale
        x = torch.arange(start=-(n - 1) / 2.0, end=(n - 1) / 2.0 + 1, dtype=torch.float, device=device)
        x = torch.exp(x**2 / (-2 * sigma**2))
        imp = imp.unsqueeze(-1) * x[(None,) * i] if i > 0 else x
    return torch.clamp_(imp.to(torch.float), min=max(torch.min(imp).item(), 1e-3))


def window_slices(image_size: tuple[int, ...], roi_size: tuple[int, ...], overlap: float) -> list[tuple[slice, ...]]:
    """monai's _get_scan_interval + dense_patch_slices: window positions, the last one flush with the edge."""
    import numpy as np

    starts = []
    for size, roi in zip(image_size, roi_size):
        interval = roi if roi == size else max(int(roi * (1 - overlap)), 1)
        num = int(math.ceil(float(size) / interval))
        n = next((d for d in range(num) if d * interval + roi >= size), None)
        starts.append([i * interval - max(i * interval + roi - size, 0) for i in range((n + 1) if n is not None else 1)])
    grid = np.asarray([x.flatten() for x in np.meshgrid(*starts, indexing="ij")]).T
    return [tuple(slice(int(s), int(s) + roi_size[d]) for d, s in enumerate(x)) for x in grid]


class SlidingWindow:
    """``SlidingWindow(roi_size, sw_batch_size, overlap)(inputs, network)``: (N, C, *spatial) -> network outputs
    stitched with Gaussian weights on ``inputs``' grid (zero padding where it is smaller than the window)."""

    def __init__(self, roi_size, sw_batch_size: int, overlap: float, sigma_scale: float = 0.125):
        self.roi_size = tuple(int(r) for r in roi_size)
        self.sw_batch_size = int(sw_batch_size)
        self.overlap = float(overlap)
        self.weights = importance_map(self.roi_size, sigma_scale)

    def __call__(self, inputs, network):
        import torch
        import torch.nn.functional as F

        nd = len(self.roi_size)
        dtype, batch, image_size_ = inputs.dtype, inputs.shape[0], tuple(inputs.shape[2:])
        roi = self.roi_size
        image_size = tuple(max(image_size_[i], roi[i]) for i in range(nd))
        pad = []
        for k in range(len(inputs.shape) - 1, 1, -1):
            diff = max(roi[k - 2] - inputs.shape[k], 0)
            pad.extend([diff // 2, diff - diff // 2])
        if any(pad):
            inputs = F.pad(inputs, pad=pad, mode="constant", value=0.0)
        slices = window_slices(image_size, roi, self.overlap)
        n_win = len(slices)
        total = n_win * batch
        w = self.weights.to(device=inputs.device, dtype=dtype)[None, None]
        out = count = None
        for g in range(0, total, self.sw_batch_size):
            windows = [(idx // n_win, slices[idx % n_win]) for idx in range(g, min(g + self.sw_batch_size, total))]
            if self.sw_batch_size > 1:
                data = torch.cat([inputs[(slice(b, b + 1), slice(None), *s)] for b, s in windows])
            else:
                b, s = windows[0]
                data = inputs[(slice(b, b + 1), slice(None), *s)]
            pred = network(data)
            if out is None:
                out = torch.zeros([batch, pred.shape[1], *image_size], dtype=dtype, device=inputs.device)
                count = torch.zeros([1, 1, *image_size], dtype=dtype, device=inputs.device)
                for s in slices:
                    count[(slice(None), slice(None), *s)] += w
            pred *= w
            for (b, s), p in zip(windows, pred):
                out[(slice(b, b + 1), slice(None), *s)] += p
        out /= count
        if any(pad):
            crop = [slice(pad[(nd - 1 - i) * 2], pad[(nd - 1 - i) * 2] + image_size_[i]) for i in range(nd)]
            out = out[(slice(None), slice(None), *crop)]
        return out
