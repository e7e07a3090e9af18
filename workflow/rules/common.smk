# Shared helpers: output layout, the visit manifest (read after the ingest checkpoint), pmlseg command.
import functools
import hashlib
import os
import shlex
import sys

from pmlseg.workflow import layout as L
from pmlseg.workflow.manifest import manifest_index

OUT = os.path.normpath(config["out_dir"])
DICOM = os.path.normpath(config["dicom_dir"])
# Jobs (also on cluster nodes) run the interpreter that runs Snakemake, so no PATH set-up is needed;
# $PMLSEG_COMMAND replaces it (e.g. "apptainer exec pmlseg.sif pmlseg" on a cluster).
PMLSEG = os.environ.get("PMLSEG_COMMAND") or f'"{sys.executable}" -m pmlseg'
RES = config.get("resources", {})


wildcard_constraints:
    sub="sub-[A-Za-z0-9]+",
    ses="ses-[A-Za-z0-9]+",
    against="rebaseline|previous",


def P(rel):
    """A path under OUT."""
    return os.path.join(OUT, rel)


def res(rule, key, default):
    return RES.get(rule, {}).get(key, default)


def shared_threads(rule, default, jobs):
    """``rule``'s configured threads, but on this machine at most an even share of --cores among its ``jobs()``
    (those still to run, ``unfinished``; e.g. one detection per patient; ``jobs`` is O(1), it is asked once per
    job). Why: a detection job keeps ~1.4 of 2 threads busy (numpy, Python, the network in between), so on 2
    cores two patients' detections side by side on one core each finish sooner than one after the other on two
    (docs/benchmarks.md, session 11); a lone patient still gets all. Cluster jobs (SLURM) ask for the
    configured number."""
    want = res(rule, "threads", default)
    if not workflow.local_exec or workflow.remote_exec:
        return want
    return max(1, min(want, workflow.cores // max(1, jobs())))


_UNFINISHED = {}


def unfinished(what, total):
    """How many follow-ups (``what`` = "register") or patients ("detect") of the manifest still lack their
    output, else ``total`` (nothing missing: a forced or changed re-run redoes them all); once per manifest.
    Why: a surveillance export grows a visit at a time, and sharing the cores among every follow-up it
    ever had gave the one new follow-up's registration one core of two (issue 17, session 17)."""
    m = manifest()
    cached = _UNFINISHED.get(what)
    if cached is None or cached[0] is not m:
        if what == "register":
            n = sum(not os.path.exists(P(L.register_status(r["subject"], r["session"])))
                    for rows in m.followups.values() for r in rows)
        else:
            n = sum(any(not os.path.exists(P(L.detect_status(sub, r["session"], "rebaseline"))) for r in rows)
                    for sub, rows in m.followups.items())
        cached = _UNFINISHED[what] = (m, n)
    return cached[1] or total()


@functools.lru_cache(maxsize=None)
def dicom_state(path):
    """Cheap fingerprint of the DICOM export: every folder's name and mtime (adding a file changes its
    folder's mtime; no file is opened). Used as a param, so ingest re-runs exactly when something was
    added or removed. Computed once per Snakemake run (the DAG is rebuilt after the checkpoint)."""
    h = hashlib.sha1()
    if not os.path.isdir(path):
        return "missing"
    for root, dirs, _files in os.walk(path):
        dirs.sort()
        h.update(f"{os.path.relpath(root, path)}\t{os.stat(root).st_mtime_ns}\n".encode())
    return h.hexdigest()


def manifest():
    """OUT/manifest.tsv, indexed (read once per change of the file, not per input function call);
    asking for it makes Snakemake wait for the ingest checkpoint."""
    return manifest_index(checkpoints.ingest.get().output.manifest)


def visit(sub, ses):
    try:
        return manifest().visits[(sub, ses)]
    except KeyError:
        raise ValueError(f"{sub} {ses} is not in {OUT}/manifest.tsv") from None


def rebaseline(sub):
    try:
        return manifest().rebaselines[sub]
    except KeyError:
        raise ValueError(f"{sub} has no rebaseline in {OUT}/manifest.tsv") from None


def followups(sub):
    return manifest().followups.get(sub, [])


def subjects():
    return manifest().subjects


def needs_previous(r):
    """Detection against the previous visit, when that is not the rebaseline itself."""
    return config["detect_previous"] and r["previous"] and r["previous"] != rebaseline(r["subject"])["session"]


def image(r, kind):
    return P(r[kind]) if r[kind] else ""


def Q(path):
    """A path quoted for the shell (for argument strings built in Python)."""
    return shlex.quote(str(path))
