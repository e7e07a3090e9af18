# pmlseg workflow: thin entry point; stages live in workflow/rules/*.smk.
from snakemake.utils import min_version, validate

min_version("8.0")

configfile: "configs/config.yaml"
validate(config, "workflow/schemas/config.schema.yaml")

include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"


rule all:
    input:
        rules.ingest.output.series,
