"""The whole `pmlseg ingest SRC OUT` run: index, group, label, classify, check, convert, install, tabulate.

Only series not yet in OUT/series.tsv (or that failed before) are processed, so re-running after new
studies arrive converts only those. Logs name series by pseudonym labels and series numbers only.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pmlseg.errors import PmlsegError
from pmlseg.ingest import bids, geometry
from pmlseg.ingest.classify import classify, series_facts
from pmlseg.ingest.convert import convert_series, dcm2niix_path
from pmlseg.ingest.deidentify import clean_text, filter_sidecar, identifier_tokens, source_ref
from pmlseg.ingest.index import FileInfo, index_tree
from pmlseg.tables import read_tsv, write_tsv

log = logging.getLogger(__name__)


@dataclass
class Series:
    subject: str
    session: str
    uid: str
    number: int | None
    files: list[FileInfo]
    identifiers: list[str]


def patient_key(f: FileInfo) -> str:
    """Who a file belongs to: PatientID; without one, name + birth date; without those, the study."""
    pid = clean_text(f.patient_id, limit=200)
    if pid:
        return pid
    name = clean_text(f.patient_name, limit=200)
    if name:
        return f"name:{name}|{clean_text(f.birth_date)}"
    return f"study:{f.study_uid}"


def ingest(src: Path, out: Path, workers: int = 2, show_progress: bool = True) -> dict:
    """Run the ingest; returns counts (converted/skipped/failed/unreadable/seconds)."""
    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    if not src.exists():
        raise PmlsegError(f"{src}: source folder does not exist")
    if not src.is_dir():
        raise PmlsegError(f"{src}: source is not a folder")
    if out.exists() and not out.is_dir():
        raise PmlsegError(f"{out}: output exists and is not a folder")
    exe = dcm2niix_path()
    infos, skipped = index_tree(src, workers=workers, show_progress=show_progress, exclude=out)
    for path, reason in skipped:
        log.warning("skipped %s: %s", source_ref(_rel(path, src)), reason)
    if not infos:
        raise PmlsegError(f"{src}: no DICOM image files found ({len(skipped)} files looked at)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".pmlseg-tmp-probe")
        probe.close()
    except OSError as exc:
        raise PmlsegError(f"{out}: cannot write the output folder ({exc.strerror or exc})") from None

    # Group patient -> study -> series.
    studies: dict[str, dict] = {}
    groups: dict[tuple[str, str], list[FileInfo]] = {}
    idents: dict[str, set] = {}
    for f in infos:
        key = patient_key(f)
        study_uid = f.study_uid or f"nostudy:{key}"
        s = studies.setdefault(study_uid, {"patient_key": key, "study_uid": study_uid, "date": f.study_date,
                                           "time": f.study_time, "accession": f.accession})
        if s["patient_key"] != key:
            log.warning("one study holds files of two patients; series kept with the first patient's labels")
        idents.setdefault(s["patient_key"], set()).update(
            [f.patient_id, f.patient_name, f.birth_date, f.accession, f.institution])
        groups.setdefault((study_uid, f.series_uid or f"noseries:{study_uid}"), []).append(f)

    bids.write_dataset_files(out)
    identity = bids.Identity(out / "identity.tsv")
    identity.assign(list(studies.values()))
    identity.save()

    series_tsv = out / "series.tsv"
    old_rows = read_tsv(series_tsv, missing_ok=True)
    # Done before: skipped, or converted and still on disk (a deleted output is converted again).
    done = {(r["subject"], r["session"], r["series_uid"]) for r in old_rows
            if r.get("status") == "skipped" or (r.get("status") == "converted" and r.get("path")
                                                  and (out / r["path"]).exists())}
    keep_rows = [r for r in old_rows if (r["subject"], r["session"], r["series_uid"]) in done]
    taken = {r["path"] for r in keep_rows if r.get("path")}

    todo: list[Series] = []
    for (study_uid, series_uid), files in groups.items():
        subject, session = identity.session_of[study_uid]
        if (subject, session, series_uid) in done:
            continue
        tokens = identifier_tokens(sorted(x for x in idents[studies[study_uid]["patient_key"]] if x))
        todo.append(Series(subject, session, series_uid, files[0].series_number, files, tokens))
    todo.sort(key=lambda s: (s.subject, s.session, s.number if s.number is not None else 1 << 30, s.uid))

    rows: list[dict] = []
    jobs = []
    for s in todo:
        files, n_dupes = geometry.dedupe(s.files)
        facts = series_facts(files)
        kind, why = classify(facts)
        row = {"subject": s.subject, "session": s.session, "series_uid": s.uid, "series_number": s.number,
               "series_description": clean_text(files[0].series_description, s.identifiers),
               "classification": kind, "status": "", "reason": why, "path": "", "n_files": len(s.files)}
        if n_dupes:
            row["reason"] += f"; {n_dupes} duplicate file(s) of the same image ignored"
        rows.append(row)
        if kind == "other":
            row["status"] = "skipped"
            log.info("%s %s series %s: other (%s), not converted", s.subject, s.session, s.number, why)
            continue
        problem = geometry.check(files)
        if not problem:
            n_vol = geometry.n_volumes(files)
            if kind != "dwi" and n_vol > 1:
                problem = f"{n_vol} images at every slice position in an anatomical series (repeated acquisition?)"
            elif kind == "dwi" and n_vol < 2:
                row.update(classification="other", status="skipped",
                           reason=f"single diffusion volume, no b=0 reference ({why})")
                log.info("%s %s series %s: other (single diffusion volume), not converted", s.subject, s.session, s.number)
                continue
        if problem:
            row.update(status="failed", reason=problem)
            log.warning("%s %s series %s: %s: not converted", s.subject, s.session, s.number, problem)
            continue
        jobs.append((s, files, facts, kind, row))

    work = Path(tempfile.mkdtemp(prefix=".pmlseg-tmp-", dir=out))
    try:
        results = _convert_all(jobs, work, exe, workers, show_progress)
        for (s, files, facts, kind, row), res in zip(jobs, results):
            if not res.ok:
                row.update(status="failed", reason=clean_text(res.reason, s.identifiers))
                log.warning("%s %s series %s: %s", s.subject, s.session, s.number, row["reason"])
                continue
            rel = bids.free_name(out, s.subject, s.session, kind, taken)
            taken.add(rel)
            bids.install(res, out, rel, filter_sidecar(res.sidecar, s.identifiers))
            row.update(status="converted", path=rel, reason="; ".join(x for x in (row["reason"], res.reason) if x))
            log.info("%s %s series %s: %s -> %s", s.subject, s.session, s.number, kind, rel)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    all_rows = keep_rows + rows
    all_rows.sort(key=lambda r: (r["subject"], r["session"], _num(r["series_number"]), r["series_uid"]))
    write_tsv(series_tsv, all_rows, bids.SERIES_COLUMNS)
    counts = {k: sum(r["status"] == k for r in rows) for k in ("converted", "skipped", "failed")}
    counts.update(unreadable=len(skipped), already_done=len(keep_rows), seconds=time.perf_counter() - t0,
                  files=len(infos) + len(skipped), series=len(groups))
    log.info("ingest: %(converted)d converted, %(skipped)d skipped (other), %(failed)d failed, "
             "%(unreadable)d unreadable files, %(already_done)d series done before; %(seconds).1f s", counts)
    return counts


def _convert_all(jobs, work: Path, exe: str, workers: int, show_progress: bool):
    from pmlseg.logs import progress

    def one(i_job):
        i, (s, files, facts, kind, row) = i_job
        n_vol = geometry.n_volumes(files)
        n_frames = sum(max(f.frames, 1) for f in files)
        frame_pixels = (files[0].rows or 0) * (files[0].cols or 0)
        return convert_series([f.path for f in files], n_frames, n_frames // max(n_vol, 1), frame_pixels, kind == "dwi",
                              work / f"s{i:05d}", exe, {f.path for f in files if f.bare},
                              mosaic="MOSAIC" in facts.image_types)

    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(progress(pool.map(one, enumerate(jobs)), total=len(jobs), desc="convert", unit="series",
                             disable=None if show_progress else True))


def _num(x) -> int:
    try:
        return int(x)
    except (TypeError, ValueError):
        return 1 << 30


def locate(src: Path, ref: str) -> list[str]:
    """Paths under ``src`` of the file(s) a log names by ``ref`` (see deidentify.source_ref)."""
    from pmlseg.ingest.index import find_files

    return [_rel(p, src) for p in find_files(src) if source_ref(_rel(p, src)) == ref]


def _rel(path: str, src: Path) -> str:
    try:
        return os.path.relpath(path, src)
    except ValueError:
        return path
