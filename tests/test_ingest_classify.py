"""Series classification from header physics, for protocols of the main vendors (no I/O)."""

from __future__ import annotations

import pytest

from pmlseg.ingest.classify import classify, series_facts
from pmlseg.ingest.index import FileInfo

AX = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _series(n=3, bvals=None, iops=None, **kw):
    files = []
    for i in range(n):
        f = FileInfo(path=f"f{i}", modality="MR", image_type=("ORIGINAL", "PRIMARY", "M", "ND"), **kw)
        f.iops = [iops[i] if iops else AX]
        f.positions = [(0.0, 0.0, float(i))]
        f.bvals = [bvals[i] if bvals else None]
        files.append(f)
    return series_facts(files)


CASES = [
    # Siemens
    ("FLAIR", dict(manufacturer="SIEMENS", scanning_sequence=("SE", "IR"), sequence_variant=("SK", "SP", "MP"),
                   tr=5000, te=387, ti=1800, acq_type="3D", series_description="t2_space_dark-fluid_sag")),
    ("T1w", dict(manufacturer="SIEMENS", scanning_sequence=("GR", "IR"), sequence_variant=("SK", "SP", "MP"),
                 tr=2300, te=2.98, ti=900, acq_type="3D", series_description="t1_mprage_sag")),
    ("T1w-ce", dict(manufacturer="SIEMENS", scanning_sequence=("GR", "IR"), sequence_variant=("SK", "SP", "MP"),
                    tr=2300, te=2.98, ti=900, acq_type="3D", series_description="t1_mprage_sag",
                    contrast_agent="Gadovist 10 ml")),
    ("T2w", dict(manufacturer="SIEMENS", scanning_sequence=("SE",), sequence_variant=("SK", "SP"),
                 tr=6000, te=95, series_description="t2_tse_tra")),
    # GE
    ("FLAIR", dict(manufacturer="GE MEDICAL SYSTEMS", scanning_sequence=("SE", "IR"), sequence_variant=("SS",),
                   scan_options=("FAST_GEMS", "IR_GEMS"), tr=9000, te=120, ti=2400, series_description="Ax T2 FLAIR")),
    ("T1w-ce", dict(manufacturer="GE MEDICAL SYSTEMS", scanning_sequence=("GR",), sequence_variant=("SS", "SK"),
                    tr=8.2, te=3.2, acq_type="3D", series_description="Sag 3D BRAVO +C")),
    ("T1w", dict(manufacturer="GE MEDICAL SYSTEMS", scanning_sequence=("SE",), tr=500, te=14,
                 series_description="Ax T1 SE")),
    # Philips: TI often absent from classic headers; MP variant + short TE/TR is T1 TFE.
    ("T1w", dict(manufacturer="Philips", scanning_sequence=("GR",), sequence_variant=("MP",), tr=6.5, te=2.9,
                 acq_type="3D", series_description="3D T1 TFE")),
    ("T2w", dict(manufacturer="Philips", scanning_sequence=("SE",), tr=3000, te=80, series_description="T2W_TSE")),
    ("FLAIR", dict(manufacturer="Philips", scanning_sequence=("SE", "IR"), sequence_variant=("SK", "MP"),
                   tr=4800, te=340, ti=1650, acq_type="3D", series_description="3D_Brain_VIEW_FLAIR")),
    # Canon / Toshiba
    ("FLAIR", dict(manufacturer="CANON_MEC", scanning_sequence=("IR",), tr=10000, te=100, ti=2500,
                   series_description="FLAIR_AX")),
    ("T2w", dict(manufacturer="TOSHIBA_MEC", scanning_sequence=("SE",), tr=4500, te=105, series_description="T2_AX")),
    ("T1w-ce", dict(manufacturer="SIEMENS", scanning_sequence=("GR", "IR"), sequence_variant=("SK", "SP", "MP"),
                    tr=1900, te=2.5, ti=900, acq_type="3D", series_description="t1_mprage_sag_KM")),
    ("T1w", dict(manufacturer="SIEMENS", scanning_sequence=("GR", "IR"), sequence_variant=("SK", "SP", "MP"),
                 tr=1900, te=2.5, ti=900, acq_type="3D", series_description="t1_mprage_pre_contrast",
                 contrast_agent="")),
    # Physics wins over a misleading description.
    ("T2w", dict(manufacturer="SIEMENS", scanning_sequence=("SE",), tr=6000, te=95, series_description="t1 (mislabelled)")),
]


