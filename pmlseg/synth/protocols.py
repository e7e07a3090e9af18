"""What each vendor's brain MS protocol looks like in DICOM: series names, sequence tags, grids, file naming.

Three vendor profiles (SIEMENS, GE MEDICAL SYSTEMS, Philips) differ where real exports differ
(SeriesDescription/ProtocolName wording, ScanningSequence/SequenceVariant/ScanOptions, ImageType,
RescaleSlope, folder and file naming, how diffusion is encoded), so ingest is tested against
variety rather than one convention. Each visit draws a FLAIR and a T1 protocol: 3D 1 mm sagittal or
2D axial thick-slice (0.7x0.7x3 mm FLAIR), possibly angulated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VENDORS = ("SIEMENS", "GE MEDICAL SYSTEMS", "Philips")

MODELS = {
    "SIEMENS": [("Skyra", 3.0, "syngo MR E11"), ("Aera", 1.5, "syngo MR E11"), ("Prisma", 3.0, "syngo MR XA30")],
    "GE MEDICAL SYSTEMS": [("DISCOVERY MR750", 3.0, "27\\LX\\MR Software release:DV26.0_R03"),
                           ("SIGNA Explorer", 1.5, "27\\LX\\MR Software release:DV26.0_R02")],
    "Philips": [("Ingenia", 3.0, "5.6.1\\5.6.1.2"), ("Achieva", 1.5, "5.3.0\\5.3.0.3")],
}


@dataclass
class SeriesSpec:
    """One series of a visit: its contrast(s), grid and DICOM elements."""

    key: str                      # FLAIR, T1w, T2w, DWI, LOCALIZER, SCREENSHOT
    orientation: str
    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    elements: dict
    tilt_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    protocol: str = ""            # short human description for cohort.tsv, e.g. "3D sag 1 mm"
    b1000_directions: list = field(default_factory=list)   # DWI: gradient directions of the b1000 volumes


_SEQ = {
    # key: (ScanningSequence, SequenceVariant, ScanOptions, TR, TE, TI, flip)
    "FLAIR3D": ("SE\\IR", "SK\\SP\\MP", "IR", "5000", "387", "1800", "120"),
    "FLAIR2D": ("SE\\IR", "SK\\SP\\OSP", "IR\\SAT1", "9000", "81", "2500", "150"),
    "T13D": ("GR\\IR", "SK\\SP\\MP", "IR", "2300", "2.98", "900", "9"),
    "T12D": ("SE", "SK\\SP\\OSP", "SAT1", "550", "10", None, "90"),
    "T2": ("SE", "SK\\SP\\OSP", "SAT1", "6000", "99", None, "150"),
    "DWI": ("EP", "SK\\SP", "PFP\\FS", "6500", "89", None, "90"),
}

_NAMES = {
    "SIEMENS": {"FLAIR3D": "t2_space_dark-fluid_sag_p2_iso", "FLAIR2D": "t2_tirm_tra_dark-fluid",
                "T13D": "t1_mprage_sag_p2_iso", "T12D": "t1_se_tra", "T2": "t2_tse_tra_p2",
                "DWI": "ep2d_diff_3scan_trace_p2", "LOCALIZER": "localizer", "SCREENSHOT": "Screen Save"},
    "GE MEDICAL SYSTEMS": {"FLAIR3D": "Sag CUBE T2 FLAIR", "FLAIR2D": "Ax T2 FLAIR", "T13D": "Sag 3D BRAVO",
                           "T12D": "Ax T1 SE", "T2": "Ax T2 FRFSE", "DWI": "Ax DWI 1000b",
                           "LOCALIZER": "3Plane Loc", "SCREENSHOT": "Screen Save"},
    "Philips": {"FLAIR3D": "3D_Brain_VIEW_FLAIR_SHC", "FLAIR2D": "T2W_FLAIR_TRA", "T13D": "3D_T1W_TFE",
                "T12D": "T1W_SE_TRA", "T2": "T2W_TSE_TRA", "DWI": "DWI_SSh_TRA",
                "LOCALIZER": "Survey_MST", "SCREENSHOT": "Screen Save"},
}

_SEQUENCE_NAME = {
    "SIEMENS": {"FLAIR3D": "*spcir_282ns", "FLAIR2D": "*tir2d1_15", "T13D": "*tfl3d1_16ns", "T12D": "*se2d1",
                "T2": "*tse2d1_15", "DWI": "*ep_b0_1000"},
    "GE MEDICAL SYSTEMS": {"FLAIR3D": "Cube", "FLAIR2D": "fsirs", "T13D": "efgre3d", "T12D": "se",
                           "T2": "frfse", "DWI": "epi2"},
    "Philips": {"FLAIR3D": "TSE", "FLAIR2D": "IR", "T13D": "T1TFE", "T12D": "SE", "T2": "TSE", "DWI": "DwiSE"},
}


def series_name(vendor: str, key: str) -> str:
    """SeriesDescription/ProtocolName the vendor's protocol uses for ``key`` (FLAIR3D, LOCALIZER, ...)."""
    return _NAMES[vendor][key]


def image_type(vendor: str, key: str) -> list[str]:
    if key == "LOCALIZER":
        return ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    if key == "SCREENSHOT":
        return ["DERIVED", "SECONDARY", "SCREEN SAVE"]
    if vendor == "SIEMENS":
        return ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"] if key == "DWI" else ["ORIGINAL", "PRIMARY", "M", "ND"]
    if vendor == "GE MEDICAL SYSTEMS":
        return ["ORIGINAL", "PRIMARY", "OTHER"]
    return ["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"] if key != "DWI" else ["ORIGINAL", "PRIMARY", "DIFFUSION", "M"]


