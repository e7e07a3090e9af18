"""`pmlseg run DICOM_DIR OUT_DIR`: the whole surveillance workflow (Snakemake), on a laptop or a SLURM cluster."""

from __future__ import annotations

NAME = "run"
HELP = "run the whole workflow: DICOM export -> BIDS -> registration -> detection -> tracking -> cohort index"
DESCRIPTION = """\
Runs the Snakemake workflow shipped with pmlseg (Snakefile + workflow/rules/*.smk; the same one
`snakemake --cores N` runs from the repository root with configs/config.yaml) on DICOM_DIR:

  ingest (checkpoint: BIDS + manifest.tsv) -> registration of every follow-up FLAIR to the patient's
  rebaseline (raw FLAIRs; --config preprocess=true adds N4 preprocessing per visit first) -> detection
  against the rebaseline and the previous visit -> lesion tracking across visits -> cohort index

and writes into OUT_DIR: the BIDS dataset, derivatives/pmlseg/..., sessions.tsv, lesions.tsv,
identity.tsv (the only file with identifiers) and index.html (open it in a browser). Logs are in
OUT_DIR/logs, per-job timings in OUT_DIR/benchmarks.

Re-running after new studies were added to DICOM_DIR computes only the new work; an interrupted run
resumes where it stopped. A visit that fails (no FLAIR, registration QC failure, unreadable series)
is listed in the index with the reason; the rest of the cohort is still processed.

On a SLURM cluster use --executor slurm (jobs go through sbatch; --jobs caps how many are queued).
On clusters without accounting (sacct disabled) job states are read with squeue automatically.
Options for the workflow go in --config KEY=VALUE (see configs/config.yaml), e.g.
--config use_gpu=true clinical=clinical.tsv. The workflow ships inside the installed package (or is
read from the checkout pmlseg runs from); PMLSEG_SNAKEFILE=/path/to/Snakefile runs another copy.
"""


def add_arguments(parser) -> None:
    parser.add_argument("dicom", metavar="DICOM_DIR", help="raw DICOM export (any layout)")
    parser.add_argument("out", metavar="OUT_DIR", help="output folder (created; re-runs add only new work)")
    parser.add_argument("--cores", type=int, default=None,
                        help="CPU cores to use locally (default: all); with --executor slurm, for local rules")
    parser.add_argument("--executor", choices=["local", "slurm"], default="local",
                        help="where jobs run (default local)")
    parser.add_argument("--jobs", type=int, default=None, help="most jobs queued at once on the cluster (default 20)")
    parser.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                        help="workflow configuration overrides (see configs/config.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="show what would run, run nothing")
    parser.add_argument("--snakemake-args", default="", metavar='="ARGS"',
                        help='more snakemake options, quoted after "=", e.g. --snakemake-args="--until register"')


def run(args) -> int:
    import shlex
    from pathlib import Path

    from pmlseg.workflow.snakemake_runner import run_workflow

    rc = run_workflow(Path(args.dicom), Path(args.out), cores=args.cores, executor=args.executor, jobs=args.jobs,
                      config=args.config, dry_run=args.dry_run, extra=shlex.split(args.snakemake_args))
    if rc == 0 and not args.dry_run:
        print(f"{Path(args.out) / 'index.html'}: cohort index")
    return rc
