"""`pmlseg register FIXED MOVING --transform OUT.tfm`: affine registration with QC."""

from __future__ import annotations

NAME = "register"
HELP = "affine-register one image to another (mutual information, then edge alignment) and check the result"
DESCRIPTION = """\
Register MOVING to FIXED with a 12-dof affine, robust to contrast (T1/T2/FLAIR), scanner and thick
2D slices: a rigid Mattes mutual-information stage on a 4/2 mm pyramid (started from the scanner
coordinates and from the centres of mass, the better kept), then an affine refinement that aligns
edges (normalised gradient fields within FIXED's slice planes, 3 then 1.5 mm).  Mutual information
alone stops 0.5-1.2 mm short on thick-slice pairs from two scanners; with the edge stage the real
pairs are 0.17-0.49 mm (median) from the reference transforms (docs/registration.md).

Series of one session (T1/T2/DWI -> that visit's FLAIR) share scanner coordinates: use
--init identity --rigid; no mutual-information stage then runs, the edge alignment (3, then
1.5 mm) starts from the header alignment (the detector registers its T1/T2/DWI the same way).

Output: --transform OUT.tfm, an ITK transform file that maps physical points of FIXED to the
matching physical points of MOVING (ITK convention).  So
    tfm = sitk.ReadTransform("OUT.tfm"); sitk.Resample(moving, fixed, tfm)
puts MOVING on FIXED's voxel grid (this is what --output writes, linear interpolation).

By default the metric is restricted to a brain mask of FIXED computed from the bundled ICBM152
template (--fixed-modality picks its contrast; a 4 mm template fit, dilated: it only has to hold
the brain); --fixed-mask uses yours (it must lie on FIXED's grid), --no-brain-mask uses the whole image.

After registration a QC score (gradient-orientation agreement inside the brain) is computed; a
pair below the calibrated threshold (wrong patient, different anatomy, failed alignment) is
reported as failed: a one-line error naming both files and exit status 65.  The transform is
still written (for inspection) unless QC failed and --keep-failed is not given.
"""


def add_arguments(p):
    p.add_argument("fixed", help="reference image (NIfTI), e.g. the rebaseline FLAIR")
    p.add_argument("moving", help="image to align to FIXED (NIfTI)")
    p.add_argument("--transform", required=True, metavar="OUT.tfm",
                   help="write the transform here (ITK format; maps FIXED points to MOVING points)")
    p.add_argument("--output", metavar="MOVED.nii.gz", help="also write MOVING resampled onto FIXED's grid")
    p.add_argument("--fixed-mask", metavar="M", help="binary mask on FIXED's grid restricting the metric")
    p.add_argument("--fixed-modality", default="FLAIR", choices=["FLAIR", "T1w", "T2w"],
                   help="contrast of FIXED, for the automatic brain mask (default FLAIR)")
    p.add_argument("--no-brain-mask", action="store_true",
                   help="do not compute a brain mask of FIXED; use the whole image")
    p.add_argument("--init", default="auto", choices=["auto", "moments", "geometry", "identity"],
                   help="starting alignment: auto (default: the better of scanner coordinates and centres of mass after a coarse rigid fit), moments, geometry (image centres), identity")
    p.add_argument("--rigid", action="store_true",
                   help="6 dof only (same session: the scanner's geometry is shared, nothing to scale)")
    p.add_argument("--mi-only", action="store_true",
                   help="skip the edge-alignment stage (mutual-information affine only, the older recipe)")
    p.add_argument("--qc-json", metavar="QC.json", help="write the QC result (similarity, passed, reason) as JSON")
    p.add_argument("--keep-failed", action="store_true", help="write the transform even when QC fails")
    p.add_argument("--template-fit", nargs=2, metavar=("FLAIR", "OUT.json"),
                   help="(workflow) meanwhile, in a thread, fit the ICBM152 template to FLAIR (the rebaseline's) for the "
                        "detection job: brain mask and transform beside OUT.json, which names them and the voxels' digest")
    p.add_argument("--rebaseline-fit", metavar="FIT.json",
                   help="(workflow) the rebaseline's template fit written by its first follow-up's job: its 4 mm brain "
                        "mask restricts the metric when it was made from FIXED's voxels (else FIXED is fitted here)")
    p.add_argument("--same-session", nargs="+", metavar="PATH",
                   help="(workflow) OUT.json IMAGE...: meanwhile, in a thread, register each IMAGE (T1/T2/DWI of "
                        "MOVING's session) to MOVING rigidly as the detection does; transforms beside OUT.json, "
                        "with the voxels' digests")


def _read(path: str, what: str):
    import os

    import SimpleITK as sitk

    from pmlseg.errors import PmlsegError

    if not os.path.isfile(path):
        raise PmlsegError(f"{path}: {what} not found")
    try:
        return sitk.ReadImage(path)
    except RuntimeError as exc:
        raise PmlsegError(f"{path}: cannot read {what} as an image ({str(exc).strip().splitlines()[-1][:120]})") from None


