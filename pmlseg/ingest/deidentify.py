"""Keep patient identifiers out of every ingest output except identity.tsv.

Sidecars keep an allow-list of acquisition parameters (a deny-list misses vendor fields such as
Philips' ProcedureStepDescription, which often holds the patient's name). Free text that is kept
(SeriesDescription, ProtocolName) loses control characters and any known identifier of the patient.
dcm2niix puts the acquisition time in the NIfTI ``descrip`` field and ImageComments in ``aux_file``:
both are blanked.
"""

from __future__ import annotations

import re
import struct

# Acquisition parameters only: nothing about the person, the site, the device serial, dates or UIDs.
SIDECAR_KEEP = {
    "Modality", "MagneticFieldStrength", "ImagingFrequency", "Manufacturer", "ManufacturersModelName",
    "SoftwareVersions", "BodyPart", "PatientPosition", "MRAcquisitionType", "SeriesDescription", "ProtocolName",
    "ScanningSequence", "SequenceVariant", "ScanOptions", "SequenceName", "PulseSequenceName", "PulseSequenceType",
    "PulseSequenceDetails", "InternalPulseSequenceName", "ImageType", "ImageTypeText", "NonlinearGradientCorrection",
    "SeriesNumber", "AcquisitionNumber", "SliceThickness", "SpacingBetweenSlices", "SAR", "EchoNumber", "EchoTime",
    "EchoTime1", "EchoTime2", "RepetitionTime", "RepetitionTimeExcitation", "RepetitionTimeInversion",
    "InversionTime", "FlipAngle", "MTState", "SpoilingState", "SpoilingType", "EchoTrainLength",
    "PartialFourier", "PhaseEncodingSteps", "FrequencyEncodingSteps", "PhaseEncodingStepsOutOfPlane",
    "PercentPhaseFOV", "PercentSampling", "BaseResolution", "PhaseResolution", "PhaseOversampling",
    "AcquisitionMatrixPE", "ReconMatrixPE", "ParallelReductionFactorInPlane",
    "ParallelReductionFactorOutOfPlane", "ParallelAcquisitionTechnique", "MultibandAccelerationFactor",
    "EffectiveEchoSpacing", "EstimatedEffectiveEchoSpacing", "DerivedVendorReportedEchoSpacing",
    "TotalReadoutTime", "EstimatedTotalReadoutTime", "AcquisitionDuration", "PixelBandwidth",
    "BandwidthPerPixelPhaseEncode", "DwellTime", "WaterFatShift", "PhaseEncodingDirection", "PhaseEncodingAxis",
    "PhaseEncodingPolarityGE", "SliceEncodingDirection", "SliceTiming", "ImageOrientationPatientDICOM",
    "ImageOrientationText", "InPlanePhaseEncodingDirectionDICOM", "ShimSetting", "CoilString",
    "ReceiveCoilName", "ReceiveCoilActiveElements", "CoilCombinationMethod", "MatrixCoilMode",
    "NumberOfAverages", "NumberOfKSpaceTrajectories", "TxRefAmp", "RefLinesPE", "DiffusionScheme",
    "NumberOfDiffusionDirectionGE", "NumberOfDiffusionT2GE", "PhilipsRWVSlope", "PhilipsRWVIntercept",
    "PhilipsRescaleSlope", "PhilipsRescaleIntercept", "PhilipsScaleSlope", "UsePhilipsFloatNotDisplayScaling",
    "ContrastBolusIngredient", "ConversionSoftware", "ConversionSoftwareVersion", "TablePosition",
    "MultibandAccelerationFactor", "EchoTrainLength", "SliceThicknessBIDS",
}
_FREE_TEXT = {"SeriesDescription", "ProtocolName", "ContrastBolusIngredient", "CoilString", "ReceiveCoilName",
              "SequenceName", "PulseSequenceName", "InternalPulseSequenceName", "PulseSequenceDetails"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def clean_text(text: str, identifiers: list[str] = (), limit: int = 200) -> str:
    """One line of printable text without tabs, newlines, control characters or the patient's identifiers."""
    text = _CONTROL.sub(" ", str(text)).strip()
    for ident in identifiers:
        if ident and len(ident) >= 3:
            text = re.sub(re.escape(ident), "[removed]", text, flags=re.I)
    return re.sub(r" {2,}", " ", text)[:limit]


def source_ref(rel_path: str) -> str:
    """How logs name a file of the export: a hash of its path under SRC, never the path itself (PACS exports
    name folders and files after the patient). `pmlseg ingest SRC --locate REF` finds the file again."""
    import hashlib

    return "file:" + hashlib.sha1(rel_path.encode("utf-8", "surrogateescape")).hexdigest()[:10]


def identifier_tokens(values: list[str]) -> list[str]:
    """Identifier strings to scrub from free text: the values and, for names, their parts."""
    out = set()
    for v in values:
        v = _CONTROL.sub(" ", v or "").strip()
        if not v:
            continue
        out.add(v)
        for part in re.split(r"[\^ ,]+", v):
            if len(part) >= 3:
                out.add(part)
    return sorted(out, key=len, reverse=True)


def filter_sidecar(meta: dict, identifiers: list[str] = ()) -> dict:
    """dcm2niix's sidecar reduced to acquisition parameters, free text cleaned."""
    out = {}
    for key, value in meta.items():
        if key not in SIDECAR_KEEP:
            continue
        if key in _FREE_TEXT and isinstance(value, str):
            value = clean_text(value, identifiers)
        out[key] = value
    return out


def blank_nifti_text(raw_header: bytearray) -> None:
    """Blank ``descrip`` (dcm2niix writes the acquisition time there) and ``aux_file`` in place."""
    (size,) = struct.unpack_from("<i", raw_header, 0)
    if size == 348:
        spans = ((148, 80), (228, 24))
    elif size == 540:
        spans = ((240, 80), (320, 24))
    else:
        (size_be,) = struct.unpack_from(">i", raw_header, 0)
        if size_be == 348:
            spans = ((148, 80), (228, 24))
        elif size_be == 540:
            spans = ((240, 80), (320, 24))
        else:
            raise ValueError("not a NIfTI header")
    for off, n in spans:
        raw_header[off:off + n] = b"\0" * n
