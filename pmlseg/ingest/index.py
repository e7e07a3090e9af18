"""Find DICOM files by content anywhere under a folder and read only the header fields ingest needs.

PACS exports use any layout and any (or no) extension, so files are recognised by the 'DICM'
magic (or a plausible preamble-less first element), never by name. Headers are parsed from the
first 64 KiB by a minimal element walker (classic little-endian files, ~10x faster than building a
pydicom Dataset, which alone would cap indexing near 900 files/s on two cores); multi-frame, big-endian
and odd files go to pydicom (stop_before_pixels, defer_size). Truncation is checked cheaply: an image
must end in a complete Pixel Data element.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

HEAD_BYTES = 65536
# SOP classes whose header keeps per-frame geometry/acquisition in functional groups.
ENHANCED_SOP = {
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
}
DICOMDIR_SOP = "1.2.840.10008.1.3.10"
_UNCOMPRESSED_TS = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", ""}
_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD",
        b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
        b"UL", b"UN", b"UR", b"US", b"UT", b"UV"}


@dataclass
class FileInfo:
    """Header facts of one DICOM image file (identifiers kept only for identity.tsv and scrubbing)."""

    path: str
    sop_uid: str = ""
    sop_class: str = ""
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    accession: str = ""
    institution: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    series_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    protocol_name: str = ""
    modality: str = ""
    manufacturer: str = ""
    image_type: tuple = ()
    scanning_sequence: tuple = ()
    sequence_variant: tuple = ()
    scan_options: tuple = ()
    sequence_name: str = ""
    acq_type: str = ""
    tr: float | None = None
    te: float | None = None
    ti: float | None = None
    flip: float | None = None
    echo_number: int | None = None
    contrast_agent: str = ""
    rows: int | None = None
    cols: int | None = None
    frames: int = 1
    bvals: list = field(default_factory=list)  # per frame; None where the header has none
    diffusion_directionality: str = ""
    iops: list = field(default_factory=list)  # per frame, 6 floats (or None)
    positions: list = field(default_factory=list)  # per frame, 3 floats (or None)
    pixel_spacing: tuple | None = None
    enhanced: bool = False
    acq_contrast: str = ""  # Enhanced MR AcquisitionContrast (T1, T2, FLAIR, DIFFUSION, ...)
    bare: bool = False  # no 128-byte preamble + 'DICM': dcm2niix needs a Part-10 copy


def _s(value) -> str:
    if value is None:
        return ""
    return str(value).strip()


def _f(value) -> float | None:
    try:
        if value is None or value == "":
            return None
        if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
            value = value[0] if len(value) else None
            if value is None:
                return None
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _multi(value) -> tuple:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v.strip().upper() for v in value.split("\\") if v.strip())
    try:
        return tuple(str(v).strip().upper() for v in value)
    except TypeError:
        return (str(value).strip().upper(),)


def sniff(head: bytes) -> int | None:
    """Offset where the DICOM stream starts (132 after a preamble, 0 without), or None if not DICOM."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return 132
    if len(head) >= 8:
        group, elem = struct.unpack("<HH", head[:4])
        if group in (0x0002, 0x0008) and elem < 0x0200:
            if head[4:6] in _VRS:
                return 0
            (length,) = struct.unpack("<I", head[4:8])
            if length < 1024:
                return 0
    return None


def _geti(ds, name):
    v = ds.get(name)
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _ge_bval(ds) -> float | None:
    """GE keeps the b-value as the first value of (0043,1039), sometimes offset by 1e9."""
    el = ds.get((0x0043, 0x1039))
    if el is None:
        return None
    try:
        v = el.value
        if isinstance(v, (bytes, bytearray)):
            v = v.decode("ascii", "ignore").split("\\")
        if isinstance(v, str):
            v = v.split("\\")
        first = float(v[0] if not isinstance(v, (int, float)) else v)
    except (TypeError, ValueError, IndexError):
        return None
    first = first % 1_000_000_000 if first >= 1_000_000_000 else first
    return first if 0 <= first < 100_000 else None


