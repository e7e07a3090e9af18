import os
from pathlib import Path

import pytest

from pmlseg.paths import shared_data_dir

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the repo; CI has it, so its absence is a failure, not a skip."""
    d = shared_data_dir()
    assert (d / "README.md").exists(), f"real test data not found at {d} (set PMLSEG_SHARED_DATA)"
    return d


ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def chromium(tmp_path):
    """Headless Chromium (selenium + Debian's chromium-driver) with the network off and software WebGL2
    (SwiftShader), downloads into tmp_path/downloads.  Missing browser: skip locally, failure under CI=true."""
    import shutil

    if not (shutil.which("chromedriver") and shutil.which("chromium")):
        msg = "headless Chromium missing: apt-get install -y chromium chromium-driver"
        if ON_CI:
            pytest.fail(msg + " (CI must install them)")
        pytest.skip(msg)
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
