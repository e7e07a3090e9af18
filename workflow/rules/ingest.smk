rule ingest:
    """Index the DICOM export and convert every structural/DWI series to de-identified BIDS."""
    input:
        DICOM,
    output:
        series=f"{OUT}/series.tsv",
        identity=f"{OUT}/identity.tsv",
    log:
        f"{OUT}/logs/ingest.log",
    benchmark:
        f"{OUT}/benchmarks/ingest.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "pmlseg --log-file {log} ingest {input} {OUT} --jobs {threads}"
