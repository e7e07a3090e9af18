"""A messy-clinic DICOM export for the workflow test: what a surveillance service really receives.

Low-resolution synthetic FLAIR (and T1w) series from the ICBM152 phantom (2.4 x 2.4 x 4 mm, 40 slices),
so the whole cohort converts and runs in a few minutes on 2 cores. Patients, in folders named the way a
PACS export names them (``NOVAKOVIC^MARTINA_8841207733_19850312/``, some files named after the patient too):

- ``stable``: four patients whose follow-up is a re-scan with the same lesions (new head pose, bias
  field, noise); the common case;
- ``new``: a follow-up with new and enlarging lesions;
- ``no_flair``: a follow-up with a T1w only;
- ``wrong``: a follow-up filed under the patient that shows someone else (another, deformed anatomy):
  registration QC must fail;
- ``single``: the rebaseline only;
plus a FLAIR whose SeriesDescription starts with a quote and holds a tab and a newline, and a
truncated file. ``EXPECTED`` says what the workflow must record for each visit.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

HOSTILE_DESCRIPTION = '"AX FLAIR\t"fs"\nrepeat'
SIZE, SPACING = (80, 96, 40), (2.4, 2.4, 4.0)

# (kind, PatientName, PatientID, PatientBirthDate)
PATIENTS = [
    ("stable", "NOVAKOVIC^MARTINA", "8841207733", "19850312"),
    ("stable", "HORVATIC^BOGDANA", "7730119284", "19770904"),
    ("stable", "KRALJEVIC^ANASTAZIJA", "6619023375", "19910127"),
    ("stable", "ZUPANCIC^MAGDALENA", "5508936446", "19690618"),
    ("new", "KOVACEVIC^PETRONELA", "4497845517", "19880430"),
    ("no_flair", "MLAKARJEVA^VALENTINA", "3386754628", "19740211"),
    ("wrong", "POTOCNIKOVA^EVANGELINA", "2275663739", "19820823"),
    ("single", "VIDMARJEVA^NINOSLAVA", "1164572840", "19950706"),
]
# what sessions.tsv must say: kind -> (follow-up qc, words in its reason); the rebaseline is 'ok' or 'skipped'
EXPECTED = {"stable": ("ok", ""), "new": ("ok", ""), "no_flair": ("failed", "no usable FLAIR"),
            "wrong": ("failed", "registration failed QC")}


def identifiers() -> list[str]:
    """Every name part, ID and birth date of the export: none may appear outside identity.tsv (each at
    least 7 characters, so that no base64 image or compressed voxel stream holds one by chance)."""
    out = []
    for _, name, pid, birth in PATIENTS:
        out += [name, *name.split("^"), pid, birth]
    return out


def _deformed(arr: np.ndarray) -> np.ndarray:
    """Another person's head: the phantom with a strong smooth deformation (8-10 mm)."""
    from scipy import ndimage as ndi

    grid = np.indices(arr.shape).astype(np.float32)
    grid[0] += 10 * np.sin(grid[2] / 9.0)
    grid[1] += 5 * np.sin(grid[2] / 9.0)
    grid[2] += 8 * np.cos(grid[0] / 11.0)
    return ndi.map_coordinates(arr, grid, order=1).astype(np.float32)


def build(root: Path, seed: int = 7) -> Path:
    """Write the export under ``root`` (created) and return it."""
    from pmlseg.synth import acquisition as acq
    from pmlseg.synth import anatomy, contrast, lesions, protocols
    from pmlseg.synth.cohort import PIXEL_SCALE
    from pmlseg.synth.dicom import Volume, uid, write_series

    tissues = anatomy.load_template()
    root.mkdir(parents=True, exist_ok=True)
    grid = acq.make_grid("axial", SIZE, SPACING)
    for p, (kind, name, pid, birth) in enumerate(PATIENTS):
        rng = np.random.default_rng([seed, p])
        history = lesions.plan_patient(tissues, rng, 2, pml=False)
        first = lesions.render_lesions(history, tissues, 0)
        # stable: the follow-up shows the rebaseline's lesions (visit 0), the others their own visit
        maps = [first, first if kind in ("stable", "wrong") else lesions.render_lesions(history, tissues, 1)]
        patient_dir = root / f"{name}_{pid}_{birth}"
        date0 = dt.date(2023, 1, 9) + dt.timedelta(days=11 * p)
        for v in range(1 if kind == "single" else 2):
            date = date0 + dt.timedelta(days=120 * v)
            common = {"PatientName": name, "PatientID": pid, "PatientBirthDate": birth, "PatientSex": "F",
                      "AccessionNumber": f"A{pid[:5]}{v}", "StudyInstanceUID": uid("messy", seed, p, v),
                      "FrameOfReferenceUID": uid("messy-for", seed, p, v), "StudyDate": date.strftime("%Y%m%d"),
                      "SeriesDate": date.strftime("%Y%m%d"), "StudyTime": "093000", "StudyID": f"{p}{v}",
                      "StudyDescription": "MRI BRAIN MS SURVEILLANCE", "InstitutionName": "Clinic",
                      "Manufacturer": "SIEMENS", "ManufacturerModelName": "Skyra", "MagneticFieldStrength": "3",
                      "PatientPosition": "HFS", "BodyPartExamined": "BRAIN"}
            study = patient_dir / f"{date:%Y%m%d}_MR_{name.split('^')[0]}"
            motion = acq.random_motion(np.random.default_rng([seed, p, v]))
            kinds = ["T1w"] if (kind == "no_flair" and v == 1) else ["FLAIR", "T1w"]
            for n, modality in enumerate(kinds, 1):
                r = np.random.default_rng([seed, p, v, n])
                vol = contrast.render(tissues, maps[v], modality, r)
                if kind == "wrong" and v == 1:
                    vol = _deformed(vol)
                sigma = contrast.INTENSITY[modality]["wm"] / contrast.SNR[modality]
                img = acq.acquire(vol, tissues, grid, motion, acq.bias_field(grid, r), sigma, r)
                key = "FLAIR2D" if modality == "FLAIR" else "T12D"
                el = dict(protocols._elements("SIEMENS", key, "2D", SPACING[2]), SeriesNumber=n,
                          SeriesInstanceUID=uid("messy-series", seed, p, v, n), AcquisitionNumber=1)
                if kind == "stable" and p == 1 and modality == "FLAIR":
                    el["SeriesDescription"] = HOSTILE_DESCRIPTION
                # some exports name the files after the patient too
                namer = (lambda i, nm=name: f"{nm}_{i:04d}.dcm") if p % 2 else (lambda i: f"IM{i:05d}")
                write_series([Volume(img)], study / f"S{n:03d}", common, el, namer, PIXEL_SCALE,
                             uid_parts=("messy-img", seed, p, v, n))
    # a truncated file (an interrupted copy), named after its patient
    some = sorted((root / f"{PATIENTS[2][1]}_{PATIENTS[2][2]}_{PATIENTS[2][3]}").rglob("IM*"))[0]
    (some.parent / f"{PATIENTS[2][1]}_partial.dcm").write_bytes(some.read_bytes()[:1000])
    return root
