"""`pmlseg track OUT SUBJECT`: stable lesion ids and growth curves across one patient's visits."""

from __future__ import annotations

NAME = "track"
HELP = "follow new/enlarging lesions across a patient's visits (stable ids, growth curves)"
DESCRIPTION = """\
Read OUT/manifest.tsv and every follow-up's detection against the rebaseline (label maps on the
rebaseline grid under OUT/derivatives/pmlseg/SUBJECT/ses-*/detect-rebaseline/) and write
OUT/derivatives/pmlseg/SUBJECT/tracking/:

  lesions.tsv   one row per lesion per visit: stable lesion_id (L001, ...), volume, first visit seen,
                growth since then, new since the previous visit (from detection against the previous
                visit), and detection's characterisation columns (pml_score, pml_suspicion, ...)
  tracks.tsv    one row per lesion: first/last visit, growth curve (session:mm3;...), max PML score
  SUBJECT_report.html  the patient's growth curves (inline SVG) and links to every visit report

A lesion keeps its id when it overlaps (within one voxel) its extent at the last visit it was seen.
Visits whose detection failed QC are skipped (the cohort index lists them).
"""


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", help="workflow output folder (holds manifest.tsv)")
    parser.add_argument("subject", metavar="SUBJECT", help="subject label, e.g. sub-001")


def run(args) -> int:
    from pathlib import Path

    from pmlseg.workflow.tracking import write_tracking

    out = Path(args.out)
    n_tracks, n_rows = write_tracking(out, args.subject, out / "manifest.tsv")
    print(f"{args.subject}: {n_tracks} lesions tracked ({n_rows} lesion-visits)")
    return 0
