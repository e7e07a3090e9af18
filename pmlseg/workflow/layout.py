"""Where each workflow stage writes, relative to OUT: one place shared by the Snakefile rules and the Python steps."""

from __future__ import annotations

DERIV = "derivatives/pmlseg"


def visit_dir(sub: str, ses: str) -> str:
    return f"{DERIV}/{sub}/{ses}"


def preproc_flair(sub: str, ses: str) -> str:
    # uncompressed: gzip shrinks a float32 N4 output by ~10 % and costs ~1 s per write (docs/benchmarks.md)
    return f"{visit_dir(sub, ses)}/preproc/{sub}_{ses}_desc-preproc_FLAIR.nii"


def brain_mask(sub: str, ses: str) -> str:
    return f"{visit_dir(sub, ses)}/preproc/{sub}_{ses}_desc-brain_mask.nii.gz"


def template_fit(sub: str, ses: str) -> str:
    """The rebaseline FLAIR's template fit (`pmlseg register --template-fit`; mask and transform beside it)."""
    return f"{visit_dir(sub, ses)}/template/{sub}_{ses}_template-fit.json"


def same_session(sub: str, ses: str) -> str:
    """This visit's T1/T2/DWI -> FLAIR registrations (`pmlseg register --same-session`; transforms beside it)."""
    return f"{visit_dir(sub, ses)}/xfm/{sub}_{ses}_same-session.json"


def preproc_status(sub: str, ses: str) -> str:
    return f"{visit_dir(sub, ses)}/preproc/status.json"


def to_rebaseline_tfm(sub: str, ses: str) -> str:
    """ITK transform: rebaseline FLAIR points -> this visit's FLAIR points (``register REB VISIT``)."""
    return f"{visit_dir(sub, ses)}/xfm/{sub}_{ses}_from-rebaseline_affine.tfm"


def register_status(sub: str, ses: str) -> str:
    return f"{visit_dir(sub, ses)}/xfm/register.json"


def to_previous_tfm(sub: str, ses: str) -> str:
    """ITK transform: previous visit's FLAIR points -> this visit's FLAIR points."""
    return f"{visit_dir(sub, ses)}/xfm/{sub}_{ses}_from-previous_affine.tfm"


def detect_dir(sub: str, ses: str, against: str) -> str:
    """``against`` is "rebaseline" or "previous"."""
    return f"{visit_dir(sub, ses)}/detect-{against}"


def detect_status(sub: str, ses: str, against: str) -> str:
    return f"{detect_dir(sub, ses, against)}/status.json"


def detect_done(sub: str) -> str:
    """Written by the patient's detection job once every follow-up has its detect status."""
    return f"{DERIV}/{sub}/detect_done.json"


def tracking_dir(sub: str) -> str:
    return f"{DERIV}/{sub}/tracking"


def tracking_lesions(sub: str) -> str:
    return f"{tracking_dir(sub)}/lesions.tsv"


def tracking_tracks(sub: str) -> str:
    return f"{tracking_dir(sub)}/tracks.tsv"


def tracking_status(sub: str) -> str:
    return f"{tracking_dir(sub)}/status.json"


def patient_report(sub: str) -> str:
    return f"{tracking_dir(sub)}/{sub}_report.html"
