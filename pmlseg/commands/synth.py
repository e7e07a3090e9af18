"""`pmlseg synth OUT`: write a synthetic MS/PML surveillance cohort as DICOM studies plus ground truth."""

from __future__ import annotations

NAME = "synth"
HELP = "write a synthetic cohort (DICOM studies + lesion ground truth) for the demo and tests"
DESCRIPTION = """\
Write a synthetic longitudinal MS cohort built from the ICBM152 2009 template that ships inside
nilearn (no download). Each patient has K visits 3-6 months apart; each visit is a DICOM study
(FLAIR, T1w, T2w, DWI b0+b1000, a 3-plane localizer and a derived screen save that ingest must
skip) with its own head pose, bias field, noise and protocol (FLAIR alternates between 3D 1 mm
sagittal and angulated 2D 0.7x0.7x3 mm axial). Vendors rotate between SIEMENS, GE and Philips. MS-like lesions appear or enlarge at
follow-ups; exactly one patient develops a PML-like lesion that appears and then grows.

Writes:
  OUT/dicom/<study>/<series>/<files>     PACS-export-like tree (fake names/IDs: SYNTH^DEMOnn, SYN-nnnn)
  OUT/ground_truth/cohort.tsv            one row per visit: protocol, vendor, lesion counts, PML status
  OUT/ground_truth/<PatientID>/visit-<k>/lesions.nii.gz, new_or_enlarging.nii.gz, lesions.tsv
                                         truth on the FLAIR grid exactly as dcm2niix converts that series
  OUT/ground_truth/<PatientID>/visit-<k>/mni/...   the same truth in template (MNI) space + head pose

The same --seed always gives the same cohort. OUT must not exist or be empty; --force replaces a
previous synth output (and only that).
"""


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder (created; must be empty unless --force)")
    parser.add_argument("--patients", type=int, default=3, metavar="N", help="number of patients (default 3)")
    parser.add_argument("--visits", type=int, default=3, metavar="K", help="visits per patient, at least 2 (default 3)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--force", action="store_true",
                        help="replace OUT if it is a previous synth output (never deletes other folders)")


def run(args) -> int:
    from pmlseg.synth.cohort import generate_cohort

    summary = generate_cohort(args.out, n_patients=args.patients, n_visits=args.visits, seed=args.seed,
                              force=args.force)
    print(f"{summary.out}: {summary.patients} patients x {summary.visits} visits, {summary.files} DICOM files; "
          f"truth in {summary.out / 'ground_truth'}")
    return 0
