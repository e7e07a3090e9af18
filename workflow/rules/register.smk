# Stage 3: register every follow-up FLAIR to the patient's rebaseline FLAIR (affine, with QC).
# The transform maps rebaseline points to follow-up points (ITK convention, docs/architecture.md).


def register_inputs(w):
    reb = rebaseline(w.sub)["session"]
    if config["preprocess"]:
        return {"fixed": P(L.preproc_status(w.sub, reb)), "moving": P(L.preproc_status(w.sub, w.ses))}
    return {"fixed": image(visit(w.sub, reb), "flair"), "moving": image(visit(w.sub, w.ses), "flair")}


def template_fit_args(w, reb):
    """The patient's first follow-up's registration also fits the template to the rebaseline FLAIR, in a thread
    beside it, for the detection job (pmlseg.registration.template_fit); the later ones take their metric mask
    from that fit when it is there (not an input: a first run does not wait for it, they then fit it)."""
    if followups(w.sub)[0]["session"] != w.ses:
        return f" --rebaseline-fit {Q(P(L.template_fit(w.sub, reb)))}"
    return f" --template-fit {Q(image(visit(w.sub, reb), 'flair'))} {Q(P(L.template_fit(w.sub, reb)))}"


def same_session_args(w):
    """The follow-up's T1/T2/DWI are registered to its FLAIR in a thread beside the pair registration, for the
    detection job (pmlseg.detect.same_session); not with `preprocess` (MOVING is then not the FLAIR detection reads)."""
    r = visit(w.sub, w.ses)
    images = [image(r, k) for k in ("t1w", "t2w", "dwi") if r[k]]
    if not images:
        return ""
    return f" --same-session {Q(P(L.same_session(w.sub, w.ses)))} " + " ".join(Q(i) for i in images)


def register_args(w):
    reb = rebaseline(w.sub)["session"]
    if config["preprocess"]:
        # the rebaseline's brain mask from preprocessing restricts the metric (no template fit per pair)
        return (f"--requires {Q(P(L.preproc_status(w.sub, reb)))} --requires {Q(P(L.preproc_status(w.sub, w.ses)))} "
                f"-- {PMLSEG} register {Q(P(L.preproc_flair(w.sub, reb)))} {Q(P(L.preproc_flair(w.sub, w.ses)))} "
                f"--fixed-mask {Q(P(L.brain_mask(w.sub, reb)))}" + template_fit_args(w, reb))
    return (f"-- {PMLSEG} register {Q(image(visit(w.sub, reb), 'flair'))} {Q(image(visit(w.sub, w.ses), 'flair'))}"
            + template_fit_args(w, reb) + same_session_args(w))


rule register:
    """Affine registration of a follow-up to the rebaseline; a QC failure is recorded for the index."""
    input:
        unpack(register_inputs),
    output:
        status=P(L.register_status("{sub}", "{ses}")),
    params:
        args=register_args,
        tfm=lambda w: P(L.to_rebaseline_tfm(w.sub, w.ses)),
        qc=lambda w: P(L.visit_dir(w.sub, w.ses) + "/xfm/register_qc.json"),
    log:
        P("logs/register/{sub}_{ses}.log"),
    benchmark:
        P("benchmarks/register/{sub}_{ses}.tsv")
    threads: lambda w: shared_threads("register", 2, lambda: unfinished("register", lambda: manifest().n_followups))
    resources:
        mem_mb=res("register", "mem_mb", 3000),
        runtime=res("register", "runtime", 30),
    shell:
        "OMP_NUM_THREADS={threads} ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS={threads} "
        "{PMLSEG} step {output.status:q} --stage register --step-log {log:q} {params.args} --transform {params.tfm:q} "
        "--qc-json {params.qc:q}"


rule chain_previous:
    """Previous->current visit transform from the two rebaseline registrations (no new registration)."""
    input:
        prev=lambda w: P(L.register_status(w.sub, visit(w.sub, w.ses)["previous"])),
        cur=P(L.register_status("{sub}", "{ses}")),
    output:
        status=P(L.visit_dir("{sub}", "{ses}") + "/xfm/chain.json"),
    params:
        prev=lambda w: P(L.to_rebaseline_tfm(w.sub, visit(w.sub, w.ses)["previous"])),
        cur=lambda w: P(L.to_rebaseline_tfm(w.sub, w.ses)),
        out=lambda w: P(L.to_previous_tfm(w.sub, w.ses)),
    log:
        P("logs/chain/{sub}_{ses}.log"),
    benchmark:
        P("benchmarks/chain/{sub}_{ses}.tsv")
    # not a localrule: on SLURM it joins its patient's group job (workflow/profiles/slurm)
    shell:
        "{PMLSEG} step {output.status:q} --stage register --step-log {log:q} --requires {input.prev:q} --requires {input.cur:q} "
        "-- {PMLSEG} chain {params.prev:q} {params.cur:q} {params.out:q}"
