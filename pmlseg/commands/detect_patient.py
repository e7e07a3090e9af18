"""`pmlseg detect-patient DONE.json --cases JSON`: all of one patient's detections in one process (workflow)."""

from __future__ import annotations

NAME = "detect-patient"
HELP = "(workflow internal) detect every follow-up of one patient in one process"
DESCRIPTION = """\
Used by the workflow's detect rule: one job per patient. --cases is a JSON list, one object per
detection with the keys status, out, baseline, followup and optionally followup_transform, optional
({"followup_t1": F, ...} as in `pmlseg detect`), requires (status files that must be ok) and log.
Each case writes what `pmlseg detect` writes into its out folder and a status.json as `pmlseg step`
does (a problem with the input is recorded as failed; the other cases go on). The model is loaded
once and the rebaseline's template registrations are computed once for all cases. A case whose
status is present with the same inputs is kept, so re-running after a new visit only computes the
new one. DONE.json is written last, when every case has a status.
"""


def add_arguments(p) -> None:
    p.add_argument("done", metavar="DONE.json", help="written when every case has a status")
    p.add_argument("--cases", required=True, metavar="JSON", help="the cases (see above)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="where the model runs")
    p.add_argument("--model", metavar="NAME_OR_DIR", help="model name or folder (default newlesion-2p5d)")
    p.add_argument("--method", default="model", choices=["model", "classical"], help="as in `pmlseg detect`")


def run(args) -> int:
    from pmlseg.workflow.detect_patient import read_cases, run_cases
    from pmlseg.workflow.step import write_status

    cases = read_cases(args.cases)
    counts = run_cases(cases, method=args.method, model=args.model, device=args.device)
    write_status(args.done, "ok", "", stage="detect", **counts)
    print(f"{len(cases)} detection(s): {counts['ran']} run, {counts['skipped']} up to date, "
          f"{counts['failed']} failed (recorded)")
    return 0
