"""The header indexer: its fast element walker must read exactly what pydicom reads."""

from __future__ import annotations

import dataclasses

import pytest

from pmlseg.ingest import index

pytestmark = pytest.mark.shared


def test_fast_reader_equals_pydicom_on_every_real_file(shared_data, monkeypatch):
    files = sorted(str(p) for p in (shared_data / "dicom").rglob("*") if p.is_file() and "LICENSE" not in p.name)
    assert len(files) >= 300
    fast = [index.read_header(f) for f in files]

    def refuse(*args, **kwargs):
        raise index._NeedPydicom("forced")

    monkeypatch.setattr(index, "read_header_fast", refuse)
    slow = [index.read_header(f) for f in files]
    for a, b in zip(fast, slow):
        assert isinstance(a, index.FileInfo) and isinstance(b, index.FileInfo), (a, b)
        assert dataclasses.asdict(a) == dataclasses.asdict(b)
    # The values that drive classification and geometry are really there.
    by_maker = {f.manufacturer: f for f in fast}
    assert set(by_maker) == {"GE MEDICAL SYSTEMS", "Philips"}
    assert all(f.positions[0] and f.iops[0] and f.rows and f.series_uid for f in fast)
    assert {b for f in fast for b in f.bvals if "DWI" in f.series_description} == {0.0, 1000.0}


def test_sniff_recognises_dicom_by_content():
    assert index.sniff(b"\0" * 128 + b"DICM" + b"\2\0\0\0UL\4\0") == 132
    assert index.sniff(b"\2\0\0\0UL\4\0\xc2\0\0\0") == 0  # no preamble, file meta first
    assert index.sniff(b"\x08\0\x05\0\x0a\0\0\0ISO_IR 100") == 0  # bare implicit VR data set
    assert index.sniff(b"%PDF-1.4 lorem ipsum") is None
    assert index.sniff(b"PACS export manifest\n") is None
    assert index.sniff(b"") is None


def test_truncated_pixel_data_detected(shared_data, tmp_path):
    src = sorted((shared_data / "dicom" / "ge-dwi-tensor").iterdir())[0]
    raw = src.read_bytes()
    for cut, words in [(len(raw) - 1, "truncated"), (len(raw) // 2, "truncated"), (2000, "truncated")]:
        p = tmp_path / f"cut{cut}"
        p.write_bytes(raw[:cut])
        res = index.read_header(str(p))
        assert isinstance(res, tuple) and words in res[1], (cut, res)
    whole = tmp_path / "whole"
    whole.write_bytes(raw)
    assert isinstance(index.read_header(str(whole)), index.FileInfo)
