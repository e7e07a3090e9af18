"""Synthetic MS/PML surveillance cohort: ICBM152 phantoms, lesions, MR contrasts, DICOM and truth.

The demo and the tests need data the project makes itself. ``pmlseg synth OUT`` (pmlseg.commands.synth)
writes DICOM studies plus ground truth; the pieces are reusable, e.g. for detection training pairs.

Python API (all arrays [x, y, z] on the 1 mm template grid unless said otherwise)::

    from pmlseg.synth import anatomy, lesions, contrast, acquisition
    import numpy as np

    tissues = anatomy.load_template()          # Tissues: gm, wm, csf, bone, fat fractions + affine (RAS)
                                               # + ventricles, dist_ventricle, dist_cortex; cached (~3-5 s)
    rng = np.random.default_rng(0)
    history = lesions.plan_patient(tissues, rng, n_visits=2, pml=False)   # list[Lesion] with scale per visit
    one = lesions.make_ms_lesion(tissues, rng, lesion_id=99, n_visits=2)   # or build lesions yourself
    pml = lesions.make_pml_lesions(tissues, rng, first_id=100, n_visits=2, appear=1)
    maps = lesions.render_lesions(history, tissues, visit=1)  # LesionMaps: ms, pml, pml_edge, labels (ids)
    flair = contrast.render(tissues, maps, "FLAIR", rng)      # float32; also T1w, T2w, DWI_b0, DWI_b1000

    grid = acquisition.make_grid("axial", (320, 320, 50), (0.7, 0.7, 3.0), tilt_deg=(8, 0, 0))
    motion = acquisition.random_motion(rng)    # SimpleITK AffineTransform: scanner point -> template point
    bias = acquisition.bias_field(grid, rng)   # (z, y, x) multiplicative field
    img = acquisition.acquire(flair, tissues, grid, motion, bias, noise_sigma=0.016, rng=rng)  # sitk.Image
    lab = acquisition.resample(maps.labels, tissues.affine, grid, motion, labels=True)        # sitk.Image

    from pmlseg.synth.truth import as_dcm2niix_nifti   # nibabel image laid out as dcm2niix writes the series
    from pmlseg.synth.cohort import generate_cohort     # the whole cohort (what the CLI runs)

Modules: anatomy (template tissues), lesions (MS-like and PML-like lesions in WM), contrast (FLAIR,
T1w, T2w, DWI intensities), acquisition (pose, grids, slice profile, bias, Rician noise), protocols
(vendor-specific series and tags), dicom (classic MR Image Storage writer), truth (dcm2niix-grid
ground truth), cohort (orchestration and layout). Determinism: everything draws from numpy
Generators seeded with (seed, patient[, visit]).
"""
