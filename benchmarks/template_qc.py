"""Calibrates the template-registration QC (pmlseg.characterise.location.TEMPLATE_QC_THRESHOLD).

Prints the gradient agreement of the ICBM152 template fit for every real FLAIR in ../shared/data
(should pass) and for deliberate failures (should fail): the right fit followed by a 20 degree
rotation, and a 40 mm shift.  Run: python benchmarks/template_qc.py
"""

import sys

import SimpleITK as sitk

from pmlseg.characterise import location as loc
from pmlseg.paths import shared_data_dir
from pmlseg.registration.qc import registration_qc


def spoil(tfm, deg=0.0, shift=0.0):
    bad = sitk.Euler3DTransform()
    bad.SetRotation(0.0, 0.0, deg / 57.2958)
    bad.SetTranslation((shift, 0.0, 0.0))
    return sitk.CompositeTransform([tfm, bad])


def main() -> int:
    root = shared_data_dir() / "ljubljana-longitudinal"
    print(f"{'scan':<24}{'fit':>8}{'rot20':>8}{'shift40':>8}   (threshold {loc.TEMPLATE_QC_THRESHOLD})")
    tpl = loc.load_template()
    fixed, fmask = loc._at(tpl["t1"], 2.0), loc._at(tpl["brain"], 2.0, True)
    for flair in sorted(root.glob("patient*/study*_FLAIR.nii.gz")):
        img = sitk.Cast(sitk.ReadImage(str(flair)), sitk.sitkFloat32)
        pri = loc.register_to_template(img)
        moving = loc._at(img, 2.0)
        tfm = pri.to_mni.GetInverse()
        vals = [pri.qc.similarity] + [registration_qc(fixed, moving, spoil(tfm, *a), fixed_mask=fmask).similarity
                                      for a in ((20.0, 0.0), (0.0, 40.0))]
        print(f"{flair.parent.name + '/' + flair.name[:6]:<24}" + "".join(f"{v:8.2f}" for v in vals), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