def _elements(vendor: str, key: str, acq_type: str, thickness: float) -> dict:
    scan, variant, options, tr, te, ti, flip = _SEQ[key]
    el = {
        "SeriesDescription": _NAMES[vendor][key], "ProtocolName": _NAMES[vendor][key],
        "ImageType": image_type(vendor, key), "ScanningSequence": scan, "SequenceVariant": variant,
        "ScanOptions": options, "MRAcquisitionType": acq_type, "SequenceName": _SEQUENCE_NAME[vendor][key],
        "RepetitionTime": tr, "EchoTime": te, "FlipAngle": flip, "SliceThickness": thickness,
        "NumberOfAverages": "1", "EchoTrainLength": "1" if key in ("T13D", "DWI") else "16",
        "PixelBandwidth": "220", "PercentSampling": "100", "PercentPhaseFieldOfView": "100",
        "InPlanePhaseEncodingDirection": "ROW" if key == "DWI" else "COL",
    }
    if ti is not None:
        el["InversionTime"] = ti
    if vendor == "GE MEDICAL SYSTEMS" and options:
        el["ScanOptions"] = "FAST_GEMS\\" + options.replace("\\", "_GEMS\\") + "_GEMS"
    return el


def visit_series(vendor: str, rng: np.random.Generator, flair_3d: bool | None = None) -> list[SeriesSpec]:
    """The series of one visit (main FLAIR first), with this visit's protocol choices.

    ``flair_3d`` None draws the FLAIR protocol at random; the cohort alternates it between visits.
    """
    draw = bool(rng.random() < 0.5)
    flair_3d = draw if flair_3d is None else flair_3d
    t1_3d = bool(rng.random() < 0.6)
    tilt = (float(rng.uniform(-10, 10)), 0.0, 0.0)  # AC-PC-like angulation of axial 2D stacks
    out = []
    if flair_3d:
        out.append(SeriesSpec("FLAIR", "sagittal", (224, 224, 176), (1.0, 1.0, 1.0),
                              _elements(vendor, "FLAIR3D", "3D", 1.0), protocol="3D sag 1 mm"))
    else:
        out.append(SeriesSpec("FLAIR", "axial", (320, 320, 50), (0.7, 0.7, 3.0),
                              _elements(vendor, "FLAIR2D", "2D", 3.0), tilt, protocol="2D ax 0.7x0.7x3 mm"))
    if t1_3d:
        out.append(SeriesSpec("T1w", "sagittal", (224, 224, 176), (1.0, 1.0, 1.0),
                              _elements(vendor, "T13D", "3D", 1.0), protocol="3D sag 1 mm"))
    else:
        out.append(SeriesSpec("T1w", "axial", (256, 256, 36), (0.9, 0.9, 4.0),
                              _elements(vendor, "T12D", "2D", 4.0), tilt, protocol="2D ax 0.9x0.9x4 mm"))
    out.append(SeriesSpec("T2w", "axial", (256, 256, 36), (0.9, 0.9, 4.0),
                          _elements(vendor, "T2", "2D", 4.0), tilt, protocol="2D ax 0.9x0.9x4 mm"))
    # GE stores no usable trace direction (dcm2niix reads a zero GE gradient as b=0), so GE gets the
    # three orthogonal b1000 images a "3 in 1" acquisition stores; others get the scanner trace image.
    dirs = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]] if vendor == "GE MEDICAL SYSTEMS" else [[0.0, 0.0, 0.0]]
    out.append(SeriesSpec("DWI", "axial", (128, 128, 36), (1.8, 1.8, 4.0),
                          _elements(vendor, "DWI", "2D", 4.0), tilt, protocol="2D ax 1.8x1.8x4 mm",
                          b1000_directions=dirs))
    return out


def diffusion_elements(vendor: str, bvalue: float, direction: list[float]) -> dict:
    """Per-volume diffusion tags: standard (0018,9087)/(0018,9089) plus what dcm2niix reads per vendor."""
    el = {"DiffusionBValue": float(bvalue), "DiffusionGradientOrientation": [float(v) for v in direction],
          "DiffusionDirectionality": "NONE" if bvalue == 0 else ("ISOTROPIC" if not any(direction) else "DIRECTIONAL")}
    if vendor == "GE MEDICAL SYSTEMS":
        el["private"] = [(0x0043, "GEMS_PARM_01", 0x39, "IS", [int(bvalue) + 1000000000, 8, 0, 0])] + [
            (0x0019, "GEMS_ACQU_01", 0xBB + i, "DS", f"{direction[i]:g}") for i in range(3)]
    elif vendor == "SIEMENS":
        el["SequenceName"] = f"*ep_b{int(bvalue)}" + ("t" if bvalue and not any(direction) else "")
    return el


def file_namer(vendor: str):
    """How the vendor's export names the files of a series (no extension for some)."""
    if vendor == "SIEMENS":
        return lambda n: f"IM{n:05d}"
    if vendor == "GE MEDICAL SYSTEMS":
        return lambda n: f"I{n * 10:07d}"
    return lambda n: f"IM_{n:04d}.dcm"


def series_folder(vendor: str, series_number: int, description: str) -> str:
    """Series folder name in the export (never contains patient identifiers)."""
    if vendor == "SIEMENS":
        safe = "".join(c if c.isalnum() else "_" for c in description).upper()
        return f"{safe}_{series_number:04d}"
    if vendor == "GE MEDICAL SYSTEMS":
        return f"S{series_number:05d}"
    return f"{series_number:08d}"
