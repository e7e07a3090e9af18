"""DICOM SEG of the new lesions and a DICOM SR (TID 1500 measurement report) with their measurements.

Decision: the pipeline works from NIfTI, so the SEG/SR reference a *derived* MR series written here
from the rebaseline FLAIR grid (the grid the label map lives on).  Its patient attributes are the
pseudonym only, never identifiers; a site that wants PACS linkage to the original series re-links by
the pseudonym through identity.tsv.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pmlseg.atomic import atomic_path
from pmlseg.errors import PmlsegError

MANUFACTURER = "pmlseg"
# the finding a stable follow-up's SR records as absent (private coding scheme, as the PML score)
NEW_LESION = ("new_lesion", "99PMLSEG", "New or enlarging lesion")


def _derived_series(image: sitk.Image, pseudonym: str) -> list:
    """One MR Image Storage instance per axial slice of ``image`` (display values 0-4095: a derived
    picture of the grid for viewing the SEG, not quantitative)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    a = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    lo, hi = float(a.min()), float(a.max())
    u16 = np.round((a - lo) / max(hi - lo, 1e-6) * 4095).astype(np.uint16)
    d = np.array(image.GetDirection()).reshape(3, 3)
    sp = image.GetSpacing()
    study_uid, series_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    today = datetime.date.today().strftime("%Y%m%d")
    # the attributes every slice shares, built once (~50 per slice, ~10^2 slices); each slice gets a copy of
    # the element table and only adds its own elements, so no element is ever changed through a copy
    common = pydicom.Dataset()
    common.SOPClassUID = MRImageStorage
    common.PatientName, common.PatientID, common.PatientBirthDate, common.PatientSex = f"{pseudonym}^", pseudonym, "", ""
    common.StudyInstanceUID, common.SeriesInstanceUID, common.FrameOfReferenceUID = study_uid, series_uid, for_uid
    common.StudyDate, common.StudyTime, common.StudyID, common.AccessionNumber, common.ReferringPhysicianName = today, "000000", "1", "", ""
    common.SeriesDate, common.SeriesTime, common.ContentDate, common.ContentTime = today, "000000", today, "000000"
    common.Modality, common.SeriesNumber = "MR", 900
    common.Manufacturer = MANUFACTURER
    common.SeriesDescription = "pmlseg rebaseline FLAIR (derived)"
    common.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    common.PositionReferenceIndicator = ""
    common.ScanningSequence, common.SequenceVariant, common.ScanOptions, common.MRAcquisitionType = "IR", "NONE", "", "2D"
    common.RepetitionTime, common.EchoTime, common.EchoTrainLength, common.InversionTime = 9000, 100, 1, 2500
    common.PatientPosition, common.BodyPartExamined = "HFS", "BRAIN"
    common.ImageOrientationPatient = [float(x) for x in (*d[:, 0], *d[:, 1])]
    common.PixelSpacing = [float(sp[1]), float(sp[0])]
    common.SliceThickness = float(sp[2])
    common.SamplesPerPixel, common.PhotometricInterpretation = 1, "MONOCHROME2"
    common.Rows, common.Columns = u16.shape[1], u16.shape[2]
    common.BitsAllocated, common.BitsStored, common.HighBit, common.PixelRepresentation = 16, 12, 11, 0
    out = []
    for k in range(u16.shape[0]):
        ds = pydicom.Dataset(dict(common))
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(x) for x in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.PixelData = u16[k].tobytes()
        out.append(ds)
    return out


def encode_derived_series(flair_bl: sitk.Image, pseudonym: str) -> list[tuple]:
    """(dataset, file bytes) per slice of the derived series: pure-Python encoding (~10 ms a slice, ~3 s for a
    1 mm 3D rebaseline) that depends on nothing detection finds, so the pipeline builds it in a thread beside
    the network when the job owns more than one core; write_dicom_outputs only writes the bytes."""
    import io

    encoded = []
    for ds in _derived_series(sitk.Cast(flair_bl, sitk.sitkFloat32), pseudonym):
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        encoded.append((ds, buf.getvalue()))
    import highdicom  # noqa: F401  (~0.6 s: imported here, off the case's main thread, for the SEG and SR)

    return encoded


NO_SEG_REASON = "no new or enlarging lesion: a DICOM SEG with zero segments is not valid, so none is written"


