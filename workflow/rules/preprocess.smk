# Stage 2: per-visit preprocessing (N4, brain mask, intensity normalisation) of the FLAIR that is registered.


rule preprocess:
    """Bias-correct, brain-mask and normalise one visit's FLAIR; a bad image is recorded, not fatal."""
    input:
        flair=lambda w: image(visit(w.sub, w.ses), "flair"),
    output:
        status=P(L.preproc_status("{sub}", "{ses}")),
    params:
        image=lambda w: P(L.preproc_flair(w.sub, w.ses)),
        mask=lambda w: P(L.brain_mask(w.sub, w.ses)),
    log:
        P("logs/preprocess/{sub}_{ses}.log"),
    benchmark:
        P("benchmarks/preprocess/{sub}_{ses}.tsv")
    threads: res("preprocess", "threads", 1)
    resources:
        mem_mb=res("preprocess", "mem_mb", 3000),
        runtime=res("preprocess", "runtime", 30),
    shell:
        "OMP_NUM_THREADS={threads} ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS={threads} "
        "{PMLSEG} step {output.status:q} --stage preprocess --step-log {log:q} -- "
        "{PMLSEG} preprocess {input.flair:q} {params.image:q} {params.mask:q}"
