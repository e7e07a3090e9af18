"""Decide from the DICOM header what a series is: FLAIR, T1w, T1w post-contrast, T2w, dwi or other.

Physics first (ScanningSequence/SequenceVariant/ScanOptions, TR/TE/TI, ImageType, diffusion b-values,
contrast-agent tags); SeriesDescription is only a hint used when the physics is ambiguous or missing,
or to recognise things the header does not encode (localisers, perfusion). Everything that is not one
of the five useful kinds is 'other' with a reason; it is inventoried, never converted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pmlseg.ingest.index import FileInfo

CLASSES = ("FLAIR", "T1w", "T1w-ce", "T2w", "dwi", "other")

_LOCALIZER = re.compile(r"locali[sz]|scout|survey|3[-_ ]?plane|\bloc\b|aahead|pilot|smartbrain|calibration", re.I)
_PERFUSION = re.compile(r"\basl\b|pcasl|pasl|perfusion|\bperf\b|\bdsc\b|\bdce\b|\bbold\b|fmri|resting|\brest\b|cbf|cbv|mtt|\bttp\b", re.I)
_DIFF_MAP = re.compile(r"\badc\b|apparent|\bfa\b|colfa|fractional|\btrace\b|\bexp\b|eadc|dwi_?map|_adc|adc_", re.I)
_OTHER_HINT = re.compile(r"\bswi\b|\bswan\b|t2\*|\bt2star\b|\bgre\b.*hemo|\btof\b|angio|\bmra\b|\bmrv\b|venogr|"
                         r"spectro|\bsvs\b|\bcsi\b|\bmip\b|reformat|\bstir\b|\bpd\b|proton|"
                         r"(?:^|[\W_])(?:dir|psir|inv1|inv2|qsm|t1_?map|t2_?map)(?:$|[\W_])|double[-_ ]?inv|"
                         r"mapping|relaxometr|\bmagic\b|syntheticmr|\bsymri\b", re.I)
_CONTRAST_HINT = re.compile(r"\+\s*c\b|\+\s*gd|\bgad|\bgd\b|post[-_ ]?(contrast|gad|gd|c\b)|\bpost\b|contrast|\bce\b|\bc\+|_ce_|mprage_?post|kontrast|(?:^|[_ ])km(?:$|[_ ])|\bmit km\b", re.I)
_NO_CONTRAST = re.compile(r"\bpre\b|pre[-_ ]?(contrast|gad|gd|c\b)|native|nativ|\bnon[-_ ]?contrast", re.I)
_DWI_HINT = re.compile(r"\bdwi\b|\bdti\b|diff|tensor|\bdwi|dwi_|\bhardi\b|\bb1000\b|resolve", re.I)
_FLAIR_HINT = re.compile(r"flair|dark[-_ ]?fluid|\bt2[-_ ]?fl|\bfl[-_ ]?t2", re.I)
_T1_HINT = re.compile(r"t1|mprage|mp-rage|mp2rage|spgr|fspgr|bravo|tfe|vibe|\bmpr\b", re.I)
_T2_HINT = re.compile(r"t2|\btse\b|\bfse\b", re.I)

DERIVED_TYPES = {"DERIVED", "SECONDARY", "MPR", "REFORMATTED", "PROJECTION IMAGE", "MIP", "MNIP", "CPR",
                 "CSA RESAMPLED", "CSA MPR", "SCREEN SAVE", "SCREENSHOT", "COLLAPSE"}
DIFF_MAP_TYPES = {"ADC", "FA", "TRACEW", "EADC", "TENSOR_FA", "CALC_BVALUE", "EXP", "ISOTROPIC", "TRACE", "COLFA"}
PHASE_TYPES = {"P", "PHASE", "R", "REAL", "I", "IMAGINARY", "PHASE MAP", "FIELD_MAP", "B0"}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@dataclass
class SeriesFacts:
    """What classification needs about a whole series (from its files)."""

    first: FileInfo
    n_files: int
    n_frames: int
    bvals: set
    echo_numbers: set
    orientations: int  # distinct slice orientations
    image_types: set
    contrast: str


def series_facts(files: list[FileInfo]) -> SeriesFacts:
    first = files[0]
    bvals, echoes, orients = set(), set(), set()
    type_count: dict[str, int] = {}
    contrast = ""
    n_frames = 0
    for f in files:
        n_frames += max(f.frames, 1)
        bvals.update(round(b, 1) for b in f.bvals if b is not None)
        if f.echo_number is not None:
            echoes.add(f.echo_number)
        for t in set(f.image_type):
            type_count[t] = type_count.get(t, 0) + 1
        contrast = contrast or f.contrast_agent
        for iop in f.iops:
            if iop and not any(max(abs(a - b) for a, b in zip(iop, o)) < 0.01 for o in orients):
                orients.add(iop)
    # ImageType values of most files: one derived trace/ADC image inside a Philips DWI series must not
    # turn the whole series into a "map".
    types = {t for t, c in type_count.items() if 2 * c >= len(files)}
    return SeriesFacts(first, len(files), n_frames, bvals, echoes, len(orients), types, contrast)


def _has_contrast(facts: SeriesFacts, hint: str) -> bool:
    agent = facts.contrast.strip().lower()
    if agent and agent not in ("none", "no", "n", "0", "nein", "non", "-", "no contrast", "without"):
        return True
    return bool(_CONTRAST_HINT.search(hint)) and not _NO_CONTRAST.search(hint)


def classify(facts: SeriesFacts) -> tuple[str, str]:
    """(class, reason). Class is one of CLASSES; reason says why (always for 'other')."""
    f = facts.first
    hint = f"{f.series_description} {f.protocol_name}"
    types = facts.image_types
    if f.modality and f.modality != "MR":
        return "other", f"modality {re.sub(r'[^A-Z0-9]', '', f.modality)[:8]} (only MR is converted)"
    if f.sop_class.startswith(_SECONDARY_CAPTURE):
        return "other", "secondary capture / screenshot"
    if "LOCALIZER" in types or "SCOUT" in types or _LOCALIZER.search(hint) or facts.orientations > 1:
        return "other", "localizer"
    if types & DIFF_MAP_TYPES or (_DIFF_MAP.search(hint) and not (facts.bvals - {0.0})):
        return "other", "diffusion-derived map (ADC/FA/trace)"
    if types & {"PERFUSION", "ASL", "FMRI"} or _PERFUSION.search(hint):
        return "other", "perfusion / ASL / BOLD"
    if types & PHASE_TYPES and "M" not in types and "MAGNITUDE" not in types:
        return "other", "phase / real / imaginary image"
    if types & DERIVED_TYPES:
        return "other", "derived / reformatted / secondary image"
    if "SWI" in types or "MIP" in types or "ANGIO" in types:
        return "other", "SWI / angiography"

    nonzero_b = {b for b in facts.bvals if b > 1.0}
    diffusion_seq = f.sequence_name.lower().lstrip("*").startswith(("ep_b", "re_b")) or "DIFFUSION" in types
    if (nonzero_b and (len(facts.bvals) > 1 or facts.n_frames > 1)) or (diffusion_seq and len(facts.bvals) > 1):
        return "dwi", f"b-values {','.join(str(int(b)) for b in sorted(facts.bvals))}"
    if "EP" in f.scanning_sequence or _DWI_HINT.search(hint):
        # Structural FLAIR/T1/T2 are not echo-planar: EPI here is b0/trace, BOLD or perfusion.
        return "other", "echo-planar or diffusion series without usable b-values"
    if f.acq_contrast in ("T2_STAR", "PROTON_DENSITY", "PERFUSION", "FLOW_ENCODED", "STIR"):
        return "other", f"AcquisitionContrast {f.acq_contrast}"
    if len(facts.echo_numbers) > 1:
        return "other", f"multi-echo ({len(facts.echo_numbers)} echoes)"
    if _OTHER_HINT.search(hint):
        return "other", "description says SWI/T2*/TOF/STIR/PD/MPR"

    kind, why = _weighting(f, hint)
    if kind == "T1w" and _has_contrast(facts, hint):
        return "T1w-ce", why + "; contrast agent"
    return kind, why


def _weighting(f: FileInfo, hint: str) -> tuple[str, str]:
    seq = set(f.scanning_sequence)
    variant = set(f.sequence_variant)
    options = set(f.scan_options)
    tr, te, ti = f.tr, f.te, f.ti
    inversion = "IR" in seq or "MP" in variant or any(o.startswith("IR") for o in options) or (ti is not None and ti > 0)
    params = f"TR={_n(tr)} TE={_n(te)} TI={_n(ti)}"
    if te is not None and tr is not None:
        if inversion:
            if ti is not None and ti >= 1400 and te >= 50:
                return "FLAIR", f"inversion recovery, long TI and TE ({params})"
            if ti is not None and ti < 350 and te >= 30:
                return "other", f"STIR ({params})"
            if te < 30 and (ti is None or 300 <= ti <= 1400 or tr < 50):
                return "T1w", f"T1 inversion recovery ({params})"
            if te >= 50 and ti is None and _FLAIR_HINT.search(hint):
                return "FLAIR", f"inversion recovery with long TE, description says FLAIR ({params})"
        if te < 30 and tr < 1000 and not inversion:
            if te < 10 and tr < 50 and (f.flip or 0) > 35:
                return "other", f"short-TR gradient echo with high flip angle: likely angiography ({params})"
            return "T1w", f"short TR and TE ({params})"
        if te < 10 and tr < 50:
            return "T1w", f"3D gradient echo with short TR/TE ({params})"
        if te >= 60 and tr >= 1500 and not inversion:
            if _FLAIR_HINT.search(hint):
                return "FLAIR", f"long TR/TE, description says FLAIR ({params})"
            return "T2w", f"long TR and TE ({params})"
        if te < 30 and tr >= 1500 and not inversion:
            return "other", f"proton density ({params})"
        if 10 <= te < 60 and "GR" in seq and not inversion:
            return "other", f"T2*/gradient echo ({params})"
    # Physics missing or ambiguous: an enhanced header's AcquisitionContrast, then the description.
    stated = {"T1": "T1w", "T2": "T2w", "FLAIR": "FLAIR"}.get(f.acq_contrast)
    if stated:
        return stated, f"AcquisitionContrast {f.acq_contrast} ({params})"
    if _FLAIR_HINT.search(hint):
        return "FLAIR", f"description hint ({params})"
    if _T1_HINT.search(hint):
        return "T1w", f"description hint ({params})"
    if _T2_HINT.search(hint):
        return "T2w", f"description hint ({params})"
    return "other", f"unrecognised contrast ({params})"


def _n(x) -> str:
    return "-" if x is None else f"{x:g}"
