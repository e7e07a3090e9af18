"""All of one patient's detections in one process: the model loaded once, the rebaseline's template fits once.

Why: a detection process per follow-up spent most of its time on work that is the same for every
follow-up of a patient (importing torch and MONAI, loading and checksumming the weights, registering the
ICBM152 template to the rebaseline for its brain mask and again for the lesion location priors).  The
workflow's ``detect`` rule now runs one job per patient; each case still writes exactly what
`pmlseg detect` writes into its own folder, and its own ``status.json`` the way `pmlseg step` does
(a problem with the input -> ``failed`` with the reason, the other cases go on; a crash stops the job
with nothing recorded for the unfinished case, so a re-run redoes it).

Incremental: each case's status records a fingerprint of its inputs (paths, sizes, mtimes, options); a
re-run of the patient's job (a new visit arrived, or the job was interrupted) skips every case whose
status is present with the same fingerprint, so only new work is computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from pmlseg.errors import PmlsegError
from pmlseg.workflow.step import read_status, write_status

log = logging.getLogger(__name__)

CASE_KEYS = {"status", "out", "baseline", "followup", "followup_transform", "optional", "requires", "log",
             "template_fit", "same_session"}


def fingerprint(case: dict, options: dict) -> str:
    """Digest of everything a case's result depends on that can change between runs."""
    files = [case["baseline"], case["followup"], case.get("followup_transform") or "",
             *sorted((case.get("optional") or {}).values()), *case.get("requires", [])]
    stamps = []
    for f in files:
        try:
            st = os.stat(f) if f else None
        except OSError:
            st = None
        stamps.append([f, st.st_size if st else None, st.st_mtime_ns if st else None])
    text = json.dumps({"files": stamps, "case": {k: v for k, v in case.items() if k not in ("status", "log")},
                       "options": options}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def read_cases(text: str, where: str = "--cases") -> list[dict]:
    try:
        cases = json.loads(text)
    except ValueError as exc:
        raise PmlsegError(f"{where}: not JSON ({exc})") from None
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise PmlsegError(f"{where}: expected a list of cases")
    for c in cases:
        missing = {"status", "out", "baseline", "followup"} - set(c)
        unknown = set(c) - CASE_KEYS
        if missing or unknown:
            raise PmlsegError(f"{where}: case {c.get('out', '?')}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return cases


class _CaseLog:
    """Append the log of one case to its own file (as the per-visit jobs did) while it runs."""

    def __init__(self, path: str | None):
        self.path = path
        self.handler = None

    def __enter__(self):
        if self.path:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.handler = logging.FileHandler(self.path)
            self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                                        "%H:%M:%S"))
            logging.getLogger().addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        if self.handler:
            logging.getLogger().removeHandler(self.handler)
            self.handler.close()


def run_cases(cases: list[dict], *, method: str = "model", model: str | None = None, device: str = "cpu",
              predictor_factory=None) -> dict:
    """Run every case not already done; return counts {"ran", "skipped", "failed"}.

    ``predictor_factory(model, device)`` builds the Predictor (default pmlseg.detect.predictor.Predictor);
    it is called at most once, and only when a case needs the model.
    """
    from pmlseg.detect import pipeline

    options = {"method": method, "model": model}
    predictor = None
    counts = {"ran": 0, "skipped": 0, "failed": 0}
    for n, case in enumerate(cases, start=1):
        fp = fingerprint(case, options)
        old = read_status(case["status"]) if Path(case["status"]).exists() else {}
        if old.get("inputs") == fp and old.get("status") in ("ok", "failed"):
            counts["skipped"] += 1
            log.info("%s: up to date, kept", case["out"])
            continue
        Path(case["status"]).unlink(missing_ok=True)  # never a stale status beside new outputs
        failed = next((r for r in case.get("requires", []) if read_status(r).get("status") != "ok"), None)
        if failed:
            st = read_status(failed)
            write_status(case["status"], "failed", st.get("reason", "") or f"{failed}: {st.get('status')}",
                         stage=st.get("stage", "earlier stage"), skipped=True, inputs=fp)
            counts["failed"] += 1
            continue
        t0 = time.time()
        log.info("detection %d of %d: %s", n, len(cases), case["out"])  # progress, also in the job's log file
        with _CaseLog(case.get("log")):
            try:
                if method == "model" and predictor is None:
                    if predictor_factory is None:
                        from pmlseg.detect.predictor import Predictor as predictor_factory
                    predictor = predictor_factory(model, device)
                pipeline.run_case(case["baseline"], case["followup"], case["out"], predictor=predictor,
                                  method=method, followup_transform=case.get("followup_transform"),
                                  optional=case.get("optional") or {}, template_fit=case.get("template_fit"),
                                  same_session=case.get("same_session"))
            except PmlsegError as exc:
                log.error("%s", exc)
                write_status(case["status"], "failed", str(exc), stage="detect",
                             seconds=round(time.time() - t0, 1), inputs=fp)
                counts["failed"] += 1
                continue
        write_status(case["status"], "ok", "", stage="detect", seconds=round(time.time() - t0, 1), inputs=fp)
        log.info("detection %d of %d done in %.0f s", n, len(cases), time.time() - t0)
        counts["ran"] += 1
    return counts
