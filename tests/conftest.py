"""Shared fixtures. A missing system tool or data set fails under CI=true; elsewhere the tests that need it
skip, and one summary line at the end names what was skipped and how to get it."""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from pmlseg.paths import shared_data_dir

os.environ.setdefault("OMP_NUM_THREADS", "2")
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_SKIPPED: dict[str, int] = {}  # what is missing and how to get it -> number of tests skipped


def require(ok: bool, what: str) -> None:
    """Fail under CI, else skip (counted for the summary), when ``ok`` is false."""
    if ok:
        return
    if ON_CI:
        pytest.fail(f"{what} (CI=true: required)")
    _SKIPPED[what] = _SKIPPED.get(what, 0) + 1
    pytest.skip(what)


def pytest_terminal_summary(terminalreporter):
    if _SKIPPED:
        terminalreporter.write_line(
            "SKIPPED for missing tools/data (CI=true fails instead): "
            + "; ".join(f"{n} test(s): {what}" for what, n in _SKIPPED.items()), yellow=True, bold=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the repo (CI has it)."""
    d = shared_data_dir()
    require((d / "README.md").exists(),
            f"real test data not found at {d}: put it beside the repository or set PMLSEG_SHARED_DATA")
    return d


@pytest.fixture
def tiny_train_recipe() -> dict:
    """A 3-step training recipe on one MNI brain, small batches: `pmlseg train` runs that must only finish."""
    from pmlseg.detect import train as T

    return dict(T.DEFAULT_RECIPE, minutes=5.0, max_steps=3, batch_size=2, patch=64, pool_size=1, replace_every=1000,
                workers=1, checkpoint_minutes=100.0, sources={"mni_brains": ["patient07"], "raw_flair": []})


@pytest.fixture(scope="session")
def benchmark_script():
    """``load(name)``: benchmarks/NAME.py as a module, so a test runs the benchmark's own code, not a copy."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses in a benchmark look their module up there
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(scope="session")
def dciodvfy() -> str:
    require(shutil.which("dciodvfy") is not None,
            "dciodvfy missing: `make test` as root installs it (.ci/system_deps.sh), or apt-get install dicom3tools")
    return shutil.which("dciodvfy")


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    require(shutil.which("sbatch") is not None,
            "SLURM missing: as root, CI=true make test starts a one-node cluster (.ci/start_slurm.sh)")


@pytest.fixture
def chromium(tmp_path):
    """Headless Chromium (selenium + Debian's chromium-driver) with the network off and software WebGL2
    (SwiftShader), downloads into tmp_path/downloads."""
    require(bool(shutil.which("chromedriver") and shutil.which("chromium")),
            "chromium/chromedriver missing: `make test` as root installs them (.ci/system_deps.sh), "
            "or apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    dl = tmp_path / "downloads"
    dl.mkdir(exist_ok=True)
    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": str(dl),
                                           "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    drv.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    try:
        yield drv
    finally:
        drv.quit()
