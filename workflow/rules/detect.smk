# Stage 4: new/enlarging lesion detection (the model) against the rebaseline and against the previous
# visit; detection also characterises each lesion (PML score) and writes the visit report.
# One job per patient (`pmlseg detect-patient`): the model is loaded and the rebaseline's template
# registrations computed once for all its follow-ups; every follow-up still gets its own folder,
# status.json and log (L.detect_dir / L.detect_status, logs/detect/SUB_SES_AGAINST.log), as before.
# Asks the scheduler for gpu=1 only when use_gpu is set; otherwise runs on CPU.
import json

GPU = {"gpu": 1} if config["use_gpu"] else {}
DEVICE = "cuda" if config["use_gpu"] else "cpu"


def detect_cases(sub):
    """Every detection of ``sub``: each follow-up against the rebaseline and (from the second on) the previous visit."""
    cases = []
    for r in followups(sub):
        ses = r["session"]
        for against in ("rebaseline", "previous") if needs_previous(r) else ("rebaseline",):
            fit = {}
            if against == "rebaseline":
                base, tfm, req = rebaseline(sub), L.to_rebaseline_tfm(sub, ses), L.register_status(sub, ses)
                fit = {"template_fit": P(L.template_fit(sub, base["session"]))}
            else:
                base, tfm, req = visit(sub, r["previous"]), L.to_previous_tfm(sub, ses), L.visit_dir(sub, ses) + "/xfm/chain.json"
            # the follow-up's T1/T2/DWI feed lesion characterisation and the report's viewer; the baseline
            # visit's would only be resampled into baseline_space/ (read by nothing), at a registration each
            optional = {}
            for kind, flag in (("t1w", "t1"), ("t2w", "t2")):
                if r[kind]:
                    optional[f"followup_{flag}"] = image(r, kind)
            if r["dwi"]:
                optional["followup_dwi"] = image(r, "dwi")
            cases.append({"status": P(L.detect_status(sub, ses, against)), "out": P(L.detect_dir(sub, ses, against)),
                          "baseline": image(base, "flair"), "followup": image(r, "flair"),
                          "followup_transform": P(tfm), "optional": optional, "requires": [P(req)],
                          "log": P(f"logs/detect/{sub}_{ses}_{against}.log"), **fit,
                          # written by the registration job (register.smk same_session_args), not with preprocess
                          **({"same_session": P(L.same_session(sub, ses))}
                             if optional and not config["preprocess"] else {})})
    return cases


def detect_inputs(w):
    files = set()
    for c in detect_cases(w.sub):
        files.update([*c["requires"], c["baseline"], c["followup"]])
    return sorted(files)


rule detect:
    """Detect new/enlarging lesions in all follow-ups of a patient; a QC failure is recorded for the index, not fatal."""
    input:
        detect_inputs,
    output:
        status=P(L.detect_done("{sub}")),
    params:
        cases=lambda w: json.dumps(detect_cases(w.sub)),
        model=f"--model {Q(config['model'])}" if config.get("model") else "",
    log:
        P("logs/detect_patient/{sub}.log"),
    benchmark:
        P("benchmarks/detect/{sub}.tsv")
    threads: lambda w: shared_threads("detect", 2, lambda: unfinished("detect", lambda: len(manifest().followups)))
    resources:
        mem_mb=res("detect", "mem_mb", 8000),
        runtime=lambda w: res("detect", "runtime", 60) * max(1, len(detect_cases(w.sub))),
        **GPU,
    shell:
        "OMP_NUM_THREADS={threads} ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS={threads} "
        "{PMLSEG} --log-file {log:q} detect-patient {output.status:q} --cases {params.cases:q} "
        "--device {DEVICE} --method {config[detect_method]} {params.model}"
