"""Multi-frame (enhanced / legacy-converted enhanced MR) input: per-frame functional groups are read.

The multi-frame files are built in the test with highdicom from the real classic series, so the
reference is dcm2niix on the classic files: the multi-frame conversion must give the same volume.
"""

from __future__ import annotations

import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from pmlseg.tables import read_tsv
from pmlseg.ingest.convert import dcm2niix_path
from pmlseg.ingest.index import read_header
from pmlseg.ingest.pipeline import ingest

pytestmark = [pytest.mark.shared, pytest.mark.filterwarnings("ignore")]


def _legacy_enhanced(folder, dst, number):
    from highdicom.legacy import LegacyConvertedEnhancedMRImage

    dss = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    img = LegacyConvertedEnhancedMRImage(dss, series_instance_uid=generate_uid(), series_number=number,
                                         sop_instance_uid=generate_uid(), instance_number=1)
    img.save_as(dst)
    return img


@pytest.fixture(scope="module")
def enhanced_run(shared_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("enh")
    src = base / "src"
    src.mkdir()
    _legacy_enhanced(shared_data / "dicom" / "ge-mr750-t1-mprage", src / "t1_multiframe", 5)
    dwi = _legacy_enhanced(shared_data / "dicom" / "ge-dwi-tensor", src / "dwi_multiframe", 1)
    # Per-frame MR Diffusion functional group, as an Enhanced MR scanner writes it.
    for item in dwi.PerFrameFunctionalGroupsSequence:
        un = item.UnassignedPerFrameConvertedAttributesSequence[0]
        d = Dataset()
        d.DiffusionBValue = float(un[(0x0043, 0x1039)].value[0])
        d.DiffusionDirectionality = "DIRECTIONAL" if d.DiffusionBValue > 0 else "NONE"
        del un[(0x0043, 0x1039)]  # only the functional group tells the b-value now
        item.MRDiffusionSequence = Sequence([d])
    dwi.save_as(src / "dwi_multiframe")
    ref = base / "ref"
    ref.mkdir()
    subprocess.run([dcm2niix_path(), "-z", "y", "-f", "ref", "-o", str(ref),
                    str(shared_data / "dicom" / "ge-mr750-t1-mprage")], check=True, capture_output=True)
    out = base / "out"
    ingest(src, out, show_progress=False)
    return src, out, ref, {r["series_number"]: r for r in read_tsv(out / "series.tsv")}


def test_header_flattened_from_functional_groups(enhanced_run):
    src, *_ = enhanced_run
    t1 = read_header(str(src / "t1_multiframe"))
    assert t1.enhanced and t1.frames == 130 and len(t1.positions) == 130
    assert t1.tr == pytest.approx(2217.66) and t1.ti == pytest.approx(1000) and t1.te == pytest.approx(3.172)
    dwi = read_header(str(src / "dwi_multiframe"))
    assert sorted(set(dwi.bvals)) == [0.0, 1000.0] and len(dwi.bvals) == 14


def test_multiframe_t1_equals_dcm2niix_on_classic(enhanced_run):
    _, out, ref, rows = enhanced_run
    row = rows["5"]
    assert row["classification"] == "T1w" and row["status"] == "converted", row["reason"]
    ours = nib.as_closest_canonical(nib.load(out / row["path"]))
    theirs = nib.as_closest_canonical(nib.load(ref / "ref.nii.gz"))
    assert ours.shape == theirs.shape
    assert np.abs(ours.affine - theirs.affine).max() < 0.01
    a, b = (np.asarray(x.dataobj, dtype=float).ravel() for x in (ours, theirs))
    assert np.corrcoef(a, b)[0, 1] >= 0.9999


def test_multiframe_dwi_classified_and_never_converted_without_bvals(enhanced_run):
    _, out, _, rows = enhanced_run
    row = rows["1"]
    assert row["classification"] == "dwi"
    if row["status"] == "converted":  # a dcm2niix that reads these b-values must write them out
        stem = out / row["path"][: -len(".nii.gz")]
        assert sorted(set(np.loadtxt(f"{stem}.bval"))) == [0.0, 1000.0]
    else:
        assert row["status"] == "failed" and "b-values" in row["reason"]
