"""pmlseg installed from its wheel (no checkout) runs its own workflow and finds its model.

Builds the wheel from a copy of the source, installs it into a new venv that borrows the test
interpreter's site-packages for the dependencies (through a .pth file, so torch is not downloaded
again; that directory's own .pth files, among them an editable pmlseg, are not processed), and runs
`pmlseg` from a folder outside the repository with PYTHONPATH removed.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "Snakefile", "pmlseg", "workflow",
           "configs", "models/newlesion-2p5d"]


def _copy_source(dest: Path) -> Path:
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "_bundle", "*.egg-info", ".snakemake")
    for rel in SOURCES:
        src = REPO / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=skip)
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_source(tmp / "src")
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(dist)], check=True)
    wheel = next(dist.glob("pmlseg-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the borrowed site-packages already lists a pmlseg 0.1.0 (the editable one)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                    "--ignore-installed", "-q", str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PMLSEG_SNAKEFILE", "PMLSEG_MODELS_DIR")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    work = tmp / "elsewhere"
    work.mkdir()
    return {"venv": venv, "env": env, "cwd": work, "wheel": wheel}


def _run(w, *args, timeout=600):
    return subprocess.run([str(w["venv"] / "bin" / "pmlseg"), *args], cwd=w["cwd"], env=w["env"],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_wheel_carries_the_workflow_and_model_and_runs_without_a_checkout(wheel_venv, tmp_path):
    import SimpleITK as sitk

    from pmlseg.detect.synthcase import make_case

    w = wheel_venv
    r = _run(w, "--version")
    assert r.returncode == 0 and r.stdout.strip() == "pmlseg 0.1.0", r.stderr
    where = subprocess.run([str(w["venv"] / "bin" / "python"), "-c",
                            "import pmlseg, pmlseg.paths as p; print(pmlseg.__file__); print(p.resource_dir())"],
                           cwd=w["cwd"], env=w["env"], capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(str(w["venv"])), where       # the wheel's pmlseg, not the checkout's
    bundle = Path(where[1])
    assert bundle == Path(where[0]).parent / "_bundle"
    for rel in ("Snakefile", "workflow/rules/detect.smk", "workflow/schemas/config.schema.yaml",
                "workflow/profiles/slurm/config.yaml", "configs/config.yaml", "models/newlesion-2p5d/model.pt",
                "models/newlesion-2p5d/inference.json"):
        assert (bundle / rel).is_file(), rel

    # detect: the default model found by name inside the wheel, its checksum checked at load
    bl, fu, _gt = make_case(0, small=True)
    sitk.WriteImage(bl, str(tmp_path / "bl.nii.gz"))
    sitk.WriteImage(fu, str(tmp_path / "fu.nii.gz"))
    r = _run(w, "detect", "--baseline", str(tmp_path / "bl.nii.gz"), "--followup", str(tmp_path / "fu.nii.gz"),
             "--out", str(tmp_path / "det"), "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    qc = json.loads((tmp_path / "det" / "qc.json").read_text())
    meta = json.loads((bundle / "models" / "newlesion-2p5d" / "metadata.json").read_text())
    assert qc["status"] == "ok" and qc["model"]["name"] == "newlesion-2p5d"
    assert qc["model"]["sha256"] == meta["sha256"]
    assert (tmp_path / "det" / "new_lesions.nii.gz").is_file() and (tmp_path / "det" / "report.html").is_file()
    header = (tmp_path / "det" / "lesions.tsv").read_text().splitlines()[0]
    assert header.startswith("lesion_id\tvolume_mm3")

    # run --dry-run: the packaged Snakefile, config schema and profile, from a folder outside the repo
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    r = _run(w, "run", str(dicom), str(tmp_path / "out"), "--cores", "1", "--dry-run")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    text = r.stdout + r.stderr
    assert str(bundle / "Snakefile") in text and "ingest" in text
    assert "Job stats" in text or "job count" in text.lower()


def test_a_damaged_bundled_model_is_refused_by_name(tmp_path, monkeypatch):
    """A model looked up by name in $PMLSEG_MODELS_DIR is checksum-checked like the shipped one."""
    from pmlseg.detect.predictor import Predictor, resolve_model
    from pmlseg.errors import PmlsegError

    shutil.copytree(REPO / "models" / "newlesion-2p5d", tmp_path / "newlesion-2p5d")
    monkeypatch.setenv("PMLSEG_MODELS_DIR", str(tmp_path))
    assert resolve_model(None) == tmp_path / "newlesion-2p5d"
    (tmp_path / "newlesion-2p5d" / "model.pt").write_bytes(b"not the weights")
    with pytest.raises(PmlsegError, match=r"newlesion-2p5d/model.pt: sha256 .* does not match"):
        Predictor(None, "cpu")
    monkeypatch.setenv("PMLSEG_MODELS_DIR", str(tmp_path / "empty"))
    assert resolve_model(None) == REPO / "models" / "newlesion-2p5d"   # falls back to the shipped models/


def test_environment_yml_installs_pmlseg_the_way_pip_does():
    """conda supplies Python and pip only; pmlseg and its pinned dependencies come from pyproject.toml."""
    import tomllib

    import yaml

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(d.split("=")[0] for d in conda) == ["pip", "python"], conda
    assert [p for p in pip if not p.startswith("-")] == [".[test]"]       # this checkout, not editable
    python = next(d for d in conda if d.startswith("python=")).split("=")[1]
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert tuple(map(int, python.split("."))) >= tuple(map(int, requires.lstrip(">=").split(".")))
