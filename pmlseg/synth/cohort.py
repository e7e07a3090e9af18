"""Generate a whole synthetic cohort: DICOM studies per visit plus ground truth beside them.

Layout of ``OUT``::

    dicom/<study folder>/<series folder>/<files>          PACS-export-like, vendor-specific names
    clinical.tsv                                           the clinic's table (by PatientID): natalizumab start,
                                                           anti-JCV index, prior immunosuppressant, for the
                                                           PML risk and MRI schedule (`pmlseg run --config clinical=`)
    ground_truth/cohort.tsv                                one row per visit (fake IDs, dates, protocols, counts)
    ground_truth/series.tsv                                one row per series folder: expected = FLAIR, T1w,
                                                           T2w, dwi, skip:localizer or skip:derived
    ground_truth/<PatientID>/visit-<k>/baseline_to_this_visit.tfm   (k > 1) true baseline->visit mapping of
                                                           scanner points (fixed = visit 1, moving = visit k)
    ground_truth/<PatientID>/visit-<k>/lesions.nii.gz      lesion ids on the FLAIR grid (as dcm2niix writes it)
    ground_truth/<PatientID>/visit-<k>/new_or_enlarging.nii.gz   binary, vs visit k-1 (empty at visit 1):
                                                           whole new lesions + the grown part of enlarging ones
    ground_truth/<PatientID>/visit-<k>/lesions.tsv         id, kind, location, status, volume, centroid
    ground_truth/<PatientID>/visit-<k>/mni/{lesions,new_or_enlarging}.nii.gz   same truth in template space
    ground_truth/<PatientID>/visit-<k>/mni/scanner_to_mni.tfm   this visit's head pose: maps a scanner (LPS)
                                                           point to the template point (project convention:
                                                           fixed = this visit, moving = MNI)

Lesion ids are stable across a patient's visits. lesions.tsv centroids are scanner RAS mm (the
space of the dcm2niix NIfTI); volume_mm3 is the soft template volume, volume_mm3_flair_grid the
voxel count of the label on the FLAIR grid times the voxel volume.

Everything is derived from ``seed`` (numpy Generators seeded with (seed, patient, visit)), so a
cohort is reproducible bit for bit in its pixel data and truth. Exactly one patient, number
(seed % N) + 1, gets the PML-like lesion; vendors rotate SIEMENS / GE / Philips across patients.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pmlseg.errors import PmlsegError

log = logging.getLogger(__name__)

#: stored pixel = intensity * PIXEL_SCALE (WM ~ 500-1200 on every contrast, all below 12 bits)
PIXEL_SCALE = 1500.0


def clinical_row(p: int, pid: str, pml: bool, baseline_date: dt.date) -> dict:
    """A plausible clinical row, fixed per patient (no random draw, so the images do not change): the PML
    patient is high risk (anti-JCV index 2.4, 4 years of natalizumab at the rebaseline); the others rotate
    through anti-JCV negative, low index and prior immunosuppressant, so the demo shows each risk stratum."""
    kinds = [("negative", "no", 30), ("0.6", "no", 20), ("1.2", "yes", 36)]
    jcv, prior, months = ("2.4", "no", 48) if pml else kinds[p % len(kinds)]
    start = baseline_date - dt.timedelta(days=round(months * 30.44))
    return {"patient_id": pid, "natalizumab_start": start.isoformat(), "jcv_index": jcv,
            "prior_immunosuppressant": prior}


@dataclass
class CohortSummary:
    """What generate_cohort wrote: the folder, its size and the cohort.tsv rows."""

    out: Path
    patients: int
    visits: int
    files: int
    rows: list[dict]


def _common_elements(p: int, v: int, seed: int, vendor: str, model: tuple, date: dt.date, birth: dt.date,
                     sex: str, rng: np.random.Generator) -> dict:
    from pmlseg.synth.dicom import uid

    name, field_t, software = model
    age = (date - birth).days // 365
    return {
        "PatientName": f"SYNTH^DEMO{p + 1:02d}", "PatientID": f"SYN-{p + 1:04d}",
        "PatientBirthDate": birth.strftime("%Y%m%d"), "PatientSex": sex, "PatientAge": f"{age:03d}Y",
        "PatientWeight": f"{60 + (p * 7) % 30}", "PatientPosition": "HFS", "BodyPartExamined": "BRAIN",
        "AccessionNumber": f"SYNACC{seed % 1000:03d}{p + 1:03d}{v + 1:02d}",
        "StudyID": f"{1000 + 10 * p + v}", "StudyDescription": "MRI BRAIN MS SURVEILLANCE",
        "StudyInstanceUID": uid("study", seed, p, v), "FrameOfReferenceUID": uid("for", seed, p, v),
        "StudyDate": date.strftime("%Y%m%d"), "SeriesDate": date.strftime("%Y%m%d"),
        "AcquisitionDate": date.strftime("%Y%m%d"), "ContentDate": date.strftime("%Y%m%d"),
        "StudyTime": f"{8 + int(rng.integers(10)):02d}{int(rng.integers(60)):02d}00",
        "ReferringPhysicianName": "FAKE^REFERRER", "OperatorsName": "SYNTH^TECH",
        "InstitutionName": "Synthetic Hospital", "InstitutionAddress": "1 Nowhere Street, Synthville",
        "StationName": f"SYNTHMR{p + 1:02d}", "Manufacturer": vendor, "ManufacturerModelName": name,
        "MagneticFieldStrength": f"{field_t:g}", "ImagingFrequency": f"{42.577478 * field_t:.6f}",
        "ImagedNucleus": "1H", "SoftwareVersions": software, "DeviceSerialNumber": f"SYN{p + 1:05d}",
        "ReceiveCoilName": "Head_32" if field_t > 2 else "HeadNeck_20",
    }


def _series_row(pid: str, v: int, folder: Path, el: dict, expected: str, protocol: str, n_files: int) -> dict:
    """One row of series.tsv: what ingest should make of this series folder."""
    return {"patient_id": pid, "visit": v + 1, "series_folder": str(folder), "series_number": el["SeriesNumber"],
            "series_uid": el["SeriesInstanceUID"], "description": el["SeriesDescription"], "expected": expected,
            "protocol": protocol, "n_files": n_files}


def visit_to_visit(fixed_pose, moving_pose):
    """Affine mapping a point of the FIXED visit's scanner space to the MOVING visit's (both LPS).

    Each pose maps scanner -> template, so the result is inverse(moving) o fixed: the transform a
    perfect "register FIXED MOVING" returns under the project's convention.
    """
    import SimpleITK as sitk

    def mat(t):
        a = np.asarray(t.GetMatrix()).reshape(3, 3)
        c, tr = np.asarray(t.GetCenter()), np.asarray(t.GetTranslation())
        return a, c + tr - a @ c

    a_f, b_f = mat(fixed_pose)
    a_m, b_m = mat(moving_pose)
    inv = np.linalg.inv(a_m)
    out = sitk.AffineTransform(3)
    out.SetMatrix(tuple((inv @ a_f).ravel()))
    out.SetTranslation(tuple(inv @ (b_f - b_m)))
    return out


def _series_times(study_time: str, series_no: int) -> dict:
    """SeriesTime/AcquisitionTime/ContentTime about 4 minutes per series after the study start."""
    t = dt.datetime.strptime(study_time, "%H%M%S") + dt.timedelta(minutes=4 * series_no, seconds=7 * series_no)
    s = t.strftime("%H%M%S.000000")
    return {"SeriesTime": s, "AcquisitionTime": s, "ContentTime": s}


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PmlsegError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise PmlsegError(f"{out}: folder exists and is not empty (use --force to replace it)")
        if not (out / "ground_truth" / "cohort.tsv").is_file():
            # --force deletes OUT: only ever a previous synthetic cohort, never an arbitrary folder
            raise PmlsegError(f"{out}: not a previous `pmlseg synth` output (no ground_truth/cohort.tsv); "
                              "--force only replaces those, remove it yourself")


class _VisitWriter:
    """Writes one visit: its DICOM study (series by series) and its ground truth."""

    def __init__(self, tmp: Path, seed: int, p: int, v: int, vendor: str, tissues, maps, common: dict,
                 rng: np.random.Generator):
        from pmlseg.synth import acquisition as acq
        from pmlseg.synth import protocols

        self.tmp, self.seed, self.p, self.v, self.vendor = tmp, seed, p, v, vendor
        self.tissues, self.maps, self.common, self.rng = tissues, maps, common, rng
        self.pid = common["PatientID"]
        self.motion = acq.random_motion(rng)
        # FLAIR alternates 3D sagittal 1 mm / 2D axial thick-slice between visits (a realistic stress)
        self.specs = protocols.visit_series(vendor, rng, flair_3d=(p + v) % 2 == 0)
        self.study_dir = tmp / "dicom" / "".join(rng.choice(list("0123456789ABCDEF"), 8))
        while self.study_dir.exists():  # PACS-like random folder names; never share one between studies
            self.study_dir = tmp / "dicom" / "".join(rng.choice(list("0123456789ABCDEF"), 8))
        self.center = acq.HEAD_CENTER_LPS + rng.uniform(-5, 5, 3)
        self.namer = protocols.file_namer(vendor)
        self.slope = 2.0 if vendor == "Philips" else 1.0  # Philips exports usually carry a RescaleSlope
        self.series_no = 0
        self.series_rows: list[dict] = []
        self.n_files = 0
        self.flair = None  # (grid, SeriesSpec, SeriesInstanceUID) of the main FLAIR
        self._rendered: dict[str, object] = {}

    def image_of(self, modality: str):
        """This visit's template-space contrast as a SimpleITK image (rendered once, resampled often)."""
        from pmlseg.synth import contrast
        from pmlseg.synth.anatomy import to_sitk

        if modality not in self._rendered:
            arr = contrast.render(self.tissues, self.maps, modality, self.rng)
            self._rendered[modality] = to_sitk(arr, self.tissues.affine)
        return self._rendered[modality]

    def _write(self, volumes: list, elements: dict, expected: str, protocol: str) -> None:
        from pmlseg.synth import protocols
        from pmlseg.synth.dicom import write_series

        folder = self.study_dir / protocols.series_folder(self.vendor, elements["SeriesNumber"],
                                                          elements["SeriesDescription"])
        written = write_series(volumes, folder, self.common, elements, self.namer, PIXEL_SCALE, self.slope,
                               ("img", self.seed, self.p, self.v, elements["SeriesNumber"]))
        self.n_files += len(written)
        self.series_rows.append(_series_row(self.pid, self.v, folder.relative_to(self.tmp), elements, expected,
                                            protocol, len(written)))

    def _next_series(self) -> dict:
        from pmlseg.synth.dicom import uid

        self.series_no += 1
        return {"SeriesNumber": self.series_no,
                "SeriesInstanceUID": uid("series", self.seed, self.p, self.v, self.series_no),
                **_series_times(self.common["StudyTime"], self.series_no)}

    def localizer(self) -> None:
        """Three-plane localizer in one series (ImageType LOCALIZER): ingest must not convert it."""
        from pmlseg.synth import acquisition as acq
        from pmlseg.synth import protocols
        from pmlseg.synth.dicom import Volume

        vols = []
        for orient in ("sagittal", "coronal", "axial"):
            g = acq.make_grid(orient, (256, 256, 1), (1.0, 1.0, 8.0), center=self.center)
            vols.append(Volume(acq.acquire(self.image_of("T1w"), self.tissues, g, self.motion, None, 0.02, self.rng)))
        name = protocols.series_name(self.vendor, "LOCALIZER")
        el = {"SeriesDescription": name, "ProtocolName": name,
              "ImageType": protocols.image_type(self.vendor, "LOCALIZER"), "ScanningSequence": "GR",
              "SequenceVariant": "SP", "ScanOptions": "", "MRAcquisitionType": "2D", "RepetitionTime": "8.6",
              "EchoTime": "4", "FlipAngle": "20", "SliceThickness": 8.0, **self._next_series()}
        self._write(vols, el, "skip:localizer", "3-plane")

    def series(self, spec) -> None:
        """One clinical series on its own grid, with this visit's pose, a bias field and noise."""
        import SimpleITK as sitk

        from pmlseg.synth import acquisition as acq
        from pmlseg.synth import contrast, protocols
        from pmlseg.synth.dicom import Volume

        grid = acq.make_grid(spec.orientation, spec.size, spec.spacing, center=self.center, tilt_deg=spec.tilt_deg)
        bias = acq.bias_field(grid, self.rng)
        el = dict(spec.elements, AcquisitionNumber=1, **self._next_series())

        def sigma(modality):
            return contrast.INTENSITY[modality]["wm"] / contrast.SNR[modality]

        if spec.key == "DWI":
            b0 = acq.acquire(self.image_of("DWI_b0"), self.tissues, grid, self.motion, bias, sigma("DWI_b0"), self.rng)
            vols = [Volume(b0, protocols.diffusion_elements(self.vendor, 0, [0.0, 0.0, 0.0]))]
            clean = acq.resample(self.image_of("DWI_b1000"), self.tissues.affine, grid, self.motion)
            clean_arr = sitk.GetArrayFromImage(clean) * bias
            for d in spec.b1000_directions:  # one trace image, or GE's three directions
                img = sitk.GetImageFromArray(acq.rician(clean_arr, sigma("DWI_b1000"), self.rng))
                img.CopyInformation(clean)
                vols.append(Volume(img, protocols.diffusion_elements(self.vendor, 1000, d)))
        else:
            vols = [Volume(acq.acquire(self.image_of(spec.key), self.tissues, grid, self.motion, bias,
                                       sigma(spec.key), self.rng))]
        self._write(vols, el, spec.key.replace("DWI", "dwi"), spec.protocol)
        if spec.key == "FLAIR" and self.flair is None:
            self.flair = (grid, spec, el["SeriesInstanceUID"])

    def screen_save(self) -> None:
        """A derived secondary-capture 'screen save' of the FLAIR: ingest must skip it."""
        from pmlseg.synth import acquisition as acq
        from pmlseg.synth import protocols
        from pmlseg.synth.dicom import SECONDARY_CAPTURE, Volume

        g = acq.make_grid("axial", (384, 384, 1), (0.6, 0.6, 3.0), center=self.center)
        shot = acq.resample(self.image_of("FLAIR"), self.tissues.affine, g, self.motion)
        el = {"SOPClassUID": SECONDARY_CAPTURE, "Modality": "OT", "ConversionType": "WSD",
              "SeriesDescription": "Screen Save", "ImageType": protocols.image_type(self.vendor, "SCREENSHOT"),
              **self._next_series()}
        self._write([Volume(shot)], el, "skip:derived", "screen save")

    def truth(self, history: list, prev_masks: dict, baseline_motion) -> tuple[list[dict], float, dict]:
        """Write this visit's ground truth; returns (lesion table, new/enlarging mm3, masks for the next visit)."""
        import SimpleITK as sitk

        from pmlseg.atomic import write_nifti
        from pmlseg.synth import acquisition as acq
        from pmlseg.synth.truth import as_dcm2niix_nifti, write_tsv

        tissues, maps, v = self.tissues, self.maps, self.v
        gt_dir = self.tmp / "ground_truth" / self.pid / f"visit-{v + 1}"
        masks = {lid: (box, frac > 0.5) for lid, (box, frac) in maps.fractions.items()}
        change = np.zeros(tissues.shape, np.uint8)
        table = []
        to_scanner = self.motion.GetInverse()
        for lesion in history:
            status = lesion.status(v)
            if status == "absent":
                continue
            box, m = masks[lesion.id]
            if status == "new":
                change[box] |= m
            elif status == "enlarging" and lesion.id in prev_masks:
                pbox, pm = prev_masks[lesion.id]
                before = np.zeros(tissues.shape, bool)
                before[pbox] = pm
                change[box] |= m & ~before[box]
            vox = np.argwhere(m) + np.array([s.start for s in box])
            c_mni = tissues.affine[:3, :3] @ vox.mean(0) + tissues.affine[:3, 3] if len(vox) else np.full(3, np.nan)
            c_scanner = np.array(to_scanner.TransformPoint(tuple(c_mni * [-1, -1, 1]))) * [-1, -1, 1]
            table.append({"id": lesion.id, "kind": lesion.kind, "location": lesion.location, "status": status,
                          "volume_mm3": float(maps.fractions[lesion.id][1].sum()),
                          "centroid_x": float(c_scanner[0]), "centroid_y": float(c_scanner[1]),
                          "centroid_z": float(c_scanner[2])})
        grid, spec, _ = self.flair
        is_3d = spec.elements.get("MRAcquisitionType") == "3D"
        lab_img = acq.resample(maps.labels, tissues.affine, grid, self.motion, labels=True)
        chg_img = acq.resample(change, tissues.affine, grid, self.motion, labels=True)
        write_nifti(gt_dir / "lesions.nii.gz", as_dcm2niix_nifti(lab_img, np.int16, is_3d))
        write_nifti(gt_dir / "new_or_enlarging.nii.gz", as_dcm2niix_nifti(chg_img, np.uint8, is_3d))
        lab_arr = sitk.GetArrayViewFromImage(lab_img)
        ids, counts = np.unique(lab_arr[lab_arr > 0], return_counts=True)
        on_grid = dict(zip(ids.tolist(), (counts * float(np.prod(grid.spacing))).tolist()))
        for r in table:
            r["volume_mm3_flair_grid"] = float(on_grid.get(r["id"], 0.0))
        write_tsv(gt_dir / "lesions.tsv", table, ["id", "kind", "location", "status", "volume_mm3",
                                                  "volume_mm3_flair_grid", "centroid_x", "centroid_y", "centroid_z"])
        write_nifti(gt_dir / "mni" / "lesions.nii.gz", tissues.to_nifti(maps.labels))
        write_nifti(gt_dir / "mni" / "new_or_enlarging.nii.gz", tissues.to_nifti(change))
        sitk.WriteTransform(self.motion, str(gt_dir / "mni" / "scanner_to_mni.tfm"))
        if v > 0:  # the reference a registration "register BASELINE THIS_VISIT" should find
            sitk.WriteTransform(visit_to_visit(baseline_motion, self.motion), str(gt_dir / "baseline_to_this_visit.tfm"))
        return table, float(change.sum()), masks


