"""Transparent rule-based PML-suspicion score: each published imaging feature is measured as a strength
0..1 (or None when it cannot be measured), multiplied by a documented log-odds weight from
configs/pml_rules.yaml; the sum goes through a logistic.  Reading aid only (docs/pml_score.md).

Every lesion also gets a one-line explanation (the rules that moved its score most, with the measured
values) and the list of rules that could not be evaluated, so a reader sees why it ranks where it does.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import yaml

from pmlseg.errors import PmlsegError, SetupError
from pmlseg.paths import resource_dir

LEVELS = ("low", "moderate", "high")
RULES_PATH = resource_dir() / "configs" / "pml_rules.yaml"   # the checkout's, or the installed copy
RULES_ENV = "PMLSEG_PML_RULES"


def default_rules_path() -> Path:
    """configs/pml_rules.yaml (of this checkout or the installed package), or the file named by $PMLSEG_PML_RULES."""
    return Path(os.environ.get(RULES_ENV) or RULES_PATH)


def load_rules(path: str | Path | None = None) -> dict:
    """Rules from ``path``, else from default_rules_path() (configs/pml_rules.yaml: the one file the
    pipeline reads, so an edit there changes every score)."""
    path = Path(path) if path else default_rules_path()
    try:
        rules = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        if isinstance(exc, FileNotFoundError):   # an installation or configuration fault, never a visit's verdict
            raise SetupError(f"{path}: cannot read PML rules (no such file); set ${RULES_ENV} to a rules file") from None
        raise PmlsegError(f"{path}: cannot read PML rules ({str(exc).splitlines()[0]})") from None
    if not isinstance(rules, dict) or not {"rules", "intercept", "levels"} <= set(rules):
        raise PmlsegError(f"{path}: rules file needs 'intercept', 'levels' and 'rules'")
    for name, spec in rules["rules"].items():
        if name not in RULES:
            raise PmlsegError(f"{path}: unknown rule '{name}' (known: {', '.join(RULES)})")
        if not isinstance(spec, dict) or not isinstance(spec.get("weight"), (int, float)):
            raise PmlsegError(f"{path}: rule '{name}' needs a numeric 'weight'")
    return rules


def ramp(x: float, zero: float, full: float) -> float:
    """0 at ``zero``, 1 at ``full``, linear between (either direction), clipped."""
    return min(1.0, max(0.0, (x - zero) / (full - zero)))


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


# Each rule: f(features, params) -> (strength 0..1 or None when not measurable, measured value in words).
def _cortex_contact(f, p):
    """Juxtacortical / U-fibre involvement: a white-matter lesion against the cortex.  A lesion that lies in
    the cortex itself (white-matter share below ``wm_full``) is a cortical lesion, MS-typical, not PML, a
    leukoencephalopathy: its contact counts less, nothing at ``wm_zero``."""
    c = f.get("cortex_contact")
    if c is None:
        return None, "cortex contact not measured"
    why = f"touches cortex over {_pct(c)} of its border"
    g = f.get("gm_fraction_in_lesion")
    if g is None or "wm_zero" not in p:
        return ramp(c, p["zero"], p["full"]), why
    wm = ramp(1.0 - g, p["wm_zero"], p["wm_full"])
    return ramp(c, p["zero"], p["full"]) * wm, why + (f", but {_pct(g)} of it lies in grey matter" if wm < 1 else "")


def _ill_defined_wm_border(f, p):
    w = f.get("border_sharpness_wm")
    return (None, "no white-matter border") if w is None else \
        (ramp(w, p["sharp"], p["blurred"]), f"white-matter border sharpness {w:.2f}/mm")


def _sharp_cortical_border(f, p):
    w, c = f.get("border_sharpness_wm"), f.get("border_sharpness_cortical")
    if w is None or c is None:
        return None, "no cortical and white-matter border to compare"
    r = c / max(w, 1e-3)
    return ramp(r, p["ratio_zero"], p["ratio_full"]), f"cortical border {r:.1f}x sharper than white-matter border"


def _satellites(f, p):
    n = f.get("satellites")
    return (None, "satellites not counted") if n is None else (ramp(n, p["zero"], p["full"]), f"{n} satellites")


def _t1_hypointense(f, p):
    t = f.get("t1_ratio")
    return (None, "no T1") if t is None else (ramp(t, p["zero"], p["full"]), f"T1/WM {t:.2f}")


def _dwi_rim(f, p):
    d = f.get("dwi_rim_core")
    if d is None:
        return None, "no DWI" if f.get("dwi_ratio") is None else "lesion too thin for a DWI core"
    return ramp(d, p["zero"], p["full"]), f"DWI rim/core {d:.2f}"


def _large(f, p):
    d = f.get("max_diameter_mm")
    return (None, "size not measured") if d is None else (ramp(d, p["zero_mm"], p["full_mm"]), f"{d:.0f} mm across")


def _not_small(f, p):
    v = f.get("volume_mm3")
    return (None, "size not measured") if v is None else (ramp(v, p["zero_mm3"], p["full_mm3"]), f"{v / 1000:.2f} ml")


def _favoured_region(f, p):
    where = f.get("infratentorial_region") or f.get("lobe")
    return (None, "location not measured") if where is None else \
        (float(where in p["lobes"] or where in p["regions"]), f"{where}")


def _no_mass_effect_large(f, p):
    if f.get("mass_effect") is None or f.get("max_diameter_mm") is None:
        return None, "mass effect not measurable"
    big = f["max_diameter_mm"] >= p["min_diameter_mm"]
    return float(big and not f["mass_effect"]), f"no mass effect at {f['max_diameter_mm']:.0f} mm" if big else \
        f"{f['max_diameter_mm']:.0f} mm (too small to judge)"


def _mass_effect(f, p):
    if f.get("mass_effect") is None:
        return None, "mass effect not measurable"
    return float(f["mass_effect"]), f"local CSF change {f['csf_change']:+.0%}"


def _growth(f, p):
    g = f.get("growth_ml_per_month")
    if g is None:
        return None, f.get("growth_unavailable") or "no growth curve"
    return ramp(g, p["zero"], p["full"]), f"{'grows' if g >= 0 else 'shrinks'} {abs(g):.2f} ml/month"


def _ventricle_contact(f, p):
    v = f.get("ventricle_contact")
    return (None, "ventricles not found") if v is None else \
        (ramp(v, p["zero"], p["full"]), f"touches the ventricles over {_pct(v)} of its border")


def _perpendicular_to_ventricles(f, p):
    a = f.get("ventricle_alignment")
    if a is None:
        return None, "no main axis near the ventricles"
    return ramp(a, p["zero"], p["full"]), f"main axis {math.degrees(math.acos(min(1.0, a))):.0f} deg off the ventricle normal"


def _ovoid(f, p):
    s = f.get("solidity")
    return (None, "shape not measured") if s is None else (ramp(s, p["zero"], p["full"]), f"solidity {s:.2f}")


RULES = {
    "cortex_contact": _cortex_contact, "ill_defined_wm_border": _ill_defined_wm_border,
    "sharp_cortical_border": _sharp_cortical_border, "satellites": _satellites, "t1_hypointense": _t1_hypointense,
    "dwi_rim": _dwi_rim, "large": _large, "not_small": _not_small, "favoured_region": _favoured_region,
    "no_mass_effect_large": _no_mass_effect_large, "mass_effect": _mass_effect, "growth": _growth,
    "ventricle_contact": _ventricle_contact, "perpendicular_to_ventricles": _perpendicular_to_ventricles,
    "ovoid": _ovoid,
}

# rules whose feature speaks for MS (or another diagnosis) in the literature: their weight is <= 0
FAVOURS_MS = frozenset({"ventricle_contact", "perpendicular_to_ventricles", "ovoid", "mass_effect"})


def rule_values(f: dict, rules: dict) -> dict[str, tuple[float | None, str]]:
    """Strength (0..1, None = not measurable) and measured value in words, per rule of ``rules``."""
    out = {}
    for name, spec in rules["rules"].items():
        if name not in RULES:
            raise PmlsegError(f"pml rules: unknown rule '{name}'")
        out[name] = RULES[name](f, spec)
    return out


def explain(reasons: list[dict], top: int = 3) -> tuple[str, str]:
    """(pml_explanation, pml_unavailable): the rules that moved the score most, strongest first, with
    their measured values; and the rules that could not be evaluated."""
    moved = sorted((r for r in reasons if r["contribution"]), key=lambda r: -abs(r["contribution"]))[:top]
    text = "; ".join(f"{r['detail']} ({r['contribution']:+.1f})" for r in moved) or "no feature moved the score"
    missing = "; ".join(f"{r['rule']} ({r['detail']})" for r in reasons if r["value"] is None)
    return text, missing


def score_lesion(f: dict, rules: dict) -> dict:
    total = float(rules["intercept"])
    reasons = []
    for name, (x, why) in rule_values(f, rules).items():
        contrib = 0.0 if x is None else float(rules["rules"][name]["weight"]) * x
        total += contrib
        reasons.append({"rule": name, "value": None if x is None else round(x, 3), "contribution": round(contrib, 3),
                        "detail": why})
    score = 1.0 / (1.0 + math.exp(-total))
    lv = rules["levels"]
    level = "high" if score >= lv["high"] else "moderate" if score >= lv["moderate"] else "low"
    text, missing = explain(reasons)
    return {**f, "pml_score": round(score, 3), "pml_logit": round(total, 3), "pml_suspicion": level,
            "pml_explanation": text, "pml_unavailable": missing, "reasons": reasons}


def score_pml(feats: list[dict], rules: dict | None = None) -> list[dict]:
    """Add pml_score (0-1), pml_suspicion (low/moderate/high), pml_explanation, pml_unavailable and
    reasons (every rule's strength, contribution and measured value) to each lesion's features."""
    rules = rules or load_rules()
    return [score_lesion(f, rules) for f in feats]
