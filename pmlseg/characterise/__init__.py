"""Lesion characterisation and the PML-suspicion score (a reading aid, not a diagnosis).

API used by the pipeline after detection::

    from pmlseg.characterise import characterise_lesions, score_pml, load_rules
    feats = characterise_lesions(labels, images, brain_mask=None, baseline_labels_prev=None, priors=None)
    #   labels: new-lesion label map (lesion i = value i) on the rebaseline FLAIR grid
    #   images: {'flair_bl', 'flair_fu'} required, optional 't1_fu', 't1ce_fu', 'dwi_fu', 't2_fu';
    #           all already on the label grid.  priors: location.register_to_template(flair_bl) (computed
    #           when None; pass it to reuse).  -> list of dicts, one per lesion (docs/pml_score.md)
    scored = score_pml(feats, rules=load_rules())   # configs/pml_rules.yaml; adds pml_score, pml_suspicion,
    #   pml_explanation (top rules with measured values), pml_unavailable (rules not measurable), reasons
"""

from pmlseg.characterise.features import characterise_lesions
from pmlseg.characterise.pml_score import load_rules, score_pml

__all__ = ["characterise_lesions", "score_pml", "load_rules"]
