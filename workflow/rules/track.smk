# Stage 5: lesion tracking across a patient's visits (stable lesion ids, growth curves).


def track_inputs(w):
    return [P(L.detect_done(w.sub))] if followups(w.sub) else [P("manifest.tsv")]


rule track:
    """Give each lesion a stable id across visits and its growth curve."""
    input:
        track_inputs,
    output:
        status=P(L.tracking_status("{sub}")),
    params:
        out=OUT,
    log:
        P("logs/track/{sub}.log"),
    benchmark:
        P("benchmarks/track/{sub}.tsv")
    localrule: True
    shell:
        "{PMLSEG} step {output.status:q} --stage track --step-log {log:q} -- {PMLSEG} track {params.out:q} {wildcards.sub}"
