"""DICOM SEG + SR (TID 1500) of the lesions: valid per dciodvfy (Debian dicom3tools), pseudonymous,
and the SEG decodes back to the lesion masks."""

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from test_characterise_pml import MS, PML  # noqa: E402
from test_report_html import NAME, _case  # noqa: E402

from pmlseg.characterise import score_pml
from pmlseg.report.dicom_outputs import write_dicom_outputs


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    labels, imgs = _case()
    out = tmp_path_factory.mktemp("dcm")
    return labels, write_dicom_outputs(out, labels, imgs["flair_bl"], score_pml([MS, PML]), "sub-001")


def test_seg_roundtrip_and_sr_content(outputs):
    labels, paths = outputs
    seg = hd.seg.segread(paths["seg"])
    assert seg.number_of_segments == 2
    lab = sitk.GetArrayFromImage(labels)
    src = sorted(paths["derived"].glob("*.dcm"))
    uids = [pydicom.dcmread(p).SOPInstanceUID for p in src]
    arr = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2])
    assert np.array_equal(arr[..., 0] > 0, lab == 1) and np.array_equal(arr[..., 1] > 0, lab == 2)
    sr = pydicom.dcmread(paths["sr"])
    text = str(sr)
    assert "Volume" in text and f"{MS['volume_mm3']:g}" in text
    for p in [paths["seg"], paths["sr"], src[0]]:
        assert NAME not in str(pydicom.dcmread(p))


def test_dciodvfy_finds_no_errors(outputs, dciodvfy):
    _, paths = outputs
    for p in (paths["seg"], paths["sr"], sorted(paths["derived"].glob("*.dcm"))[0]):
        res = subprocess.run([dciodvfy, str(p)], capture_output=True, text=True, timeout=60)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, f"{p.name}: {errors}"


def test_stable_followup_sr_records_no_new_lesion_and_no_seg(tmp_path):
    """No lesion: a SEG with zero segments is invalid DICOM, so none is written; the SR says 'absent'."""
    labels, imgs = _case()
    empty = sitk.Image(labels.GetSize(), labels.GetPixelID())
    empty.CopyInformation(labels)
    paths = write_dicom_outputs(tmp_path, empty, imgs["flair_bl"], [], "sub-001")
    assert "seg" not in paths and not (tmp_path / "dicom" / "seg.dcm").exists()
    sr = hd.sr.srread(paths["sr"])
    items = [(str(i.ConceptNameCodeSequence[0].CodeMeaning), str(i.ConceptCodeSequence[0].CodeMeaning))
             for i in sr.ContentSequence[-1].ContentSequence[0].ContentSequence if "ConceptCodeSequence" in i]
    assert ("New or enlarging lesion", "Absent") in items
    assert sr.PatientID == "sub-001" and NAME not in str(pydicom.dcmread(paths["sr"]))
    if shutil.which("dciodvfy"):  # dicom3tools: CI installs it (tests above require it)
        res = subprocess.run(["dciodvfy", str(paths["sr"])], capture_output=True, text=True, timeout=60)
        assert not [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]


def test_a_series_encoded_ahead_is_written_as_is_and_refused_for_another_pseudonym(tmp_path):
    """The pipeline encodes the derived series in a thread before detection ends: those bytes are what is written,
    and a series encoded for another pseudonym (or image) is refused rather than mislabelling the SEG/SR."""
    from pmlseg.errors import PmlsegError
    from pmlseg.report.dicom_outputs import encode_derived_series

    labels, imgs = _case()
    ahead = encode_derived_series(imgs["flair_bl"], "sub-001")
    paths = write_dicom_outputs(tmp_path / "a", labels, imgs["flair_bl"], score_pml([MS, PML]), "sub-001", ahead)
    written = sorted(paths["derived"].glob("*.dcm"))
    assert [p.read_bytes() for p in written] == [b for _, b in ahead]
    seg = hd.seg.segread(paths["seg"])
    assert {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence} <= \
        {ds.SOPInstanceUID for ds, _ in ahead}
    with pytest.raises(PmlsegError, match="another image or pseudonym"):
        write_dicom_outputs(tmp_path / "b", labels, imgs["flair_bl"], score_pml([MS, PML]), "sub-002", ahead)
