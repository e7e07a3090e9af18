"""`pmlseg detect`: new and enlarging lesions between a rebaseline and a follow-up FLAIR."""

from __future__ import annotations

NAME = "detect"
HELP = "find new and enlarging lesions between a rebaseline and a follow-up MRI"
DESCRIPTION = """Find new and enlarging T2-FLAIR lesions of a follow-up relative to the rebaseline.

Reads raw NIfTI FLAIRs (any grids, unregistered). Inside: brain mask, affine registration of the
follow-up onto the rebaseline (or --followup-transform), registration QC, intensity normalisation,
the 2.5D MONAI model (models/newlesion-2p5d by default; its sha256 is checked) or the classical
subtraction baseline, threshold, 26-connected components of >= 10 mm^3. Writes into --out:
  new_lesions.nii.gz  label map on the rebaseline's own grid (lesion i has value i)
  lesions.tsv         lesion_id, volume_mm3, centroid_x/y/z (LPS mm, ITK physical space), new_or_enlarging,
                      location and shape features, pml_score (0-1), pml_suspicion, reasons (docs/pml_score.md)
  qc.json             status, registration QC, timings, model name + sha256
  report.html/.pdf    reviewer's report: lesions sorted by PML suspicion, rebaseline and follow-up side by side
                      in an embedded viewer (NiiVue, offline), crops, decision export
  dicom/              DICOM SEG of the new lesions and SR (TID 1500) with the measurements
  baseline_space/     optional T1/T2/DWI inputs resampled onto the rebaseline FLAIR grid
A stable follow-up (no new lesion) exits 0 with every output: empty label map, header-only lesions.tsv,
a report saying "no new or enlarging lesion", an SR recording it, and no SEG (qc.json says why).
Optional images and the template fit for lesion location get registration QC too; a failed one leaves
its features NA (lesions.tsv missing_features) and the PML score uses the others.
Every output of a previous run in --out is removed first (and again if this run fails).
A failed registration QC stops with an error naming both files (exit 65, bad input); with --allow-qc-failure it
writes qc.json with status "failed", no lesion outputs, and exits 0 (cohort runs go on).
"""


def add_arguments(p) -> None:
    p.add_argument("--baseline", required=True, metavar="BL_FLAIR", help="rebaseline FLAIR (NIfTI)")
    p.add_argument("--followup", required=True, metavar="FU_FLAIR", help="follow-up FLAIR (NIfTI)")
    for k, what in (("baseline-t1", "rebaseline T1w"), ("baseline-t2", "rebaseline T2w"),
                    ("followup-t1", "follow-up T1w"), ("followup-t2", "follow-up T2w"),
                    ("followup-dwi", "follow-up DWI (first volume used)")):
        p.add_argument(f"--{k}", metavar="F", help=f"optional {what}; resampled to the rebaseline space "
                                                    "for lesion characterisation, never required")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the model runs (auto: CUDA if available; mixed precision on CUDA)")
    p.add_argument("--model", metavar="NAME_OR_DIR", help="model name under models/ or a model folder "
                                                          "(default newlesion-2p5d)")
    p.add_argument("--method", default="model", choices=["model", "classical"],
                   help="model (default) or the classical FLAIR-subtraction baseline")
    p.add_argument("--followup-transform", metavar="TFM",
                   help="ITK transform mapping rebaseline points to follow-up points; skips registration")
    p.add_argument("--allow-qc-failure", action="store_true",
                   help="on failed registration QC write qc.json (status failed) and exit 0 instead of 65")


def run(args) -> int:
    from pathlib import Path

    from pmlseg.detect import pipeline
    from pmlseg.errors import PmlsegError, SetupError

    pipeline.clear_outputs(args.out)  # whatever happens next, no previous run's output stays
    # fail fast, before the model is loaded
    for path, what in ((args.baseline, "rebaseline FLAIR (--baseline)"), (args.followup, "follow-up FLAIR (--followup)")):
        if not Path(path).is_file():
            raise PmlsegError(f"{path}: {what} not found")
    predictor = None
    if args.method == "model":
        from pmlseg.detect.predictor import Predictor

        try:
            predictor = Predictor(args.model, args.device)
        except PmlsegError as exc:  # a missing/corrupt model or no CUDA GPU: the set-up, not this visit
            raise SetupError(str(exc)) from None
    optional = {k: getattr(args, k) for k in pipeline.OPTIONAL}
    res = pipeline.run_case(args.baseline, args.followup, args.out, predictor=predictor, method=args.method,
                            followup_transform=args.followup_transform, optional=optional,
                            allow_qc_failure=args.allow_qc_failure)
    if res.status == "ok":
        print(f"{res.n_lesions} new/enlarging lesion(s) -> {args.out}" if res.n_lesions else
              f"no new or enlarging lesion -> {args.out}")
    else:
        print(f"registration QC failed; wrote {args.out}/qc.json (status failed)")
    return 0
