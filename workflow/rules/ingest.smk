# Stage 1: DICOM export -> de-identified BIDS + the visit manifest (a checkpoint: the rest of the DAG is
# expanded from manifest.tsv once it exists). series.tsv and identity.tsv are deliberately not declared
# outputs: Snakemake would delete them before a re-run, and ingest reads identity.tsv back to keep labels.


checkpoint ingest:
    """Index the DICOM export, convert every structural/DWI series to BIDS, write the visit manifest."""
    input:
        dicom=ancient(DICOM),
        clinical=[config["clinical"]] if config.get("clinical") else [],
    output:
        manifest=P("manifest.tsv"),
    params:
        out=OUT,
        state=lambda w: dicom_state(DICOM),
        clinical=f"--clinical {Q(config['clinical'])}" if config.get("clinical") else "",
        workers=config["ingest_workers"],
    log:
        P("logs/ingest.log"),
    benchmark:
        P("benchmarks/ingest.tsv")
    threads: res("ingest", "threads", 2)
    resources:
        mem_mb=res("ingest", "mem_mb", 4000),
        runtime=res("ingest", "runtime", 120),
    shell:
        "{PMLSEG} --log-file {log:q} ingest {input.dicom:q} {params.out:q} --workers {params.workers} && "
        "{PMLSEG} --log-file {log:q} manifest {params.out:q} {params.clinical}"
