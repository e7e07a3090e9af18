"""`pmlseg manifest OUT`: the visit table the workflow is expanded from (run once, after ingest)."""

from __future__ import annotations

NAME = "manifest"
HELP = "list each patient's visits, rebaseline and usable images from an ingested BIDS folder"
DESCRIPTION = """\
Read OUT/series.tsv and OUT/identity.tsv (written by `pmlseg ingest`) and write OUT/manifest.tsv:
one row per visit with its role (rebaseline, follow-up, pre-rebaseline, unusable), days since the
rebaseline and since the previous visit, the previous usable visit, the main FLAIR/T1w/T2w/DWI
images, a status and the reasons for any problem (no FLAIR, unreadable series, single visit).

The rebaseline is each patient's first visit with a usable FLAIR, or with --clinical the first such
visit on or after the patient's rebaseline_date. The Snakemake workflow reads only this table, so
nothing is scanned when the workflow is parsed. The manifest holds no dates or identifiers.
"""


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", help="folder written by `pmlseg ingest`")
    parser.add_argument("--clinical", default=None, metavar="TSV",
                        help="clinical table (see docs/workflow.md); its rebaseline_date picks the rebaseline")


def run(args) -> int:
    from pathlib import Path

    from pmlseg.workflow.manifest import write_manifest

    rows = write_manifest(Path(args.out), Path(args.clinical) if args.clinical else None)
    n_fu = sum(r["role"] == "follow-up" for r in rows)
    n_bad = sum(r["status"] != "ok" for r in rows)
    print(f"{Path(args.out) / 'manifest.tsv'}: {len({r['subject'] for r in rows})} patients, {len(rows)} visits, "
          f"{n_fu} follow-ups to analyse, {n_bad} with problems")
    return 0