def run(args) -> int:
    from pmlseg.registration.affine import check_image

    fixed = _read(args.fixed, "fixed image")
    moving = _read(args.moving, "moving image")
    check_image(fixed, args.fixed)  # refuse bad input before any work
    check_image(moving, args.moving)
    coarse = _fixed_mask_from_template_fit(args)
    ahead = _start_ahead(args, coarse)
    try:
        return _register(args, fixed, moving, coarse)
    finally:
        _finish_ahead(ahead)


def _fixed_mask_from_template_fit(args):
    """A Future for FIXED's metric mask when --template-fit fits FIXED itself (the workflow's first follow-up):
    the fit passes through the 4 mm fit this mask is, so FIXED is not fitted twice; else None."""
    import os
    from concurrent.futures import Future

    if not args.template_fit or args.fixed_mask or args.no_brain_mask or args.fixed_modality != "FLAIR":
        return None
    try:
        return Future() if os.path.samefile(args.template_fit[0], args.fixed) else None
    except OSError:  # no such FLAIR: the fit's own error says so
        return None


def _start_ahead(args, coarse=None) -> list:
    """Work for the detection job that needs no pair (--template-fit, --same-session): a thread each beside the
    registration when the job owns more than one core, else in turn (pmlseg.background)."""
    from pmlseg.background import worker

    tasks = []
    if args.template_fit:
        from pmlseg.detect.predictor import read_image
        from pmlseg.registration.template_fit import write_template_fit

        flair, fit_out = args.template_fit

        def fit():
            try:
                write_template_fit(read_image(flair, "rebaseline FLAIR"), fit_out, name=flair, coarse=coarse)
            except BaseException as exc:
                if coarse is not None and not coarse.done():  # e.g. unreadable: never leave the registration waiting
                    coarse.set_exception(exc)
                raise

        tasks.append(("template fit", fit))
    if args.same_session and len(args.same_session) > 1:
        from pmlseg.detect.same_session import write_same_session

        session_out, *images = args.same_session
        tasks.append(("same-session registrations", lambda: write_same_session(args.moving, images, session_out)))
    futures = []
    for what, task in tasks:
        pool = worker(what)
        futures.append((what, pool.submit(task)))
        pool.shutdown(wait=False)
    return futures


def _finish_ahead(futures: list) -> None:
    """Wait for them; a problem with an image is only logged (the detection meets it itself and records it)."""
    import logging

    from pmlseg.errors import PmlsegError

    for what, future in futures:
        try:
            future.result()
        except PmlsegError as exc:
            logging.getLogger(__name__).warning("%s for the detection not written: %s", what, exc)


def _fixed_brain_mask(args, fixed, coarse):
    """FIXED's 4 mm template-fit mask: from the --template-fit thread when it fits FIXED, or as that thread
    wrote it for the patient's first follow-up (--rebaseline-fit), else fitted here."""
    from pmlseg.errors import PmlsegError
    from pmlseg.registration.preprocess import brain_mask

    if coarse is not None:
        try:
            return coarse.result()
        except PmlsegError:
            pass  # that fit's own warning follows; fitted here as without it
    elif args.rebaseline_fit and args.fixed_modality == "FLAIR":
        from pmlseg.registration.template_fit import coarse_mask

        written = coarse_mask(fixed, args.rebaseline_fit)
        if written is not None:
            return written
    return brain_mask(fixed, args.fixed_modality, name=args.fixed, finest_mm=4.0)


def _register(args, fixed, moving, coarse=None) -> int:
    import json
    import logging

    import SimpleITK as sitk

    from pmlseg.atomic import atomic_path, write_nifti, write_text
    from pmlseg.errors import PmlsegError
    from pmlseg.registration.affine import check_mask, register_affine, resample_to
    from pmlseg.registration.qc import registration_qc

    log = logging.getLogger(__name__)
    mask = None
    if args.fixed_mask:
        mask = check_mask(_read(args.fixed_mask, "fixed mask"), fixed, args.fixed_mask, args.fixed)
    elif not args.no_brain_mask:
        try:
            mask = sitk.BinaryDilate(_fixed_brain_mask(args, fixed, coarse), [3, 3, 1])
        except PmlsegError as exc:  # no brain found: fall back to the whole image, QC will judge
            log.warning("%s; registering without a brain mask", exc)
    res = register_affine(fixed, moving, fixed_mask=mask, init=args.init, rigid_only=args.rigid,
                          edges=not args.mi_only, fixed_name=args.fixed, moving_name=args.moving)
    qc = registration_qc(fixed, moving, res.transform, fixed_mask=mask,
                         fixed_name=args.fixed, moving_name=args.moving)
    if args.qc_json:
        write_text(args.qc_json, json.dumps({"fixed": args.fixed, "moving": args.moving, "similarity": qc.similarity,
                                             "passed": qc.passed, "reason": qc.reason, "metrics": qc.metrics,
                                             "seconds": res.seconds}, indent=2) + "\n")
    if qc.passed or args.keep_failed:
        with atomic_path(args.transform, suffix=".tfm") as tmp:
            sitk.WriteTransform(res.transform, str(tmp))
        if args.output and qc.passed:
            write_nifti(args.output, resample_to(fixed, moving, res.transform))
    if not qc.passed:
        raise PmlsegError(qc.reason)
    log.info("%s", qc.reason)
    return 0
