"""The Snakemake workflow's Python side: visit manifest, stage status, lesion tracking, cohort index, PML risk."""
