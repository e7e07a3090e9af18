"""report.html/pdf on a small synthetic case, checked in a real headless Chromium (selenium +
Debian's chromium-driver): renders, every image loads, no console errors, decisions export works."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pmlseg.characterise import score_pml
from pmlseg.report.html import write_report
from test_characterise_pml import MS, PML  # noqa: E402  (tests dir is on sys.path via rootdir)

NAME = "Doe^Jane"


def _case():
    rng = np.random.default_rng(0)
    shape = (20, 64, 64)
    zz, yy, xx = np.indices(shape)
    lab = np.zeros(shape, np.int16)
    lab[((zz - 10) * 3) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 < 36] = 1
    lab[((zz - 8) * 3) ** 2 + (yy - 40) ** 2 + (xx - 44) ** 2 < 100] = 2
    imgs = {}
    for k in ("flair_bl", "flair_fu", "t1_fu"):
        a = 100 + 10 * rng.standard_normal(shape)
        if k == "flair_fu":
            a[lab > 0] += 80
        im = sitk.GetImageFromArray(a.astype(np.float32))
        im.SetSpacing((1.0, 1.0, 3.0))
        imgs[k] = im
    li = sitk.GetImageFromArray(lab)
    li.CopyInformation(imgs["flair_bl"])
    return li, imgs


def test_report_files_and_pseudonymity(tmp_path):
    labels, imgs = _case()
    lesions = score_pml([MS, PML])
    header = {"subject": "sub-001", "session": "ses-02", "identity": {"name": NAME}}
    paths = write_report(tmp_path, lesions, imgs, labels, qc={"status": "pass"}, header=header)
    text = paths["html"].read_text()
    assert NAME not in text and "sub-001" in text
    assert text.index("id='lesion-2'") < text.index("id='lesion-1'")  # sorted by suspicion
    assert "http://" not in text and "https://" not in text  # self-contained
    assert paths["pdf"].read_bytes()[:4] == b"%PDF" and NAME.encode() not in paths["pdf"].read_bytes()
    ident = write_report(tmp_path / "id", lesions, imgs, labels, header=header, identified=True, pdf=False)
    assert NAME in ident["html"].read_text()


def test_stable_report_says_no_new_lesion_and_shows_the_images(tmp_path):
    """A follow-up without lesions gets a full report: the plain statement, the QC and the compared images."""
    import re
    import subprocess

    labels, imgs = _case()
    empty = sitk.Image(labels.GetSize(), labels.GetPixelID())
    empty.CopyInformation(labels)
    paths = write_report(tmp_path, [], imgs, empty, qc={"status": "pass", "detail": "registration similarity 0.97"},
                         header={"subject": "sub-001", "report_id": "pmlseg-abc"})
    text = paths["html"].read_text()
    stable = text[text.index("id=stable"):]
    assert "No new or enlarging lesion" in stable[:200] and "pass" in stable[:200]
    assert "data:image/png;base64," in stable and "pmlseg-abc" in text
    pdf = paths["pdf"].read_bytes()
    assert len(re.findall(rb"/Type /Page\b", pdf)) == 2  # summary + the images
    if shutil.which("pdftotext"):  # poppler-utils
        text = subprocess.run(["pdftotext", str(paths["pdf"]), "-"], capture_output=True, text=True).stdout
        assert "No new or enlarging lesion" in text
    assert json.loads(paths["json"].read_text()) == []


def test_report_in_headless_chromium(tmp_path):
    assert shutil.which("chromedriver") and shutil.which("chromium"), \
        "apt-get install -y chromium chromium-driver (CI must install them)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    labels, imgs = _case()
    paths = write_report(tmp_path / "out", score_pml([MS, PML]), imgs, labels, header={"subject": "sub-001"}, pdf=False)
    dl = tmp_path / "downloads"
    dl.mkdir()
    opts = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": str(dl), "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        drv.get(paths["html"].resolve().as_uri())
        imgs_ok = drv.execute_script("return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert imgs_ok and all(imgs_ok)
        assert drv.execute_script("return document.getElementById('slice-no').textContent").startswith("slice ")
        drv.execute_script("document.querySelector(\"input[name='dec-2'][value='suspect_pml']\").click();"
                           "document.getElementById('com-2').value = 'satellites';")
        drv.find_element("id", "export").click()
        exported = drv.execute_script("return window.lastExport")
        mine = next(d for d in exported["decisions"] if d["lesion_id"] == 2)
        assert (mine["decision"], mine["comment"]) == ("suspect_pml", "satellites")
        assert mine["centroid"] == PML["centroid_mm"] and exported["report_id"]  # what review import checks
        for _ in range(50):
            if (dl / "decisions.json").exists():
                break
            time.sleep(0.1)
        assert json.loads((dl / "decisions.json").read_text())["decisions"] == exported["decisions"]
        errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        drv.quit()
