# Stage 6: cohort tables and the cohort index page (per-visit reports come from detection).


rule cohort_index:
    """sessions.tsv, lesions.tsv and index.html: suspicious patients first, problems, links to every report."""
    input:
        manifest=P("manifest.tsv"),
        tracks=lambda w: [P(L.tracking_status(s)) for s in subjects()],
        clinical=[config["clinical"]] if config.get("clinical") else [],
    output:
        index=P("index.html"),
        sessions=P("sessions.tsv"),
        lesions=P("lesions.tsv"),
    params:
        out=OUT,
        opts=" ".join(
            ([f"--clinical {Q(config['clinical'])}"] if config.get("clinical") else [])
            + (["--identified"] if config["identified_reports"] else [])
            + ([f"--today {config['today']}"] if config.get("today") else [])
        ),
    log:
        P("logs/index.log"),
    benchmark:
        P("benchmarks/index.tsv")
    localrule: True
    shell:
        "{PMLSEG} --log-file {log:q} index {params.out:q} {params.opts}"
