# pmlseg surveillance workflow: DICOM export -> BIDS -> registration -> detection -> tracking -> cohort index.
# Thin entry point; the stages live in workflow/rules/*.smk. Run from the repository root with
#   snakemake --cores N [--config dicom_dir=... out_dir=...]
# or anywhere with `pmlseg run DICOM_DIR OUT_DIR` (same Snakefile). See docs/workflow.md.
import os
import sys

from snakemake.utils import min_version, validate

min_version("8.0")


configfile: os.path.join(workflow.basedir, "configs", "config.yaml")


# `--config use_gpu=true` arrives as a string: accept the usual spellings of booleans
for _key in ("use_gpu", "identified_reports", "preprocess", "detect_previous"):
    if isinstance(config.get(_key), str) and config[_key].lower() in ("true", "false", "yes", "no", "1", "0"):
        config[_key] = config[_key].lower() in ("true", "yes", "1")
for _key in ("model", "clinical", "today"):
    if config.get(_key) in ("null", "None", ""):
        config[_key] = None


validate(config, os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml"))

# a missing model, use_gpu without CUDA, a missing clinical table: one clear error before any job starts
# (the GPU is checked only where jobs run on this machine; SLURM nodes have their own)
from pmlseg.errors import SetupError
from pmlseg.workflow.preflight import check_config

try:
    check_config(config, local=workflow.local_exec and not workflow.remote_exec)
except SetupError as exc:
    sys.exit(f"pmlseg: cannot run: {exc}")


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/detect.smk"
include: "workflow/rules/track.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        rules.cohort_index.output.index,
    default_target: True