def write_dicom_outputs(out_dir, labels: sitk.Image, flair_bl: sitk.Image, lesions: list[dict],
                        pseudonym: str = "pseudonymised", derived: list[tuple] | None = None) -> dict[str, Path]:
    """Write OUT/dicom/{derived/, seg.dcm, sr.dcm}; returns the paths. ``derived``: the derived series already
    encoded from ``flair_bl`` and ``pseudonym`` (encode_derived_series), else encoded here.

    With no lesion (a stable follow-up) no SEG is written (zero segments is invalid DICOM, see
    NO_SEG_REASON) and the SR records the finding "new or enlarging lesion: absent" instead.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    lab = sitk.GetArrayFromImage(labels).astype(np.int32)
    if lab.shape != sitk.GetArrayViewFromImage(flair_bl).shape:
        raise PmlsegError("write_dicom_outputs: label map and rebaseline FLAIR differ in size")
    ids = [int(d["lesion_id"]) for d in lesions]
    out = Path(out_dir) / "dicom"
    if derived is None:
        derived = encode_derived_series(flair_bl, pseudonym)
    if len(derived) != lab.shape[0] or str(derived[0][0].PatientID) != pseudonym:
        raise PmlsegError("write_dicom_outputs: the derived series was encoded for another image or pseudonym")
    source = [ds for ds, _ in derived]
    paths = {"derived": out / "derived"}
    for i, (_, data) in enumerate(derived):
        with atomic_path(paths["derived"] / f"slice{i + 1:04d}.dcm") as tmp:
            tmp.write_bytes(data)
    obs = hd.sr.ObserverContext(observer_type=codes.DCM.Device,
                                observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=generate_uid(), name="pmlseg"))
    if ids:
        seg = _segmentation(source, lab, ids)
        paths["seg"] = out / "seg.dcm"
        with atomic_path(paths["seg"]) as tmp:
            seg.save_as(tmp)
        groups = _lesion_groups(seg, source, lesions)
        evidence = source + [seg]
    else:
        groups = [hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="new or enlarging lesions"),
            finding_type=codes.SCT.Lesion,
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(hd.sr.CodedConcept(*NEW_LESION), codes.SCT.Absent)])]
        evidence = source
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=obs),
                                     procedure_reported=codes.LN.MRIBrain if hasattr(codes.LN, "MRIBrain") else
                                     hd.sr.CodedConcept("24590-2", "LN", "MR Brain"),
                                     imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(evidence=evidence, content=report[0], series_instance_uid=generate_uid(),
                                 series_number=902, sop_instance_uid=generate_uid(), instance_number=1,
                                 manufacturer=MANUFACTURER, series_description="pmlseg lesion measurements")
    paths["sr"] = out / "sr.dcm"
    with atomic_path(paths["sr"]) as tmp:
        sr.save_as(tmp)
    return paths


def _segmentation(source: list, lab: np.ndarray, ids: list[int]):
    """Binary SEG with one segment per lesion id (segment n = ids[n - 1])."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    algo = hd.AlgorithmIdentificationSequence(name="pmlseg", version="0.1", family=codes.cid7162.ArtificialIntelligence)
    descs = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=f"lesion {lid}", segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algo) for n, lid in enumerate(ids, start=1)]
    remap = np.zeros(lab.max() + 1, np.uint16)
    for n, lid in enumerate(ids, start=1):
        if lid <= lab.max():
            remap[lid] = n
    return hd.seg.Segmentation(
        source_images=source, pixel_array=remap[lab], segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs, series_instance_uid=generate_uid(), series_number=901,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="pmlseg", software_versions="0.1", device_serial_number="0",
        series_description="pmlseg new lesions")


def _lesion_groups(seg, source: list, lesions: list[dict]) -> list:
    """One TID 1411 volumetric measurement group per lesion, referencing its SEG segment."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    groups = []
    for n, d in enumerate(lesions, start=1):
        ref = hd.sr.ReferencedSegment(sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                                      segment_number=n, source_series=hd.sr.SourceSeriesForSegmentation(source[0].SeriesInstanceUID))
        meas = [hd.sr.Measurement(name=codes.SCT.Volume, value=float(d["volume_mm3"]), unit=codes.UCUM.CubicMillimeter),
                hd.sr.Measurement(name=codes.SCT.Diameter, value=float(d["max_diameter_mm"]), unit=codes.UCUM.Millimeter)]
        if "pml_score" in d:
            meas.append(hd.sr.Measurement(name=hd.sr.CodedConcept("pml_score", "99PMLSEG", "PML suspicion score"),
                                          value=float(d["pml_score"]), unit=hd.sr.CodedConcept("1", "UCUM", "no units")))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"lesion {d['lesion_id']}"),
            referenced_segment=ref, finding_type=codes.SCT.Lesion, measurements=meas))
    return groups
