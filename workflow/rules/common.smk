# Shared helpers: output layout, the visit manifest (read after the ingest checkpoint), pmlseg command.
import hashlib
import os
import shlex
import sys

from pmlseg.workflow import layout as L
from pmlseg.workflow.manifest import read_manifest

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


def dicom_state(path):
    """Cheap fingerprint of the DICOM export: every folder's name and mtime (adding a file changes its
    folder's mtime). Used as a param, so ingest re-runs exactly when something was added or removed."""
    h = hashlib.sha1()
    if not os.path.isdir(path):
        return "missing"
    for root, dirs, _files in os.walk(path):
        dirs.sort()
        h.update(f"{os.path.relpath(root, path)}\t{os.stat(root).st_mtime_ns}\n".encode())
    return h.hexdigest()


def manifest():
    """Visit rows from OUT/manifest.tsv; asking for it makes Snakemake wait for the ingest checkpoint."""
    return read_manifest(checkpoints.ingest.get().output.manifest)


def visit(sub, ses):
    for r in manifest():
        if r["subject"] == sub and r["session"] == ses:
            return r
    raise ValueError(f"{sub} {ses} is not in {OUT}/manifest.tsv")


def rebaseline(sub):
    for r in manifest():
        if r["subject"] == sub and r["role"] == "rebaseline":
            return r
    raise ValueError(f"{sub} has no rebaseline in {OUT}/manifest.tsv")


def followups(sub=None):
    return [r for r in manifest() if r["role"] == "follow-up" and (sub is None or r["subject"] == sub)]


def subjects():
    return sorted({r["subject"] for r in manifest()})


def needs_previous(r):
    """Detection against the previous visit, when that is not the rebaseline itself."""
    return config["detect_previous"] and r["previous"] and r["previous"] != rebaseline(r["subject"])["session"]


def image(r, kind):
    return P(r[kind]) if r[kind] else ""


def Q(path):
    """A path quoted for the shell (for argument strings built in Python)."""
    return shlex.quote(str(path))