def _private_float(ds, tag) -> float | None:
    el = ds.get(tag)
    if el is None:
        return None
    v = el.value
    if isinstance(v, (bytes, bytearray)):
        if el.VR in ("UN", "OB") and len(v) == 4:
            return struct.unpack("<f", v)[0]
        if len(v) == 8 and el.VR in ("UN", "OB"):
            return struct.unpack("<d", v)[0]
        try:
            v = v.decode("ascii", "ignore").strip("\x00 ")
        except Exception:  # noqa: BLE001 - unknown private encodings are simply not used
            return None
    return _f(v)


def _classic_bval(ds, manufacturer: str | None = None) -> float | None:
    maker = (manufacturer if manufacturer is not None else _s(ds.get("Manufacturer"))).upper()
    for getter in (lambda: _f(ds.get("DiffusionBValue")),
                   lambda: _private_float(ds, (0x0019, 0x100C)) if "SIEMENS" in maker else None,
                   lambda: _ge_bval(ds) if "GE" in maker else None,
                   lambda: _private_float(ds, (0x2001, 0x1003)) if "PHILIPS" in maker else None):
        b = getter()
        if b is not None:
            return b
    return None


def _fg(ds, seq: str, attr: str, frame_item=None):
    """Look an attribute up in a per-frame item, then the shared functional groups."""
    for holder in (frame_item, _first(ds.get("SharedFunctionalGroupsSequence"))):
        if holder is None:
            continue
        sub = _first(holder.get(seq))
        if sub is not None and attr in sub:
            return sub.get(attr)
    return None


def _first(seq):
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError):
        return None


def _merged_view(ds):
    """Top level + legacy-converted 'unassigned' attributes (shared, then first frame) as one Dataset."""
    from pydicom.dataset import Dataset

    view = Dataset()
    for el in ds:
        if el.tag.group != 0x5200:
            view.add(el)
    holders = [_first(ds.get("SharedFunctionalGroupsSequence")), _first(ds.get("PerFrameFunctionalGroupsSequence"))]
    for holder in holders:
        item = _first(holder.get("UnassignedSharedConvertedAttributesSequence")) if holder is not None else None
        if item is None and holder is not None:
            item = _first(holder.get("UnassignedPerFrameConvertedAttributesSequence"))
        if item is None:
            continue
        for el in item:
            if el.tag not in view:
                view.add(el)
    return view


def _frame_unassigned(item):
    return _first(item.get("UnassignedPerFrameConvertedAttributesSequence")) if item is not None else None


def _fill_enhanced(info: FileInfo, ds) -> None:
    """Flatten Enhanced/Legacy-converted MR functional groups into the classic fields."""
    info.enhanced = True
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    first = _first(per_frame)
    echo_pulse = _s(ds.get("EchoPulseSequence")).upper()
    seq = []
    if echo_pulse in ("SPIN", "BOTH"):
        seq.append("SE")
    if echo_pulse in ("GRADIENT", "BOTH"):
        seq.append("GR")
    if _s(ds.get("EchoPlanarPulseSequence")).upper() == "YES":
        seq.append("EP")
    if _s(ds.get("InversionRecovery")).upper() == "YES":
        seq.append("IR")
    if not info.scanning_sequence:
        info.scanning_sequence = tuple(seq)
    if not info.sequence_name:
        info.sequence_name = _s(ds.get("PulseSequenceName"))
    if info.tr is None:
        info.tr = _f(_fg(ds, "MRTimingAndRelatedParametersSequence", "RepetitionTime", first))
    if info.flip is None:
        info.flip = _f(_fg(ds, "MRTimingAndRelatedParametersSequence", "FlipAngle", first))
    if info.te is None:
        info.te = _f(_fg(ds, "MREchoSequence", "EffectiveEchoTime", first))
    if info.ti is None:
        info.ti = _f(_fg(ds, "MRModifierSequence", "InversionTimes", first))
    if not info.image_type:
        info.image_type = _multi(_fg(ds, "MRImageFrameTypeSequence", "FrameType", first))
    info.acq_contrast = (_s(ds.get("AcquisitionContrast"))
                         or _s(_fg(ds, "MRImageFrameTypeSequence", "AcquisitionContrast", first))).upper()
    if not info.contrast_agent:
        agent = _first(ds.get("ContrastBolusAgentSequence"))
        if agent is not None:
            info.contrast_agent = _s(agent.get("CodeMeaning")) or "yes"
        elif _fg(ds, "ContrastBolusUsageSequence", "ContrastBolusAgentAdministered", first) == "YES":
            info.contrast_agent = "yes"
    if info.pixel_spacing is None:
        ps = _fg(ds, "PixelMeasuresSequence", "PixelSpacing", first)
        info.pixel_spacing = tuple(float(x) for x in ps) if ps else None
    items = list(per_frame) or [None]
    info.frames = max(int(ds.get("NumberOfFrames") or 1), 1)
    info.positions, info.iops, info.bvals = [], [], []
    for item in items:
        pos = _fg(ds, "PlanePositionSequence", "ImagePositionPatient", item)
        iop = _fg(ds, "PlaneOrientationSequence", "ImageOrientationPatient", item)
        info.positions.append(tuple(float(x) for x in pos) if pos else None)
        info.iops.append(tuple(float(x) for x in iop) if iop else None)
        bval = _f(_fg(ds, "MRDiffusionSequence", "DiffusionBValue", item))
        unassigned = _frame_unassigned(item)
        if bval is None and unassigned is not None:
            bval = _classic_bval(unassigned, info.manufacturer)
        info.bvals.append(bval)
        if not info.diffusion_directionality:
            info.diffusion_directionality = _s(_fg(ds, "MRDiffusionSequence", "DiffusionDirectionality", item)).upper()


