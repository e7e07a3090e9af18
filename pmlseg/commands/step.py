"""`pmlseg step STATUS.json -- COMMAND ...`: run a workflow stage, recording an input failure instead of crashing."""

from __future__ import annotations

NAME = "step"
HELP = "(workflow internal) run a stage and record a failure status instead of stopping the cohort"
DESCRIPTION = """\
Used by the Snakemake rules. Runs COMMAND and writes STATUS.json: {"status": "ok"} on success,
{"status": "failed", "reason": <the stage's one-line error>} when it exits 65 (pmlseg's exit code for a
problem with the input, e.g. a registration QC failure); then exits 0 so the rest of the cohort goes
on. Any other exit code (a crash, a missing model, no CUDA GPU, a signal, a killed job) is passed on
and no status is written, so the job fails and the next run redoes it. With --requires S.json, a
failed earlier stage is recorded as this stage's failure without running COMMAND.
"""


def add_arguments(parser) -> None:
    parser.add_argument("status", metavar="STATUS.json", help="status file to write")
    parser.add_argument("--stage", required=True, help="stage name recorded in the status")
    parser.add_argument("--step-log", default=None, help="append COMMAND's output to this file")
    parser.add_argument("--requires", action="append", default=[], metavar="S.json",
                        help="status of an earlier stage that must be ok (repeatable)")
    parser.add_argument("cmd", nargs="+", metavar="COMMAND", help="command to run (after --)")


def run(args) -> int:
    from pmlseg.workflow.step import run_step

    return run_step(args.status, args.cmd, stage=args.stage, log=args.step_log, requires=args.requires)
