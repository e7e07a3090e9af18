"""Run one workflow stage and record its outcome in a status file, so bad input never crashes the cohort.

A stage that exits with pmlseg's bad-input code (pmlseg.errors.EXIT_BAD_INPUT, e.g. a registration QC
failure) gets ``{"status": "failed", "reason": <its last error line>}`` and the step itself exits 0: the
workflow goes on with everything else and the cohort index lists the problem.  Any other non-zero exit
(a crash, a set-up that cannot work such as a missing model or no CUDA GPU, a signal, a killed job) is
not a verdict on the visit: no status is written and the step exits non-zero, so the Snakemake job fails,
the run exits non-zero and the next run retries the job.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from pmlseg.atomic import write_text
from pmlseg.errors import EXIT_BAD_INPUT


def read_status(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        return {"status": "missing", "reason": f"{p.name} not written"}
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return {"status": "failed", "reason": f"{p}: unreadable status file"}


def write_status(path: str | Path, status: str, reason: str = "", **extra) -> None:
    write_text(path, json.dumps({"status": status, "reason": reason, **extra}, indent=1) + "\n")


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if " ERROR " in f" {ln} " or ln.startswith(("ERROR", "Error", "error")):
            return ln.split(": ", 1)[-1] if " ERROR " in ln else ln
    return lines[-1] if lines else "failed without a message"


def run_step(status_path: str | Path, cmd: list[str], *, stage: str, log: str | Path | None = None,
             requires: list[str] = ()) -> int:
    """Run ``cmd`` unless a required earlier status failed; write ``status_path``; return the exit code to use."""
    for req in requires:
        st = read_status(req)
        if st.get("status") != "ok":
            write_status(status_path, "failed", st.get("reason", "") or f"{req}: {st.get('status')}",
                         stage=st.get("stage", "earlier stage"), skipped=True)
            return 0
    t0 = time.time()
    if log:  # stream into the log while it runs (progress of long jobs is visible), then read our part back
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as fp:
            start = fp.tell()
            rc = subprocess.run(cmd, stdout=fp, stderr=subprocess.STDOUT).returncode
        with open(log, "rb") as fp:
            fp.seek(start)
            output = fp.read().decode("utf-8", "replace")
    else:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        rc, output = proc.returncode, proc.stdout
        sys.stderr.write(output)
    if rc == 0:
        write_status(status_path, "ok", "", stage=stage, seconds=round(time.time() - t0, 1))
        return 0
    if rc == EXIT_BAD_INPUT:
        write_status(status_path, "failed", _last_error(output), stage=stage, seconds=round(time.time() - t0, 1))
        return 0
    why = f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"
    note = (f"pmlseg step: {stage} did not finish ({why}): not a verdict on the visit, nothing recorded; "
            "the job fails and the next run retries it\n")
    sys.stderr.write(note)
    if log:
        with open(log, "a") as fp:
            fp.write(note)
    return rc if rc > 0 else 128 - rc  # killed by signal N: 128 + N, as a shell reports it
