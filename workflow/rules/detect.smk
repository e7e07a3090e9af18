# Stage 4: new/enlarging lesion detection (the model) against the rebaseline and against the previous
# visit; detection also characterises each lesion (PML score) and writes the visit report.
# Asks the scheduler for gpu=1 only when use_gpu is set; otherwise runs on CPU.

GPU = {"gpu": 1} if config["use_gpu"] else {}
DEVICE = "cuda" if config["use_gpu"] else "cpu"


def detect_inputs(w):
    r = visit(w.sub, w.ses)
    if w.against == "rebaseline":
        base = rebaseline(w.sub)
        reg = P(L.register_status(w.sub, w.ses))
    else:
        base = visit(w.sub, r["previous"])
        reg = P(L.visit_dir(w.sub, w.ses) + "/xfm/chain.json")
    return {"reg": reg, "baseline": image(base, "flair"), "followup": image(r, "flair")}


def detect_args(w):
    r = visit(w.sub, w.ses)
    base = rebaseline(w.sub) if w.against == "rebaseline" else visit(w.sub, r["previous"])
    tfm = (L.to_rebaseline_tfm(w.sub, w.ses) if w.against == "rebaseline" else L.to_previous_tfm(w.sub, w.ses))
    args = [f"--baseline {Q(image(base, 'flair'))}", f"--followup {Q(image(r, 'flair'))}",
            f"--followup-transform {Q(P(tfm))}", f"--out {Q(P(L.detect_dir(w.sub, w.ses, w.against)))}",
            f"--device {DEVICE}", f"--method {config['detect_method']}"]
    for kind, flag in (("t1w", "t1"), ("t2w", "t2")):
        if base[kind]:
            args.append(f"--baseline-{flag} {Q(image(base, kind))}")
        if r[kind]:
            args.append(f"--followup-{flag} {Q(image(r, kind))}")
    if r["dwi"]:
        args.append(f"--followup-dwi {Q(image(r, 'dwi'))}")
    if config.get("model"):
        args.append(f"--model {Q(config['model'])}")
    return " ".join(args)


rule detect:
    """Detect new/enlarging lesions in a follow-up; a QC failure is recorded for the index, not fatal."""
    input:
        unpack(detect_inputs),
    output:
        status=P(L.detect_status("{sub}", "{ses}", "{against}")),
    params:
        args=detect_args,
    log:
        P("logs/detect/{sub}_{ses}_{against}.log"),
    benchmark:
        P("benchmarks/detect/{sub}_{ses}_{against}.tsv")
    threads: res("detect", "threads", 2)
    resources:
        mem_mb=res("detect", "mem_mb", 8000),
        runtime=res("detect", "runtime", 60),
        **GPU,
    shell:
        "OMP_NUM_THREADS={threads} ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS={threads} "
        "{PMLSEG} step {output.status:q} --stage detect --step-log {log:q} --requires {input.reg:q} -- "
        "{PMLSEG} detect {params.args}"