def _info_from_dataset(path: str, ds) -> FileInfo:
    enhanced = not isinstance(ds, _FastDS) and (
        _s(ds.get("SOPClassUID")) in ENHANCED_SOP or "PerFrameFunctionalGroupsSequence" in ds)
    full = ds
    if enhanced:
        ds = _merged_view(full)
    info = FileInfo(path=path)
    info.sop_class = _s(ds.get("SOPClassUID"))
    info.sop_uid = _s(ds.get("SOPInstanceUID"))
    info.patient_id = _s(ds.get("PatientID"))
    info.patient_name = _s(ds.get("PatientName"))
    info.birth_date = _s(ds.get("PatientBirthDate"))
    info.accession = _s(ds.get("AccessionNumber"))
    info.institution = _s(ds.get("InstitutionName"))
    info.study_uid = _s(ds.get("StudyInstanceUID"))
    info.study_date = _s(ds.get("StudyDate"))
    info.study_time = _s(ds.get("StudyTime"))
    info.series_uid = _s(ds.get("SeriesInstanceUID"))
    info.series_number = _geti(ds, "SeriesNumber")
    info.series_description = _s(ds.get("SeriesDescription"))
    info.protocol_name = _s(ds.get("ProtocolName"))
    info.modality = _s(ds.get("Modality")).upper()
    info.manufacturer = _s(ds.get("Manufacturer"))
    info.image_type = _multi(ds.get("ImageType"))
    info.scanning_sequence = _multi(ds.get("ScanningSequence"))
    info.sequence_variant = _multi(ds.get("SequenceVariant"))
    info.scan_options = _multi(ds.get("ScanOptions"))
    info.sequence_name = _s(ds.get("SequenceName"))
    info.acq_type = _s(ds.get("MRAcquisitionType")).upper()
    info.tr = _f(ds.get("RepetitionTime"))
    info.te = _f(ds.get("EchoTime"))
    info.ti = _f(ds.get("InversionTime"))
    info.flip = _f(ds.get("FlipAngle"))
    info.echo_number = _geti(ds, "EchoNumbers")
    info.contrast_agent = _s(ds.get("ContrastBolusAgent"))
    info.rows = _geti(ds, "Rows")
    info.cols = _geti(ds, "Columns")
    ps = ds.get("PixelSpacing")
    try:
        info.pixel_spacing = tuple(float(x) for x in ps) if ps else None
    except (TypeError, ValueError):
        info.pixel_spacing = None
    if enhanced:
        _fill_enhanced(info, full)
    else:
        info.frames = max(_geti(ds, "NumberOfFrames") or 1, 1)
        iop, ipp = ds.get("ImageOrientationPatient"), ds.get("ImagePositionPatient")
        try:
            info.iops = [tuple(float(x) for x in iop) if iop else None]
            info.positions = [tuple(float(x) for x in ipp) if ipp else None]
        except (TypeError, ValueError):
            info.iops, info.positions = [None], [None]
        info.bvals = [_classic_bval(ds)]
    return info


