"""`pmlseg ingest SRC OUT`: raw PACS export -> de-identified BIDS NIfTI with an inventory of every series."""

from __future__ import annotations

NAME = "ingest"
HELP = "convert a raw DICOM export (any layout, any vendor) to de-identified BIDS NIfTI"
DESCRIPTION = """\
Find every DICOM file under SRC by content (any folder layout, any or no extension), group it
patient -> study -> series, classify each series from its header and convert the useful ones with
dcm2niix (identical geometry and voxel values) into a BIDS tree under OUT:

  OUT/sub-001/ses-01/anat/sub-001_ses-01_{FLAIR,T1w,T2w,ce-gadolinium_T1w}.nii.gz (+ .json)
  OUT/sub-001/ses-01/dwi/sub-001_ses-01_dwi.nii.gz (+ .json, .bval, .bvec)
  OUT/series.tsv    one row per series: classification (FLAIR, T1w, T1w-ce, T2w, dwi, other),
                    status (converted / skipped / failed), the reason, and the output path
  OUT/identity.tsv  the ONLY file that links pseudonyms to patients (patient_id, study_uid,
                    study_date, accession_number): keep it safe and remove it before sharing OUT;
                    nothing else (names, sidecars, NIfTI headers, logs) holds identifiers
  OUT/dataset_description.json, OUT/.bidsignore   so OUT is a valid BIDS dataset

Labels are pseudonyms: sub-NNN per patient, ses-NN per study, numbered by StudyDate at first
ingest. Re-running with new studies converts only those and keeps existing labels; a study found
later gets the next free session number even if it is older (see study_date in identity.tsv).
Extra series of one kind in a session get _run-2, ...; the first one in series.tsv is the main one.
Localisers, perfusion/ASL, derived, reformatted, screenshots and ADC/FA maps are listed as 'other'
and not converted. Series with missing, duplicate or unevenly spaced slices, mixed sizes or
orientations are 'failed' with the reason: never a wrong volume. Unreadable, empty, truncated and
non-DICOM files are skipped with one warning each, naming the file by a hash of its path under SRC
(file:0123abcd45), never by the path (export folders and files are often named after the patient):
`pmlseg ingest SRC --locate file:0123abcd45` prints the path on the terminal.
Exit status is 0 when the run completed, even if some series failed: read series.tsv.
"""


def add_arguments(parser) -> None:
    parser.add_argument("src", metavar="SRC", help="folder holding the DICOM export (searched recursively)")
    parser.add_argument("out", metavar="OUT", nargs="?", help="BIDS output folder (created; re-runs add only new series)")
    parser.add_argument("--workers", type=int, default=2, help="parallel index/conversion workers (default 2)")
    parser.add_argument("--locate", metavar="REF", help="print the path under SRC of the file a log names by REF "
                                                         "(file:...), then exit; converts nothing")


def run(args) -> int:
    from pathlib import Path

    from pmlseg.errors import PmlsegError
    from pmlseg.ingest.pipeline import ingest, locate

    if args.locate:
        found = locate(Path(args.src), args.locate)
        if not found:
            raise PmlsegError(f"{args.locate}: no file under {args.src} has this reference")
        print("\n".join(found))
        return 0
    if not args.out:
        raise PmlsegError("pmlseg ingest: OUT is required (unless --locate)")
    ingest(Path(args.src), Path(args.out), workers=args.workers)
    return 0