def generate_cohort(out: str | os.PathLike, n_patients: int = 3, n_visits: int = 3, seed: int = 0,
                    force: bool = False, show_progress: bool = True) -> CohortSummary:
    """Write the cohort to ``out`` (built in a temporary sibling folder, then renamed into place)."""
    from pmlseg.logs import progress
    from pmlseg.synth import anatomy, lesions, protocols
    from pmlseg.synth.truth import write_tsv

    out = Path(out)
    if n_patients < 1:
        raise PmlsegError(f"--patients must be at least 1 (got {n_patients})")
    if n_visits < 2:
        raise PmlsegError(f"--visits must be at least 2: follow-ups need a previous visit (got {n_visits})")
    _check_out(out, force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the cohort is an ordinary folder
    except OSError as exc:
        raise PmlsegError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    try:
        tissues = anatomy.load_template()
        # seed % N: a patient's data depends only on (seed, patient), so cohorts of other sizes share patients
        pml_patient = seed % n_patients
        rows: list[dict] = []
        series_rows: list[dict] = []
        clinical: list[dict] = []
        n_files = 0
        bar = progress(total=n_patients * n_visits, desc="synth visits", unit="visit",
                       disable=None if show_progress else True)
        for p in range(n_patients):
            rng_p = np.random.default_rng([seed, p])
            vendor = protocols.VENDORS[(p + seed) % len(protocols.VENDORS)]
            model = protocols.MODELS[vendor][int(rng_p.integers(len(protocols.MODELS[vendor])))]
            birth = dt.date(1970, 1, 1) + dt.timedelta(days=int(rng_p.integers(0, 25 * 365)))
            sex = str(rng_p.choice(["F", "M"], p=[0.7, 0.3]))
            baseline_date = date = dt.date(2020, 1, 1) + dt.timedelta(days=int(rng_p.integers(0, 700)))
            history = lesions.plan_patient(tissues, rng_p, n_visits, pml=(p == pml_patient))
            prev_masks: dict[int, tuple] = {}
            baseline_motion = None
            for v in range(n_visits):
                if v:
                    date = date + dt.timedelta(days=int(rng_p.integers(91, 184)))  # 3-6 months
                rng_v = np.random.default_rng([seed, p, v])
                maps = lesions.render_lesions(history, tissues, v)
                common = _common_elements(p, v, seed, vendor, model, date, birth, sex, rng_v)
                visit = _VisitWriter(tmp, seed, p, v, vendor, tissues, maps, common, rng_v)
                visit.localizer()
                for spec in visit.specs:
                    visit.series(spec)
                visit.screen_save()
                table, change_mm3, prev_masks = visit.truth(history, prev_masks, baseline_motion)
                baseline_motion = baseline_motion or visit.motion
                n_files += visit.n_files
                if v == 0:
                    clinical.append(clinical_row(p, visit.pid, p == pml_patient, baseline_date))
                series_rows += visit.series_rows
                pml_rows = [r for r in table if r["kind"] == "pml" and r["location"] != "satellite"]
                rows.append({
                    "patient_id": visit.pid, "visit": v + 1, "study_date": date.isoformat(),
                    "days_since_baseline": (date - baseline_date).days,
                    "manufacturer": vendor, "model": model[0], "field_strength_t": model[1],
                    "flair_protocol": visit.flair[1].protocol,
                    "dicom_study_dir": str(visit.study_dir.relative_to(tmp)), "flair_series_uid": visit.flair[2],
                    "n_lesions": len(table), "n_new": sum(r["status"] == "new" for r in table),
                    "n_enlarging": sum(r["status"] == "enlarging" for r in table),
                    "new_or_enlarging_mm3": change_mm3, "pml_patient": "yes" if p == pml_patient else "no",
                    "pml_status": pml_rows[0]["status"] if pml_rows else "absent",
                    "pml_volume_mm3": pml_rows[0]["volume_mm3"] if pml_rows else 0.0,
                })
                bar.update(1)
        bar.close()
        write_tsv(tmp / "ground_truth" / "cohort.tsv", rows, list(rows[0].keys()))
        write_tsv(tmp / "ground_truth" / "series.tsv", series_rows, list(series_rows[0].keys()))
        write_tsv(tmp / "clinical.tsv", clinical, list(clinical[0].keys()))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %d DICOM files for %d patients x %d visits to %s", n_files, n_patients, n_visits, out)
    return CohortSummary(out=out, patients=n_patients, visits=n_visits, files=n_files, rows=rows)