def _pixel_bytes(ds) -> int | None:
    try:
        n = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * int(ds.get("NumberOfFrames") or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None
    nbytes = (n * bits + 7) // 8
    return nbytes + (nbytes & 1)


def _pixel_element_ok(fp, size: int, ds, explicit: bool) -> str | None:
    """None if the file ends in a complete Pixel Data element, else why not (checked from the end)."""
    ts = _s(getattr(ds, "file_meta", {}).get("TransferSyntaxUID") if hasattr(ds, "file_meta") else "")
    if ts and ts not in _UNCOMPRESSED_TS:
        fp.seek(max(size - 8, 0))
        if fp.read(8) == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00":
            return None
        return "truncated: compressed pixel data has no end marker"
    nbytes = _pixel_bytes(ds)
    if nbytes is None:
        return "no image pixel description (Rows/Columns/BitsAllocated)"
    for hdr in ((12, 8) if explicit else (8, 12)):
        start = size - nbytes - hdr
        if start < 0:
            continue
        fp.seek(start)
        raw = fp.read(hdr)
        if raw[:4] in (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"):  # little / big endian
            return None
    return None if _pixel_data_complete_slow(fp, size, nbytes) else "truncated: pixel data shorter than Rows x Columns x frames"


def _pixel_data_complete_slow(fp, size: int, nbytes: int) -> bool:
    """Fallback when Pixel Data is not the last element: parse up to it and check its length fits."""
    import pydicom

    fp.seek(0)
    try:
        pydicom.dcmread(fp, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001
        return False
    pos = fp.tell()
    fp.seek(pos)
    raw = fp.read(12)
    if raw[:4] != b"\xe0\x7f\x10\x00":
        return False
    if raw[4:6] in (b"OB", b"OW"):
        (length,) = struct.unpack("<I", raw[8:12])
        hdr = 12
    else:
        (length,) = struct.unpack("<I", raw[4:8])
        hdr = 8
    if length == 0xFFFFFFFF:
        return True
    return pos + hdr + min(length, nbytes) <= size


def read_header(path: str) -> FileInfo | tuple[str, str]:
    """FileInfo for a DICOM image, or (path, reason) for anything ingest must skip."""
    import pydicom

    try:
        size = os.path.getsize(path)
        if size == 0:
            return path, "empty file"
        with open(path, "rb") as fp:
            head = fp.read(HEAD_BYTES)
            start = sniff(head)
            if start is None:
                return path, "not a DICOM file"
            try:
                return _mark_bare(read_header_fast(path, head, start, size), head, start)
            except _NeedPydicom as exc:
                if str(exc) == "dicomdir":
                    return path, "DICOMDIR (index file, no image)"
            except (struct.error, IndexError, ValueError):
                pass
            # Generic path (multi-frame, big endian, deflated, odd files): pydicom, header only.
            fp.seek(0)
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True, defer_size=4096)
            except Exception as exc:  # noqa: BLE001
                return path, f"unreadable DICOM header ({type(exc).__name__})"
            sop_class = _s(ds.get("SOPClassUID")) or _s(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID"))
            if sop_class == DICOMDIR_SOP or "DirectoryRecordSequence" in ds:
                return path, "DICOMDIR (index file, no image)"
            if "SeriesInstanceUID" not in ds or "Rows" not in ds:
                if "StudyInstanceUID" not in ds and "SOPClassUID" not in ds:
                    return path, "truncated or unreadable DICOM header"
                return path, "truncated or not an image (no Rows/SeriesInstanceUID)"
            encoding = getattr(ds, "original_encoding", None) or (False, True)
            problem = _pixel_element_ok(fp, size, ds, explicit=not encoding[0])
            if problem:
                return path, problem
        return _mark_bare(_info_from_dataset(path, ds), head, start)
    except OSError as exc:
        return path, f"cannot read ({exc.strerror or type(exc).__name__})"
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop the index
        return path, f"unreadable DICOM ({type(exc).__name__})"


def quiet_pydicom() -> None:
    """pydicom's validation warnings quote tag values (names, birth dates): never let them reach the log."""
    import logging
    import warnings

    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def _mark_bare(res, head: bytes, start: int):
    if isinstance(res, FileInfo) and start == 0:
        res.bare = True
    return res


def find_files(src: Path, exclude: Path | None = None) -> list[str]:
    """Every regular file under ``src`` (any depth, any name), sorted; ``exclude`` (e.g. OUT) is not entered."""
    out = []
    skip = os.path.realpath(exclude) if exclude is not None else None
    for root, dirs, files in os.walk(src, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".pmlseg-tmp")
                         and (skip is None or os.path.realpath(os.path.join(root, d)) != skip))
        for name in files:
            p = os.path.join(root, name)
            if os.path.isfile(p):
                out.append(p)
    out.sort()
    return out


def index_tree(src: Path, workers: int = 2, show_progress: bool = True, exclude: Path | None = None):
    """Read every file's header in parallel: (list of FileInfo, list of (path, reason) skipped)."""
    from pmlseg.logs import progress

    quiet_pydicom()
    paths = find_files(src, exclude)
    infos: list[FileInfo] = []
    skipped: list[tuple[str, str]] = []
    if not paths:
        return infos, skipped
    if workers <= 1 or len(paths) < 64:
        results = map(read_header, paths)
        pool = None
    else:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(workers)
        results = pool.imap(read_header, paths, chunksize=32)
    try:
        for res in progress(results, total=len(paths), desc="index", unit="file", disable=None if show_progress else True):
            if isinstance(res, FileInfo):
                infos.append(res)
            else:
                skipped.append(res)
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return infos, skipped


# ---------------------------------------------------------------------------------------------
# Fast path: a minimal reader for little-endian classic images. pydicom needs ~2 ms per file to
# build a full Dataset; this walks the element headers, decodes only the ~40 tags ingest uses and
# stops at Pixel Data (~0.2 ms). Anything unusual raises _NeedPydicom and pydicom reads the file.
# ---------------------------------------------------------------------------------------------

class _NeedPydicom(Exception):
    pass


_WANTED = {
    0x00080005: ("SpecificCharacterSet", "s"), 0x00080008: ("ImageType", "s"), 0x00080016: ("SOPClassUID", "s"),
    0x00080018: ("SOPInstanceUID", "s"), 0x00080020: ("StudyDate", "s"), 0x00080030: ("StudyTime", "s"),
    0x00080050: ("AccessionNumber", "s"), 0x00080060: ("Modality", "s"), 0x00080070: ("Manufacturer", "s"),
    0x00080080: ("InstitutionName", "s"), 0x0008103E: ("SeriesDescription", "s"),
    0x00100010: ("PatientName", "s"), 0x00100020: ("PatientID", "s"), 0x00100030: ("PatientBirthDate", "s"),
    0x00180010: ("ContrastBolusAgent", "s"), 0x00180020: ("ScanningSequence", "s"),
    0x00180021: ("SequenceVariant", "s"), 0x00180022: ("ScanOptions", "s"), 0x00180023: ("MRAcquisitionType", "s"),
    0x00180024: ("SequenceName", "s"), 0x00180080: ("RepetitionTime", "s"), 0x00180081: ("EchoTime", "s"),
    0x00180082: ("InversionTime", "s"), 0x00180086: ("EchoNumbers", "s"), 0x00181030: ("ProtocolName", "s"),
    0x00181314: ("FlipAngle", "s"), 0x00189087: ("DiffusionBValue", "FD"),
    0x0019100C: ((0x0019, 0x100C), "s"), 0x0020000D: ("StudyInstanceUID", "s"),
    0x0020000E: ("SeriesInstanceUID", "s"), 0x00200011: ("SeriesNumber", "s"),
    0x00200032: ("ImagePositionPatient", "s"), 0x00200037: ("ImageOrientationPatient", "s"),
    0x00280002: ("SamplesPerPixel", "US"), 0x00280008: ("NumberOfFrames", "s"), 0x00280010: ("Rows", "US"),
    0x00280011: ("Columns", "US"), 0x00280030: ("PixelSpacing", "s"), 0x00280100: ("BitsAllocated", "US"),
    0x00431039: ((0x0043, 0x1039), "s"), 0x20011003: ((0x2001, 0x1003), "FL"),
}
_LONG_VR = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
_STOP_TAGS = {0x00041220: "dicomdir", 0x52009229: "enhanced", 0x52009230: "enhanced"}
_U16 = struct.Struct("<HH")
_U32 = struct.Struct("<I")
_HDR_EXPL = struct.Struct("<HH2sH")


class _Elem:
    __slots__ = ("value", "VR")

    def __init__(self, value, vr):
        self.value, self.VR = value, vr


class _FastDS(dict):
    """Just enough of pydicom's Dataset interface (``get``/``in``) for _info_from_dataset."""

    file_meta: dict = {}


def _skip_undefined(buf: bytes, pos: int, explicit: bool) -> int:
    """Position after an undefined-length sequence starting at ``pos`` (its items' contents)."""
    n = len(buf)
    while True:
        if pos + 8 > n:
            raise _NeedPydicom("buffer")
        group, elem = _U16.unpack_from(buf, pos)
        (length,) = _U32.unpack_from(buf, pos + 4)
        pos += 8
        if group != 0xFFFE:
            raise _NeedPydicom("bad item")
        if elem == 0xE0DD:  # sequence delimiter
            return pos
        if elem == 0xE000:
            if length != 0xFFFFFFFF:
                pos += length
                continue
            pos = _walk(buf, pos, explicit, None, nested=True)
            continue
        raise _NeedPydicom("bad item tag")


def _walk(buf: bytes, pos: int, explicit: bool, out: dict | None, nested: bool = False) -> int:
    """Walk elements from ``pos``; fill ``out`` with wanted raw values; return Pixel Data's position."""
    n = len(buf)
    while True:
        if pos + 8 > n:
            if nested or pos < n:
                raise _NeedPydicom("buffer")
            return -1  # clean end of data set, no pixel data
        group, elem = _U16.unpack_from(buf, pos)
        tag = (group << 16) | elem
        if nested and group == 0xFFFE:
            pos += 8
            if elem == 0xE00D:
                return pos
            raise _NeedPydicom("unexpected delimiter")
        if group == 0x7FE0 and elem == 0x0010 and not nested:
            return pos
        if explicit and not (group == 0xFFFE):
            vr = buf[pos + 4:pos + 6]
            if vr in _LONG_VR:
                (length,) = _U32.unpack_from(buf, pos + 8)
                vpos = pos + 12
            elif vr in _VRS:
                length = buf[pos + 6] | (buf[pos + 7] << 8)
                vpos = pos + 8
            else:
                raise _NeedPydicom("unknown VR")
        else:
            vr = None
            (length,) = _U32.unpack_from(buf, pos + 4)
            vpos = pos + 8
        if not nested and tag in _STOP_TAGS:
            raise _NeedPydicom(_STOP_TAGS[tag])
        if length == 0xFFFFFFFF:
            if vr is not None and vr not in (b"SQ", b"UN"):
                raise _NeedPydicom("undefined length")
            if vr == b"UN":
                raise _NeedPydicom("UN sequence")
            pos = _skip_undefined(buf, vpos, explicit)
            continue
        if out is not None and tag in _WANTED:
            if vpos + length > n:
                raise _NeedPydicom("buffer")
            out[tag] = (vr, buf[vpos:vpos + length])
        pos = vpos + length


def _fast_dataset(buf: bytes, start: int, size: int) -> tuple[_FastDS, int, int, int]:
    """(dataset, Pixel Data position, its header size, its length or -1) for a classic little-endian file."""
    pos = start
    ts = ""
    # File meta group: always explicit VR little endian.
    while pos + 8 <= len(buf) and _U16.unpack_from(buf, pos)[0] == 0x0002:
        group, elem = _U16.unpack_from(buf, pos)
        vr = buf[pos + 4:pos + 6]
        if vr in _LONG_VR:
            (length,) = _U32.unpack_from(buf, pos + 8)
            vpos = pos + 12
        else:
            length = buf[pos + 6] | (buf[pos + 7] << 8)
            vpos = pos + 8
        if elem == 0x0010:
            ts = buf[vpos:vpos + length].decode("ascii", "replace").strip("\x00 ")
        pos = vpos + length
    if ts not in _UNCOMPRESSED_TS and ts not in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.57",
                                                  "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.90",
                                                  "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.80",
                                                  "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.5"):
        raise _NeedPydicom("transfer syntax")
    if ts == "1.2.840.10008.1.2.2":
        raise _NeedPydicom("big endian")
    if ts:
        explicit = ts != "1.2.840.10008.1.2"
    else:  # no meta: guess from the first element as pydicom does
        explicit = buf[pos + 4:pos + 6] in _VRS
    raw: dict = {}
    pix = _walk(buf, pos, explicit, raw)
    ds = _FastDS()
    ds.file_meta = {"TransferSyntaxUID": ts}
    charset = raw.get(0x00080005, (None, b""))[1].decode("ascii", "ignore")
    codec = "utf-8" if "192" in charset else "latin-1"
    for tag, (vr, value) in raw.items():
        name, kind = _WANTED[tag]
        if kind == "US":
            ds[name] = _U16.unpack_from(value + b"\0\0\0\0", 0)[0]
        elif kind == "FD" and len(value) == 8:
            ds[name] = struct.unpack("<d", value)[0]
        elif kind == "FL" and len(value) == 4:
            ds[name] = _Elem(struct.unpack("<f", value)[0], "FL")
        elif kind in ("FD", "FL"):
            continue
        else:
            text = value.decode(codec, "replace").rstrip("\x00 ").strip()
            if isinstance(name, tuple):
                ds[name] = _Elem(text.split("\\") if "\\" in text else text, "IS")
            else:
                ds[name] = text.split("\\") if "\\" in text else text
    if pix < 0:
        return ds, -1, 0, 0
    if explicit:
        vr = buf[pix + 4:pix + 6]
        hdr = 12 if vr in _LONG_VR else 8
        (length,) = _U32.unpack_from(buf, pix + 8) if hdr == 12 else (buf[pix + 6] | (buf[pix + 7] << 8),)
    else:
        hdr = 8
        (length,) = _U32.unpack_from(buf, pix + 4)
    return ds, pix, hdr, (length if length != 0xFFFFFFFF else -1)


def read_header_fast(path: str, head: bytes, start: int, size: int) -> FileInfo | tuple[str, str]:
    """Fast header read; raises _NeedPydicom when the generic reader must take over."""
    buf = head
    while True:
        try:
            ds, pix, hdr, length = _fast_dataset(buf, start, size)
            break
        except _NeedPydicom as exc:
            if str(exc) == "buffer" and len(buf) >= size:
                return path, "truncated: file ends inside the header"
            if str(exc) != "buffer" or len(buf) >= (4 << 20):
                raise
            with open(path, "rb") as fp:
                buf = fp.read(min(size, len(buf) * 8))
    if "SeriesInstanceUID" not in ds or "Rows" not in ds:
        raise _NeedPydicom("odd file")
    try:
        if int(ds.get("NumberOfFrames") or 1) > 1 or ds.get("SOPClassUID") in ENHANCED_SOP:
            raise _NeedPydicom("multi-frame")
    except ValueError:
        raise _NeedPydicom("odd frames") from None
    if pix < 0:
        return path, "truncated: no pixel data"
    if length < 0:  # encapsulated: must end with a sequence delimiter
        with open(path, "rb") as fp:
            fp.seek(max(size - 8, 0))
            if fp.read(8) != b"\xfe\xff\xdd\xe0\x00\x00\x00\x00":
                return path, "truncated: compressed pixel data has no end marker"
    else:
        need = _pixel_bytes_fast(ds)
        if need is None:
            raise _NeedPydicom("no pixel description")
        if pix + hdr + min(length, need) > size or length < need - 1:
            return path, "truncated: pixel data shorter than Rows x Columns"
    return _info_from_dataset(path, ds)


def _pixel_bytes_fast(ds) -> int | None:
    try:
        n = int(ds["Rows"]) * int(ds["Columns"]) * int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds["BitsAllocated"])
    except (KeyError, TypeError, ValueError):
        return None
    return (n * bits + 7) // 8
