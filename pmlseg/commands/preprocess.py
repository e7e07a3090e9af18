"""`pmlseg preprocess IMAGE OUT_IMAGE OUT_MASK`: per-visit N4, brain mask and intensity normalisation."""

from __future__ import annotations

NAME = "preprocess"
HELP = "bias-correct, brain-mask and intensity-normalise one visit's image"
DESCRIPTION = """\
N4 bias-field correction, an atlas brain mask (ICBM152 template bundled in nilearn, affine-registered to
the image down to 4 mm) and division by the brain's tissue mode, so visits from different scanners compare. Writes
OUT_IMAGE (float32, same grid as IMAGE) and OUT_MASK (uint8). The workflow registers these
preprocessed FLAIRs to the rebaseline; the geometry is unchanged, so the transforms apply to the raw
images too. An unreadable or non-brain image is a one-line error (exit 65).
"""


def add_arguments(parser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="NIfTI image (e.g. a visit's FLAIR)")
    parser.add_argument("out_image", metavar="OUT_IMAGE", help="preprocessed image (.nii.gz)")
    parser.add_argument("out_mask", metavar="OUT_MASK", help="brain mask (.nii.gz)")
    parser.add_argument("--modality", default="FLAIR", choices=["FLAIR", "T1w", "T2w"],
                        help="contrast of IMAGE, picks the template for the brain mask (default FLAIR)")


def run(args) -> int:
    import SimpleITK as sitk

    from pmlseg.atomic import write_nifti
    from pmlseg.errors import PmlsegError
    from pmlseg.registration.preprocess import brain_mask, n4_bias_correct, normalise_intensity

    try:
        img = sitk.ReadImage(args.image, sitk.sitkFloat32)
    except RuntimeError as exc:
        raise PmlsegError(f"{args.image}: unreadable image ({str(exc).strip().splitlines()[-1]})") from None
    corrected = n4_bias_correct(img, name=args.image)
    # the template fit's last level at 4 mm, as `pmlseg register` does: the mask restricts the registration metric
    # (dilated) and picks the tissue mode; Dice 0.997-0.999 against the 2 mm fit, 1-2 s less per visit (session 11)
    mask = brain_mask(corrected, args.modality, name=args.image, finest_mm=4.0)
    norm = normalise_intensity(corrected, mask, name=args.image)
    write_nifti(args.out_mask, mask)
    write_nifti(args.out_image, norm)
    return 0
