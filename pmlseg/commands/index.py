"""`pmlseg index OUT`: the cohort tables and the self-contained cohort index page."""

from __future__ import annotations

NAME = "index"
HELP = "write the cohort index (sessions.tsv, lesions.tsv, index.html) from a workflow output folder"
DESCRIPTION = """\
Collect every visit's status, detection and lesion tracking under OUT into:

  OUT/sessions.tsv  subject, session, role, interval_days (since rebaseline), new_lesions (label map in
                    the rebaseline's space, relative to OUT), report, qc, reason, lesion counts/volumes
  OUT/lesions.tsv   subject, session, lesion_id (stable across visits) and all lesion columns
  OUT/index.html    one self-contained page (no network): patients with suspicious lesions first, a
                    timeline per patient, every problem with its reason, links to every report

With --clinical TSV (columns: subject or patient_id, natalizumab_start, jcv_index, jcv_status,
prior_immunosuppressant, dosing_interval_weeks, rebaseline_date) each patient also gets the published
PML risk per 1000 (Ho et al. 2017), the recommended MRI interval (MAGNIMS 2021) and an overdue flag.
No identifiers appear unless --identified is given.
"""


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", help="workflow output folder (holds manifest.tsv)")
    parser.add_argument("--clinical", default=None, metavar="TSV", help="clinical table for PML risk (optional)")
    parser.add_argument("--identified", action="store_true",
                        help="show patient IDs from identity.tsv in the index (off by default)")
    parser.add_argument("--today", default=None, metavar="YYYY-MM-DD",
                        help="date used for overdue scans (default: today)")


def run(args) -> int:
    from pathlib import Path

    from pmlseg.workflow.cohort_index import write_index
    from pmlseg.tables import parse_date

    today = parse_date(args.today, "--today") if args.today else None
    out = Path(args.out)
    info = write_index(out, Path(args.clinical) if args.clinical else None, args.identified, today)
    print(f"{out / 'index.html'}: {info['sessions']} visits ({info['failed']} failed), "
          f"{info['lesions']} lesion-visits")
    return 0
