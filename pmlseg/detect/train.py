"""Train the 2.5D detector on synthetic pairs made on the fly from real brains (see pairs.py).

Each DataLoader worker (recipe "workers", each with its own random stream) keeps a rolling pool of
synthetic pairs (one new pair replaces an old one every few batches) and cuts 2.5D patches from it,
about half of them centred on a new-lesion voxel; the main process trains (CPU, or CUDA with
autocast). Checkpoints are written as training goes, so a time-boxed run always leaves a model.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np

from pmlseg.atomic import atomic_path, write_text
from pmlseg.detect.network import DEFAULT_CONFIG, build_network, save_torchscript, stack_channels
from pmlseg.errors import PmlsegError

log = logging.getLogger(__name__)

DEFAULT_RECIPE = {
    "seed": 0,
    "minutes": 50.0,
    "max_steps": 100000,
    "batch_size": 16,
    "patch": 96,
    "lr": 2e-3,
    "pool_size": 14,
    "replace_every": 6,
    "positive_fraction": 0.6,
    "sources": {
        "mni_brains": ["patient07", "patient19", "patient26"],
        "raw_flair": ["ljubljana-longitudinal/patient04/study1_FLAIR.nii.gz"],
    },
    "checkpoint_minutes": 5.0,
    "workers": 1,
    # pair generator options (pairs.make_pair), off (None) as for the shipped model; tried in session 5
    # with 0.12 / 0.25 and not kept (docs/detection.md)
    "visible_change": None,
    "ribbon_gain": None,
    # real lesions inpainted out of the baseline and labelled new (pairs.insert_lesions); tried in session 13
    # with 0.5 and not kept (docs/detection.md "Phase 6")
    "real_as_new": None,
    # weight of the auxiliary single-visit lesion loss (inference config "aux_lesion_head", or aux_encoder_head)
    "aux_weight": 0.5,
    # the auxiliary single-visit lesion task on the encoder only (a 1x1 convolution on the encoder's third level,
    # 1/4 resolution, trained beside the network and not saved): the decoder stays the new-lesion one; tried in
    # session 18 (docs/detection.md "Phase 11")
    "aux_encoder_head": False,
    # with the inference config's "t2_input": the probability that a patch's T2W channels are zeros (modality
    # dropout), so the model still works on FLAIR alone; pairs from a source without T2W always get zeros
    "t2_dropout": 0.5,
    # train only the first layer's weights on the T2W channels (a FLAIR-only model extended by load_init): with T2W
    # withheld the network stays the initial one exactly, so training cannot drift its FLAIR path (Phase 12)
    "t2_channels_only": False,
    # a file written by pack_sources, used instead of the shared data (GPU machines without it)
    "sources_bundle": None,
}


def load_sources(recipe: dict, shared: Path):
    """The real brains the pairs are made from, and the real lesion-shape library (or recipe
    "sources_bundle": the same, packed by ``pack_sources`` for a machine without the shared data)."""
    if recipe.get("sources_bundle"):
        return unpack_sources(Path(recipe["sources_bundle"]))
    import SimpleITK as sitk

    from pmlseg.detect import pairs

    cross = shared / "ljubljana-cross-sectional"
    if not (cross / "mni-lesion-masks").is_dir():
        raise PmlsegError(f"{cross / 'mni-lesion-masks'}: lesion library not found (set PMLSEG_SHARED_DATA)")
    shapes, sites = pairs.lesion_library(cross / "mni-lesion-masks")
    sources = [pairs.mni_source(cross / "mni" / p, cross / "mni-lesion-masks" / f"{p}.nii.gz", sites)
               for p in recipe["sources"]["mni_brains"]]
    for rel in recipe["sources"]["raw_flair"]:
        sources.append(pairs.raw_source(rel, sitk.ReadImage(str(shared / rel))))
    return sources, shapes


def pack_sources(recipe: dict, shared: Path, path: Path) -> Path:
    """The training sources in one compressed file (images, T2W ones too, as float16), to carry to a GPU machine."""
    sources, shapes = load_sources({**recipe, "sources_bundle": None}, shared)
    arrays = {"n_sources": np.array(len(sources)), "n_shapes": np.array(len(shapes))}
    for i, s in enumerate(sources):
        arrays.update({f"s{i}_name": np.array(s.name), f"s{i}_image": s.image.astype(np.float16),
                       f"s{i}_mask": s.mask, f"s{i}_lesions": s.lesions, f"s{i}_centres": s.centres})
        if s.t2 is not None:
            arrays[f"s{i}_t2"] = s.t2.astype(np.float16)
    arrays.update({f"shape{i}": sh for i, sh in enumerate(shapes)})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


def unpack_sources(path: Path):
    from pmlseg.detect.pairs import Source

    z = np.load(path)
    sources = [Source(str(z[f"s{i}_name"]), z[f"s{i}_image"].astype(np.float32), z[f"s{i}_mask"],
                      z[f"s{i}_lesions"], z[f"s{i}_centres"],
                      t2=z[f"s{i}_t2"].astype(np.float32) if f"s{i}_t2" in z.files else None)
               for i in range(int(z["n_sources"]))]
    return sources, [z[f"shape{i}"] for i in range(int(z["n_shapes"]))]


def for_sampling(pair: dict) -> dict:
    """Float32 images and the sampling sites of a pair, computed once when it enters the pool
    (sample_patch draws many patches per pair; converting per patch was most of its time)."""
    pair = dict(pair, **{k: pair[k].astype(np.float32) for k in ("bl", "fu", "bl_t2", "fu_t2") if k in pair})
    pair["positive_sites"] = np.argwhere(pair["label"])
    pair["brain_sites"] = np.argwhere(pair["mask"][::4, ::4, :]) * np.array([4, 4, 1])
    return pair


def sample_patch(pair: dict, rng: np.random.Generator, patch: int, context: int, positive: bool,
                 t2_input: bool = False, t2_dropout: float = 0.0):
    """One 2.5D training patch (C, p, p) and its target (1, p, p) from a synthetic pair (see for_sampling);
    (2, p, p) when the pair carries "all_lesions" (the auxiliary head's target as channel 1). ``t2_input``: with
    the T2W channels, zeros when the pair has no T2W images or with probability ``t2_dropout``."""
    if "brain_sites" not in pair:
        pair = for_sampling(pair)
    bl, fu, lab = pair["bl"], pair["fu"], pair["label"]
    if positive and len(pair["positive_sites"]):
        pts = pair["positive_sites"]
        c = pts[rng.integers(len(pts))] + rng.integers(-patch // 3, patch // 3 + 1, size=3) * np.array([1, 1, 0])
    else:
        pts = pair["brain_sites"]
        c = pts[rng.integers(len(pts))]
    k = int(np.clip(c[2], 0, bl.shape[2] - 1))
    x0 = int(np.clip(c[0] - patch // 2, 0, max(0, bl.shape[0] - patch)))
    y0 = int(np.clip(c[1] - patch // 2, 0, max(0, bl.shape[1] - patch)))
    sl = (slice(x0, x0 + patch), slice(y0, y0 + patch))
    t2 = None
    if t2_input and "bl_t2" in pair and rng.random() >= t2_dropout:
        t2 = (pair["bl_t2"][sl], pair["fu_t2"][sl])
    x = stack_channels(bl[sl], fu[sl], k, k + 1, context, t2=t2, t2_input=t2_input)[0]
    y = lab[sl][:, :, k][None].astype(np.float32)
    if "all_lesions" in pair:
        y = np.concatenate([y, pair["all_lesions"][sl][:, :, k][None].astype(np.float32)])
    pad = [(0, 0), (0, patch - x.shape[1]), (0, patch - x.shape[2])]
    x, y = np.pad(x, pad), np.pad(y, pad)
    if rng.random() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    if rng.random() < 0.5:
        x, y = x[:, :, ::-1], y[:, :, ::-1]
    if rng.random() < 0.5:
        x, y = x.transpose(0, 2, 1), y.transpose(0, 2, 1)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _patch_stream(recipe: dict, config: dict, shared: str):
    """Infinite generator of batches, run inside one DataLoader worker (rolling pool of pairs)."""
    import torch

    from pmlseg.detect import pairs

    torch.set_num_threads(1)
    rng = np.random.default_rng(worker_seed(recipe["seed"]))
    sources, shapes = load_sources(recipe, Path(shared))
    opts = {"visible_change": recipe.get("visible_change"), "ribbon_gain": recipe.get("ribbon_gain"),
            "slice_mm": config.get("slice_mm"), "real_as_new": recipe.get("real_as_new"),
            "all_lesions": bool(config.get("aux_lesion_head") or recipe.get("aux_encoder_head")),
            "t2": bool(config.get("t2_input"))}
    pool = [for_sampling(pairs.make_pair(sources[i % len(sources)], rng, shapes, **opts))
            for i in range(recipe["pool_size"])]
    n = 0
    while True:
        xs, ys = [], []
        for b in range(recipe["batch_size"]):
            pair = pool[rng.integers(len(pool))]
            x, y = sample_patch(pair, rng, recipe["patch"], config["context"], rng.random() < recipe["positive_fraction"],
                                opts["t2"], float(recipe.get("t2_dropout", 0.5)))
            xs.append(x)
            ys.append(y)
        yield torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        n += 1
        if n % recipe["replace_every"] == 0:
            pool[rng.integers(len(pool))] = for_sampling(
                pairs.make_pair(sources[rng.integers(len(sources))], rng, shapes, **opts))


def worker_seed(seed: int) -> int:
    """Each DataLoader worker its own pair stream (same seed in every worker would repeat batches)."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return seed + 1 + (1000 * info.id if info is not None else 0)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def torchscript_entry(out: Path) -> dict:
    """metadata.json's record of OUT/model.ts (traced from OUT/model.pt; the CPU predictor's network)."""
    import torch

    return {"torchscript": {"file": "model.ts", "sha256": sha256(out / "model.ts"),
                            "traced_from_sha256": sha256(out / "model.pt"), "torch": torch.__version__,
                            "why": "CPU inference without importing MONAI (pmlseg.detect.sliding_window)"}}


def export_torchscript(model_dir: str | Path) -> Path:
    """(Re)write MODEL/model.ts from MODEL/model.pt and MODEL/inference.json, and its metadata.json record."""
    import torch

    out = Path(model_dir)
    config = {**DEFAULT_CONFIG, **json.loads((out / "inference.json").read_text())}
    save_torchscript(torch.load(out / "model.pt", map_location="cpu", weights_only=True), config, out / "model.ts")
    meta = json.loads((out / "metadata.json").read_text())
    meta.update(torchscript_entry(out))
    write_text(out / "metadata.json", json.dumps(meta, indent=2) + "\n")
    return out / "model.ts"


def save_model(out: Path, net, config: dict, recipe: dict, info: dict) -> None:
    """Write weights, inference config and metadata (with the weights' sha256) atomically."""
    import monai
    import torch

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    with atomic_path(out / "model.pt") as tmp:
        torch.save(state, tmp)
    save_torchscript(state, config, out / "model.ts")
    write_text(out / "inference.json", json.dumps(config, indent=2) + "\n")
    t2 = bool(config.get("t2_input"))
    meta = {
        "name": out.name,
        "task": "new and enlarging T2-FLAIR lesions between a rebaseline and a follow-up MRI",
        "network": "monai.networks.nets.BasicUNet, 2D (2.5D: neighbouring axial slices as channels)",
        "inputs": ["rebaseline FLAIR", "follow-up FLAIR registered onto the rebaseline and harmonised to its intensity "
                   "scale (pmlseg.detect.harmonise)", "difference (fu - bl)"]
                  + (["rebaseline T2W", "follow-up T2W, likewise registered and harmonised", "T2W difference (fu - bl)",
                      "(all three T2W channels zeros when a visit has no T2W image)"] if t2 else []),
        "preprocessing": ("rebaseline reoriented to LPS and resampled to 1 mm in plane ("
                          + ("slice spacing kept" if config.get("slice_mm") is None else
                             f"{config['slice_mm']} mm slices, linear") + "); follow-up "
                          "resampled onto it with the affine registration (linear); brain mask; each image divided by "
                          "its median brain intensity; 0 outside the brain; follow-up harmonised to the rebaseline "
                          "(median follow-up intensity per rebaseline-intensity bin, 25 mm relative bias removed)"
                          + ("; T2W images likewise (each visit's T2W on its FLAIR's grid, the same normalisation, "
                             "mask and harmonisation)" if t2 else "")),
        "weights": "model.pt",
        "sha256": sha256(out / "model.pt"),
        **torchscript_entry(out),
        "versions": {"monai": monai.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "training_data": ("synthetic pairs only: lesions inserted into the 3 MNI brains of ljubljana-cross-sectional "
                          "(patient07/19/26) and the raw study1 FLAIR of ljubljana-longitudinal patient04 (a single "
                          "visit, no ground truth used); lesion shapes from the 30 MNI lesion masks. The real "
                          "longitudinal pairs patient01 and patient03 were NOT used for training or checkpoint "
                          "selection; they are used only for evaluation."
                          + (" T2W: the MNI brains' T2.nii.gz with the same inserted lesions (their FLAIR brightening "
                             "times a random 0.5-1.5 per pair), acquired with each visit's FLAIR slice planning; a "
                             f"patch's T2W channels are zeros with probability {recipe.get('t2_dropout', 0.5)} (modality "
                             "dropout), and always for the raw FLAIR sources, which have none" if t2 else "")),
        "recipe": recipe,
        **info,
    }
    write_text(out / "metadata.json", json.dumps(meta, indent=2) + "\n")


def load_init(net, state: dict) -> None:
    """Start from ``state``; an output layer with more channels than the saved one (the auxiliary head added
    to a one-channel model) gets the saved channel's weights in every channel, and an input layer with more
    channels (T2W added to a FLAIR-only model) zero weights on the new ones, so the network starts as the saved
    one whatever they hold."""
    own = net.state_dict()
    for key, value in state.items():
        if key not in own or own[key].shape == value.shape:
            continue
        if own[key].shape[1:] == value.shape[1:] and value.shape[0] == 1:
            state[key] = value.expand_as(own[key]).clone()
        elif value.ndim >= 2 and own[key].shape[0] == value.shape[0] and own[key].shape[2:] == value.shape[2:] \
                and value.shape[1] < own[key].shape[1]:
            state[key] = own[key].new_zeros(own[key].shape)
            state[key][:, :value.shape[1]] = value
    net.load_state_dict(state)


def t2_input_weights(net, config: dict):
    """The first convolution's weight as the only trainable tensor, its gradient kept to the T2W input channels
    (every other parameter frozen): recipe "t2_channels_only"."""
    import torch

    from pmlseg.detect.network import in_channels

    if not config.get("t2_input"):
        raise PmlsegError('recipe "t2_channels_only" needs the network config\'s "t2_input"')
    for p in net.parameters():
        p.requires_grad_(False)
    weight = next(p for p in net.parameters() if p.ndim == 4 and p.shape[1] == in_channels(config))
    weight.requires_grad_(True)
    t2_only = torch.zeros_like(weight)
    t2_only[:, in_channels({**config, "t2_input": False}):] = 1.0
    weight.register_hook(lambda grad: grad * t2_only.to(grad.device))
    return weight


def train(out: Path, recipe: dict, config: dict, shared: Path, init: Path | None = None,
          device: str = "cpu") -> Path:
    """Train for recipe["minutes"]; on CUDA with float16 autocast, pairs made by recipe["workers"] processes."""
    import torch
    from monai.losses import DiceCELoss
    from torch.utils.data import DataLoader, IterableDataset

    from pmlseg.logs import progress

    torch.set_num_threads(2)
    torch.manual_seed(recipe["seed"])
    cuda = device == "cuda"

    class Stream(IterableDataset):
        def __iter__(self):
            return _patch_stream(recipe, config, str(shared))

    net = build_network(config)
    if init is not None:
        load_init(net, torch.load(init, map_location="cpu"))
    params = list(net.parameters())
    weight_decay = 1e-4
    if recipe.get("t2_channels_only"):
        params, weight_decay = [t2_input_weights(net, config)], 0.0  # decay would shrink the frozen FLAIR weights
    encoder_head, encoded = None, {}
    if recipe.get("aux_encoder_head"):
        encoder_head = torch.nn.Conv2d(int(config["features"][2]), 1, 1)
        net.down_2.register_forward_hook(lambda module, inputs, output: encoded.__setitem__("features", output))
        encoder_head.to(device)
        params += list(encoder_head.parameters())
    net.to(device)
    opt = torch.optim.AdamW(params, lr=recipe["lr"], weight_decay=weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    loss_fn = DiceCELoss(sigmoid=True, batch=True, lambda_ce=1.0, lambda_dice=1.0)
    loader = DataLoader(Stream(), batch_size=None, num_workers=max(1, int(recipe.get("workers", 1))),
                        prefetch_factor=4, persistent_workers=False, pin_memory=cuda)
    t0 = time.time()
    last_ck = t0
    budget = recipe["minutes"] * 60
    step, ema, first, recent = 0, None, None, collections.deque(maxlen=20)
    encoder_recent = collections.deque(maxlen=20)
    bar = progress(total=recipe["max_steps"], desc="training", unit="step")
    for x, y in loader:
        frac = min(1.0, (time.time() - t0) / budget)
        for g in opt.param_groups:
            g["lr"] = recipe["lr"] * 0.5 * (1 + np.cos(np.pi * frac))
        net.train()
        opt.zero_grad()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            logits = net(x)
            loss = loss_fn(logits[:, :1], y[:, :1])
            if logits.shape[1] > 1:
                loss = loss + float(recipe.get("aux_weight", 0.5)) * loss_fn(logits[:, 1:], y[:, 1:])
            if encoder_head is not None:  # every lesion the follow-up shows, at the encoder's 1/4 resolution
                coarse = encoder_head(encoded["features"])
                target = torch.nn.functional.adaptive_max_pool2d(y[:, 1:], coarse.shape[-2:])
                encoder_loss = loss_fn(coarse, target)
                encoder_recent.append(float(encoder_loss.detach()))
                loss = loss + float(recipe.get("aux_weight", 0.5)) * encoder_loss
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        step += 1
        lv = float(loss.detach())
        first = lv if first is None else first
        recent.append(lv)
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        bar.update(1)
        if step % 50 == 0:
            log.info("step %d loss %.4f (ema %.4f) %.0f s", step, lv, ema, time.time() - t0)
        done = step >= recipe["max_steps"] or time.time() - t0 >= budget
        if done or time.time() - last_ck >= recipe["checkpoint_minutes"] * 60:
            save_model(out, net, config, recipe, {"training_steps": step, "first_loss": first, "final_loss_ema": ema,
                                                  "recent_loss": float(np.mean(recent)),
                                                  **({"recent_encoder_head_loss": float(np.mean(encoder_recent))}
                                                     if encoder_recent else {}),
                                                  "training_seconds": round(time.time() - t0), "device": device})
            last_ck = time.time()
            log.info("checkpoint written to %s (step %d)", out, step)
        if done:
            break
    bar.close()
    return out / "model.pt"