@pytest.mark.parametrize("expected, kw", CASES)
def test_anatomical_classes(expected, kw):
    kind, why = classify(_series(**kw))
    assert kind == expected, why


def test_dwi_by_bvalues_from_any_vendor_tag():
    kind, why = classify(_series(n=4, bvals=[0.0, 1000.0, 1000.0, 1000.0], manufacturer="Philips",
                                 scanning_sequence=("SE",), tr=4000, te=70, series_description="DWI"))
    assert kind == "dwi" and "1000" in why


@pytest.mark.parametrize("kw, words", [
    (dict(series_description="3-plane loc", tr=8, te=1.5), "localizer"),
    (dict(series_description="AAHead_Scout", tr=8, te=1.5), "localizer"),
    (dict(image_type=None, series_description="ADC map", tr=4000, te=70), "diffusion-derived"),
    (dict(series_description="pCASL perfusion", tr=4000, te=11), "perfusion"),
    (dict(series_description="t1 mpr cor", tr=2300, te=3, ti=900, derived=True), "derived"),
    (dict(series_description="Ax T2* GRE", scanning_sequence=("GR",), tr=650, te=20), "T2*"),
    (dict(series_description="SWI", scanning_sequence=("GR",), tr=28, te=20), "SWI"),
    (dict(series_description="ep2d b0 only", scanning_sequence=("EP",), tr=6000, te=90), "echo-planar"),
    (dict(series_description="t2_spc_ir_DIR_sag", scanning_sequence=("SE", "IR"), tr=7500, te=300, ti=3000),
     "description says"),
    (dict(series_description="mp2rage_INV1", scanning_sequence=("GR", "IR"), tr=5000, te=2.9, ti=700),
     "description says"),
])
def test_other_series_are_inventoried(kw, words):
    derived = kw.pop("derived", False)
    kw.pop("image_type", None)
    facts = _series(manufacturer="SIEMENS", **kw)
    if derived:
        facts.image_types = {"DERIVED", "SECONDARY", "MPR"}
    if "ADC" in kw["series_description"]:
        facts.image_types = {"DERIVED", "PRIMARY", "DIFFUSION", "ADC"}
    kind, why = classify(facts)
    assert kind == "other" and words.lower() in why.lower(), why


def test_three_orientations_is_a_localizer_whatever_its_name():
    iops = [AX, (1.0, 0.0, 0.0, 0.0, 0.0, -1.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)]
    kind, why = classify(_series(iops=iops, manufacturer="GE", scanning_sequence=("GR",), tr=5, te=1.4,
                                 series_description="Series 1"))
    assert (kind, why) == ("other", "localizer")


def test_secondary_capture_and_non_mr():
    facts = _series(tr=500, te=10, series_description="T1 screenshot")
    facts.first.sop_class = "1.2.840.10008.5.1.4.1.1.7"
    assert classify(facts)[0] == "other"
    facts = _series(tr=500, te=10, series_description="T1")
    facts.first.modality = "CT"
    assert classify(facts) == ("other", "modality CT (only MR is converted)")


def test_enhanced_acquisition_contrast_used_when_physics_is_missing():
    facts = _series(manufacturer="Philips", series_description="WIP sequence 7")
    facts.first.acq_contrast = "FLAIR"
    assert classify(facts)[0] == "FLAIR"
    facts.first.acq_contrast = "T2_STAR"
    assert classify(facts)[0] == "other"

