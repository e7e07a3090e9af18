"""Longitudinal preprocessing and affine registration, with registration QC.

Stable API (other packages depend on it; keep it):

    from pmlseg.registration.affine import register_affine
    res = register_affine(fixed: sitk.Image, moving: sitk.Image,
                          fixed_mask: sitk.Image | None = None,
                          moving_mask: sitk.Image | None = None,
                          init="auto", rigid_only=False, edges=True)  # -> RegistrationResult
    # MI rigid, then edge alignment (pmlseg.registration.edges); edges=False between different brains
    res.transform   # sitk.Transform (AffineTransform, 12 dof) mapping FIXED physical points ->
                    # MOVING physical points (ITK convention):
                    # sitk.Resample(moving, fixed, res.transform) puts MOVING on FIXED's grid
    res.metric, res.seconds, res.stages

    from pmlseg.registration.qc import registration_qc
    qc = registration_qc(fixed, moving, transform, fixed_mask=None)  # -> QCResult
    qc.similarity: float, qc.passed: bool, qc.reason: str (one line naming both images)

    from pmlseg.registration.preprocess import n4_bias_correct, brain_mask, normalise_intensity
    n4_bias_correct(image, mask=None) -> float32 image
    brain_mask(image, modality="FLAIR") -> UInt8 mask on image's grid ("FLAIR", "T1w", "T2w")
    normalise_intensity(image, mask) -> float32 image, brain tissue mode = 1.0

    from pmlseg.registration.longitudinal import build_longitudinal_space
    build_longitudinal_space(visits, rebaseline=None, out_dir=...) -> LongitudinalSpace

Bad input (2D/empty/NaN images, masks off the image grid) raises pmlseg.errors.PmlsegError with a
one-line message naming the image; a failed alignment is reported by QC, never passed on silently.
"""
