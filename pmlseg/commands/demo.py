"""`pmlseg demo OUT`: the whole pipeline on a synthetic cohort (what `make demo` runs)."""

from __future__ import annotations

NAME = "demo"
HELP = "make a synthetic DICOM cohort and run the whole workflow on it (what `make demo` runs)"
DESCRIPTION = """\
Shows pmlseg end to end without any patient data:

  1. `pmlseg synth OUT/synth` makes a synthetic DICOM cohort (ICBM152 anatomy bundled in nilearn,
     MS-like lesions, one patient with a PML-like lesion that grows) with ground-truth masks;
  2. `pmlseg run OUT/synth/dicom OUT/results` runs the workflow on it: ingest to BIDS, registration to
     the rebaseline, new-lesion detection, PML-suspicion scoring, per-visit reports, cohort index, with
     the cohort's clinical table (OUT/synth/clinical.tsv: natalizumab start, anti-JCV index, prior
     immunosuppressant), so the index shows each patient's PML risk and MRI schedule, dated 90 days after
     the cohort's last synthetic scan;
  3. grades the detector against the cohort's own truth (pmlseg/synth/grade.py): lesion-wise sensitivity,
     precision, F1 and false positives per follow-up, written to OUT/results/detector_check.json, printed,
     and shown in the cohort index.

Prints where the cohort index (OUT/results/index.html) is. Re-running reuses what is already there.
--config passes workflow options on (as for `pmlseg run`), e.g. --config detect_method=classical grades
the subtraction baseline instead.
"""


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", help="demo folder (e.g. demo_out)")
    parser.add_argument("--patients", type=int, default=2, help="synthetic patients (default 2; one has the PML-like lesion)")
    parser.add_argument("--visits", type=int, default=3, help="visits per patient (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the cohort (default 0)")
    parser.add_argument("--cores", type=int, default=None, help="CPU cores for the workflow (default: all)")
    parser.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                        help="workflow configuration overrides, as for `pmlseg run` (see configs/config.yaml)")


def run(args) -> int:
    import logging
    from pathlib import Path

    from pmlseg.synth.cohort import generate_cohort
    from pmlseg.synth.grade import grade, summary_lines
    from pmlseg.workflow.snakemake_runner import check_config, run_workflow

    log = logging.getLogger("pmlseg.demo")
    out = Path(args.out)
    synth = out / "synth"
    check_config(args.config)
    if not (synth / "dicom").is_dir():
        log.info("making the synthetic cohort in %s", synth)
        generate_cohort(synth, n_patients=args.patients, n_visits=args.visits, seed=args.seed)
    else:
        log.info("reusing the synthetic cohort in %s", synth)
    results = out / "results"
    rc = run_workflow(synth / "dicom", results, cores=args.cores, config=[*demo_config(synth), *args.config])
    if rc != 0:
        return rc
    check = grade(results, synth)
    # the workflow wrote the index before the grading existed: once more, with its box and the same config
    rc = run_workflow(synth / "dicom", results, cores=args.cores, config=[*demo_config(synth), *args.config],
                      extra=["--forcerun", "cohort_index", "--quiet"])
    if rc != 0:
        return rc
    print("\n".join(summary_lines(check)))
    print(f"demo finished: open {results / 'index.html'} "
          f"(ground truth of the synthetic lesions: {synth / 'ground_truth'}; "
          f"per follow-up figures: {results / 'detector_check.json'})")
    return 0


def demo_config(synth) -> list[str]:
    """--config items for the demo: the synthetic clinical table and a reference date 90 days after the last
    synthetic scan (today's date would make every demo patient years overdue)."""
    import datetime as dt

    from pmlseg.workflow.manifest import read_tsv

    clinical, cohort = synth / "clinical.tsv", synth / "ground_truth" / "cohort.tsv"
    if not (clinical.exists() and cohort.exists()):
        return []
    last = max(dt.date.fromisoformat(r["study_date"]) for r in read_tsv(cohort))
    return [f"clinical={clinical}", f"today={(last + dt.timedelta(days=90)).isoformat()}"]
