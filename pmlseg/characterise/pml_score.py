"""Transparent rule-based PML-suspicion score: each published imaging feature adds a documented
log-odds weight; the sum goes through a logistic.  Reading aid only (docs/pml_score.md)."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import yaml

from pmlseg.errors import PmlsegError

LEVELS = ("low", "moderate", "high")


def load_rules(path: str | Path | None = None) -> dict:
    """Rules from ``path`` (e.g. configs/pml_rules.yaml) or the packaged default."""
    try:
        text = Path(path).read_text() if path else resources.files("pmlseg.characterise").joinpath("pml_rules.yaml").read_text()
        rules = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise PmlsegError(f"{path or 'packaged pml_rules.yaml'}: cannot read rules ({exc})") from None
    if not isinstance(rules, dict) or "rules" not in rules or "intercept" not in rules or "levels" not in rules:
        raise PmlsegError(f"{path}: rules file needs 'intercept', 'levels' and 'rules'")
    return rules


def _rule_values(f: dict, r: dict) -> dict[str, tuple[float, str]]:
    """For each rule: (strength 0..1 or None when an input feature is missing (NA), explanation).
    A rule with a missing input contributes nothing: the score uses the available features only."""
    R = r["rules"]
    out: dict[str, tuple[float | None, str]] = {}

    def na(rule: str, *keys: str) -> bool:
        gone = [k for k in keys if f.get(k) is None]
        if gone:
            out[rule] = (None, f"n/a ({', '.join(gone)} missing)")
        return bool(gone)

    if not na("juxtacortical", "juxtacortical", "cortical_contact", "gm_fraction_in_lesion"):
        out["juxtacortical"] = (float(f["juxtacortical"]), f"cortical contact {f['cortical_contact']:.0%}, GM in lesion {f['gm_fraction_in_lesion']:.0%}")
    if not na("favoured_region", "lobe"):
        fav = f["lobe"] in R["favoured_region"]["lobes"] or f.get("infratentorial_region") in R["favoured_region"]["regions"]
        out["favoured_region"] = (float(fav), f"{f.get('infratentorial_region') or f['lobe']}")
    L = R["large"]
    d = f["max_diameter_mm"]
    out["large"] = (min(1.0, max(0.0, (d - L["from_mm"]) / (L["to_mm"] - L["from_mm"]))), f"max diameter {d:.0f} mm")
    wm_s, cx_s = f.get("border_sharpness_wm"), f.get("border_sharpness_cortical")
    B = R["ill_defined_wm_border"]
    if wm_s is None:
        out["ill_defined_wm_border"] = (None, "no white-matter border")
    else:
        ill = wm_s <= B["wm_max"] and (cx_s is None or cx_s >= B["cortical_ratio_min"] * wm_s)
        out["ill_defined_wm_border"] = (float(ill), f"WM-side sharpness {wm_s:.2f}/mm, cortical {cx_s if cx_s is not None else 'n/a'}")
    out["satellites"] = (float(f["satellites"] >= R["satellites"]["min_count"]), f"{f['satellites']} punctate foci within 2 cm")
    t1 = f.get("t1_ratio")
    out["t1_hypointense"] = (None, "no T1") if t1 is None else (float(t1 <= R["t1_hypointense"]["ratio_max"]), f"T1/NAWM {t1:.2f}")
    dw = f.get("dwi_ratio")
    out["dwi_hyperintense"] = (None, "no DWI") if dw is None else (float(dw >= R["dwi_hyperintense"]["ratio_min"]), f"DWI/NAWM {dw:.2f}")
    ce = f.get("csf_change")
    ce_txt = "CSF change n/a" if ce is None else f"local CSF change {ce:+.0%}"
    out["no_mass_effect_large"] = (float(not f["mass_effect"] and d >= R["no_mass_effect_large"]["min_diameter_mm"]), ce_txt)
    out["mass_effect"] = (float(f["mass_effect"]), ce_txt)
    out["growth"] = (float(f["new_or_enlarging"] == "enlarging"), f"{f['new_or_enlarging']} (overlap {f.get('previous_overlap', 0):.0%})")
    # penalise lesions whose main location is periventricular (a large juxtacortical lesion may reach the ventricle)
    if not na("periventricular", "periventricular", "dist_ventricle_mm"):
        out["periventricular"] = (float(f.get("location", "periventricular" if f["periventricular"] else "") == "periventricular"),
                                  f"{f['dist_ventricle_mm']:.0f} mm from ventricle")
    O = R["ovoid"]
    if not na("ovoid", "solidity", "sphericity"):
        out["ovoid"] = (float(f["solidity"] >= O["solidity_min"] and f["sphericity"] >= O["sphericity_min"]),
                        f"solidity {f['solidity']:.2f}, sphericity {f['sphericity']:.2f}")
    out["small"] = (float(f["volume_mm3"] <= R["small"]["max_volume_mm3"]), f"{f['volume_mm3']:.0f} mm3")
    sh = [s for s in (wm_s, cx_s) if s is not None]
    out["well_defined"] = ((float(min(sh) >= R["well_defined"]["min_sharpness"]), f"min border sharpness {min(sh):.2f}/mm")
                           if sh else (None, "no border"))
    return out


def score_lesion(f: dict, rules: dict) -> dict:
    vals = _rule_values(f, rules)
    total = float(rules["intercept"])
    reasons = []
    for name, spec in rules["rules"].items():
        if name not in vals:
            raise PmlsegError(f"pml rules: unknown rule '{name}'")
        x, why = vals[name]
        contrib = 0.0 if x is None else float(spec["weight"]) * x
        total += contrib
        reasons.append({"rule": name, "value": x, "contribution": round(contrib, 3), "detail": why})
    score = 1.0 / (1.0 + math.exp(-total))
    lv = rules["levels"]
    level = "high" if score >= lv["high"] else "moderate" if score >= lv["moderate"] else "low"
    return {**f, "pml_score": round(score, 3), "pml_logit": round(total, 3), "pml_suspicion": level, "reasons": reasons}


def score_pml(feats: list[dict], rules: dict | None = None) -> list[dict]:
    """Add pml_score (0-1), pml_suspicion (low/moderate/high) and reasons to each lesion's features."""
    rules = rules or load_rules()
    return [score_lesion(f, rules) for f in feats]
