"""report.html/pdf on a small synthetic case and on a real shared pair, checked in a real headless Chromium
(selenium + Debian's chromium-driver, network off, software WebGL2): the NiiVue viewer starts with no console
error, a lesion click moves both views to the lesion's centroid, the overlay toggles, decisions export; the
PDF rendered with pdftoppm holds rebaseline and follow-up crops of every lesion."""

import io
import json
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from pmlseg.characterise import score_pml
from pmlseg.errors import PmlsegError
from pmlseg.report import viewer
from pmlseg.report.html import write_report
from conftest import require
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
        im.SetOrigin((-30.0, 12.0, -20.0))
        imgs[k] = im
    li = sitk.GetImageFromArray(lab)
    li.CopyInformation(imgs["flair_bl"])
    return li, imgs


def _centroid_index(labels: sitk.Image, lid: int) -> np.ndarray:
    """The lesion's centroid as a continuous (x, y, z) index of the label grid."""
    return np.array(ndi.center_of_mass(sitk.GetArrayViewFromImage(labels) == lid))[::-1]


def _index_of(labels: sitk.Image, lps_mm) -> np.ndarray:
    return np.array(labels.TransformPhysicalPointToContinuousIndex([float(v) for v in lps_mm]))


def _red_pixels(png: bytes) -> int:
    """Pixels of the red lesion overlay (red clearly above green and blue; the crosshair is yellow)."""
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((a[..., 0] > a[..., 1] + 60) & (a[..., 0] > a[..., 2] + 60)).sum())


def _open_report(drv, html):
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(html.resolve().as_uri())
    WebDriverWait(drv, 120).until(lambda d: d.execute_script(
        "return window.pmlsegViewer && (pmlsegViewer.ready || pmlsegViewer.error !== null)"))
    assert drv.execute_script("return pmlsegViewer.error") is None
    # every resource the page used is inside it (data:/blob:), and the two views sit side by side
    urls = drv.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith(("data:", "blob:")) for u in urls), urls
    bl, fu = (drv.find_element("id", i).rect for i in ("nv-bl", "nv-fu"))
    assert bl["width"] > 300 and fu["width"] > 300 and abs(bl["y"] - fu["y"]) < 2 and fu["x"] >= bl["x"] + bl["width"]


def _click_lesion_and_check(drv, lid, labels: sitk.Image, target_lps) -> None:
    """Click the lesion's table row; both views' crosshairs must sit within one voxel of ``target_lps``
    (lesions.tsv's centroid) and of the label's own centroid in ``labels`` (a possible lesion P<n>: label n)."""
    drv.find_element("css selector", f"tr[data-lesion='{lid}']").click()
    both = drv.execute_script("return [pmlsegViewer.mm(0), pmlsegViewer.mm(1), pmlsegViewer.current]")
    assert both[2] == str(lid)
    want = _index_of(labels, target_lps)
    for got in both[:2]:
        idx = _index_of(labels, got)
        assert np.all(np.abs(idx - want) <= 1.0), (lid, got, target_lps)
        assert np.all(np.abs(idx - _centroid_index(labels, int(str(lid).lstrip("P")))) <= 1.0), (lid, idx)


def _screenshot(drv, path):
    """The page with the two views in the middle of the window."""
    drv.execute_script("document.querySelector('.vpair').scrollIntoView({block: 'center'})")
    time.sleep(0.3)
    drv.save_screenshot(str(path))


def _no_console_errors(drv):
    errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_report_files_and_pseudonymity(tmp_path):
    labels, imgs = _case()
    lesions = score_pml([MS, PML])
    header = {"subject": "sub-001", "session": "ses-03", "baseline_session": "ses-02", "identity": {"name": NAME}}
    paths = write_report(tmp_path, lesions, imgs, labels, qc={"status": "pass"}, header=header)
    text = paths["html"].read_text()
    assert NAME not in text and "sub-001" in text
    # the left view names the visit compared against (here a report against the previous visit)
    assert "<b>Compared with:</b> ses-02" in text and "Baseline (ses-02) FLAIR</figcaption>" in text
    assert text.index("id='lesion-2'") < text.index("id='lesion-1'")  # sorted by suspicion
    # self-contained: no external src/href (the NiiVue bundle only mentions URLs in shader comments)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert f"NiiVue {viewer.NIIVUE_VERSION}" in text
    assert paths["pdf"].read_bytes()[:4] == b"%PDF" and NAME.encode() not in paths["pdf"].read_bytes()
    ident = write_report(tmp_path / "id", lesions, imgs, labels, header=header, identified=True, pdf=False)
    assert NAME in ident["html"].read_text()


def test_both_reports_list_lesions_most_suspect_first():
    """One order for report.html and report.pdf: suspicion level, then PML score; a lesion without a score last."""
    from pmlseg.report import by_suspicion

    rows = [{"lesion_id": 1, "pml_suspicion": "low", "pml_score": 0.9},
            {"lesion_id": 2, "pml_suspicion": None},
            {"lesion_id": 3, "pml_suspicion": "high", "pml_score": 0.7},
            {"lesion_id": 4, "pml_suspicion": "moderate", "pml_score": 0.5},
            {"lesion_id": 5, "pml_suspicion": "high", "pml_score": 0.95}]
    assert [r["lesion_id"] for r in by_suspicion(rows)] == [5, 3, 4, 1, 2]


def test_detector_limits_come_from_the_model_metadata():
    from pmlseg.report import detector_limits

    meta = {"operating_point": {"real": {"a": {"found": "1/4", "fp": 0}, "b": {"found": "2/6", "fp": 3},
                                         "pooled_sensitivity": 0.3, "fp_per_case": 1.5}}}
    text = detector_limits("m1", meta)
    assert text.startswith("Detector m1: on 2 real follow-up pairs with expert change masks it found 3 of 10 "
                           "new/enlarging lesions (sensitivity 0.30) with 1.5 false positives per case.")
    for unmeasured in (None, {}, {"operating_point": {"real": {"a": {"found": "n/a"}}}},
                       {"operating_point": {"real": {"a": {"found": "1/4"}}}}):  # no false-positive rate
        assert "not recorded" in detector_limits("m2", unmeasured)
    assert all(t.endswith("does not rule out new lesions: read the images.") for t in
               (text, detector_limits("m2", None)))


def test_stable_report_says_no_new_lesion_and_shows_the_images(tmp_path):
    """A follow-up without lesions gets a full report: the plain statement, the QC and the compared images."""
    import re
    import subprocess

    labels, imgs = _case()
    empty = sitk.Image(labels.GetSize(), labels.GetPixelID())
    empty.CopyInformation(labels)
    paths = write_report(tmp_path, [], imgs, empty, qc={"status": "pass", "detail": "registration similarity 0.97"},
                         header={"subject": "sub-001", "report_id": "pmlseg-abc",
                                 "detector_limits": "Detector m1: it found 3 of 10. A report without lesions does "
                                                    "not rule out new lesions: read the images."})
    text = paths["html"].read_text()
    stable = text[text.index("id=stable"):]
    assert "No new or enlarging lesion" in stable[:200] and "pass" in stable[:200]
    assert "id=limits>Detector m1: it found 3 of 10" in stable[:400]   # right under the statement
    assert "data:image/png;base64," in stable and "pmlseg-abc" in text
    pdf = paths["pdf"].read_bytes()
    assert len(re.findall(rb"/Type /Page\b", pdf)) == 2  # summary + the images
    if shutil.which("pdftotext"):  # poppler-utils
        text = subprocess.run(["pdftotext", str(paths["pdf"]), "-"], capture_output=True, text=True).stdout
        assert "No new or enlarging lesion" in text and "does not rule out new lesions" in " ".join(text.split())
    assert json.loads(paths["json"].read_text()) == []


def test_viewer_volumes_cropped_to_the_brain_on_one_grid():
    labels, imgs = _case()
    # brain: z 5-14, y 17-46, x 12-43; lesion 1 reaches y = 15, lesion 2 y = 49 and x = 53, outside it
    brain = sitk.GetImageFromArray(np.pad(np.ones((10, 30, 32), np.uint8), ((5, 5), (17, 17), (12, 20))))
    brain.CopyInformation(labels)
    # a "possible" map on another grid (2 mm in plane) is put on the rebaseline's
    possible = sitk.Resample(labels == 1, [32, 32, 20], sitk.Transform(), sitk.sitkNearestNeighbor,
                             labels.GetOrigin(), (2.0, 2.0, 3.0), labels.GetDirection())
    payload = viewer.viewer_payload(imgs, labels, possible, crop_mask=brain)
    assert set(payload["volumes"]) == {"flair_bl", "flair_fu", "t1_fu"}
    assert set(payload["overlays"]) == {"new", "possible"}
    # crop = brain box + 10 mm in plane (1 mm voxels) and one slice, grown to hold every lesion voxel
    assert payload["crop_index"] == [2, 5, 4]
    import base64
    import gzip
    import nibabel as nib

    vols = {k: nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(v)))
            for k, v in {**payload["volumes"], **payload["overlays"]}.items()}
    shapes = {v.shape for v in vols.values()}
    affines = [v.affine for v in vols.values()]
    assert shapes == {(62, 55, 12)} and all(np.allclose(a, affines[0]) for a in affines)
    assert vols["flair_bl"].get_data_dtype() == np.uint8
    # the overlay keeps every lesion voxel, at the right place: crop origin = rebaseline origin + offset (RAS)
    assert int(np.asarray(vols["new"].dataobj).sum()) == int((sitk.GetArrayViewFromImage(labels) > 0).sum())
    corner = labels.TransformIndexToPhysicalPoint(payload["crop_index"])
    assert np.allclose(affines[0][:3, 3], [-corner[0], -corner[1], corner[2]])


def test_changed_niivue_bundle_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "vendor"
    bad.mkdir()
    (bad / "niivue.umd.js").write_text("console.log('not niivue')")
    monkeypatch.setattr(viewer, "VENDOR", bad)
    viewer.niivue_js.cache_clear()
    try:
        with pytest.raises(PmlsegError, match=r"vendor/niivue.umd.js: sha256 .* is not the pinned NiiVue"):
            viewer.niivue_js()
    finally:
        viewer.niivue_js.cache_clear()


def _green_pixels(png: bytes) -> int:
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((a[..., 1] > a[..., 0] + 60) & (a[..., 1] > a[..., 2] + 60)).sum())


def test_report_in_headless_chromium(tmp_path, chromium, monkeypatch):
    drv = chromium
    labels, imgs = _case()
    monkeypatch.setattr(viewer, "VOLUME_BUDGET_MB", 0.0)  # the follow-up T1 goes in at half resolution
    # a "possible" lesion (detection's second category) beside lesion 2, with its table columns
    zz, yy, xx = np.indices(sitk.GetArrayViewFromImage(labels).shape)
    possible = sitk.GetImageFromArray((((zz - 8) * 3) ** 2 + (yy - 40) ** 2 + (xx - 25) ** 2 < 25).astype(np.uint8))
    possible.CopyInformation(labels)
    lesions = [dict(d, category="new", confidence=0.9, pml_explanation=f"why {d['lesion_id']}",
                    pml_unavailable="dwi_ratio") for d in score_pml([MS, PML])]
    (tmp_path / "out").mkdir()
    pc = possible.TransformContinuousIndexToPhysicalPoint(_centroid_index(possible, 1).tolist())
    (tmp_path / "out" / "possible_lesions.tsv").write_text(
        "lesion_id\tvolume_mm3\tcentroid_x\tcentroid_y\tcentroid_z\tconfidence\n"
        f"1\t{3 * int(sitk.GetArrayViewFromImage(possible).sum())}\t{pc[0]:.1f}\t{pc[1]:.1f}\t{pc[2]:.1f}\t0.3\n")
    paths = write_report(tmp_path / "out", lesions, imgs, labels, header={"subject": "sub-001"}, pdf=False,
                         possible=possible)
    _open_report(drv, paths["html"])
    heads = [th.text for th in drv.find_elements("css selector", "#lesion-table th")]
    assert {"category", "confidence", "why (top features, log-odds)"} <= set(heads)
    assert "why 2\nnot measured: dwi_ratio" in drv.find_element("css selector", "tr[data-lesion='2']").text
    # the possible lesion is listed last (P1), and a click on it moves both views to it
    rows = drv.find_elements("css selector", "#lesion-table tr[data-lesion]")
    assert [r.get_attribute("data-lesion") for r in rows] == ["2", "1", "P1"] and "possible" in rows[2].text
    _click_lesion_and_check(drv, "P1", possible, pc)
    imgs_ok = drv.execute_script("return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    assert imgs_ok and all(imgs_ok)
    targets = json.loads(drv.execute_script("return document.getElementById('lesion-data').textContent"))["targets"]
    for lid in (1, 2):
        _click_lesion_and_check(drv, lid, labels, targets[str(lid)])
    _screenshot(drv, tmp_path / "report_viewer.png")
    # the overlay: red on both views at the lesion, gone from both when unticked, back when ticked
    shots = lambda: [drv.find_element("id", i).screenshot_as_png for i in ("nv-bl", "nv-fu")]  # noqa: E731
    on = shots()
    assert all(_red_pixels(p) > 50 for p in on)
    drv.find_element("css selector", "input[data-overlay='new']").click()
    off = shots()
    assert drv.execute_script("return pmlsegViewer.opacity('new')") == [0, 0]
    assert all(_red_pixels(p) == 0 for p in off)
    (tmp_path / "overlay_off.png").write_bytes(off[1])
    drv.find_element("css selector", "input[data-overlay='new']").click()
    on = shots()
    assert all(_red_pixels(p) > 50 for p in on)
    # the possible lesion lies on lesion 2's axial slice, in green; it has its own toggle
    assert all(_green_pixels(p) > 20 for p in on)
    drv.find_element("css selector", "input[data-overlay='possible']").click()
    assert all(_green_pixels(p) == 0 and _red_pixels(p) > 50 for p in shots())
    # n/p keys step through the table order (possible lesion included, wrapping round); the follow-up view
    # switches to T1; views switch together
    drv.execute_script("pmlsegViewer.jumpTo(2)")
    for key, want in (("n", "1"), ("n", "P1"), ("n", "2"), ("p", "P1")):
        drv.find_element("tag name", "body").send_keys(key)
        assert drv.execute_script("return pmlsegViewer.current") == want, key
    from selenium.webdriver.support.ui import Select, WebDriverWait

    Select(drv.find_element("id", "fu-image")).select_by_value("t1_fu")
    WebDriverWait(drv, 30).until(lambda d: d.execute_script("return pmlsegViewer.nvs[1].volumes[0].name") == "t1_fu.nii.gz")
    assert drv.find_element("id", "fu-caption").text == \
        "Follow-up T1 (on the baseline grid, half resolution to keep the report small)"
    assert drv.execute_script("return pmlsegViewer.nvs[1].volumes[0].dims.slice(1, 4)") == [32, 32, 20]
    _click_lesion_and_check(drv, 1, labels, targets["1"])  # the views still agree on a coarser background
    drv.find_element("css selector", "button[data-slice='coronal']").click()
    assert drv.execute_script("return pmlsegViewer.nvs.map(nv => nv.opts.sliceType)") == [1, 1]  # SLICE_TYPE.CORONAL
    _screenshot(drv, tmp_path / "report_t1_coronal.png")
    # decisions
    drv.execute_script("document.querySelector(\"input[name='dec-2'][value='suspect_pml']\").click();"
                       "document.getElementById('com-2').value = 'satellites';")
    drv.find_element("id", "export").click()
    exported = drv.execute_script("return window.lastExport")
    mine = next(d for d in exported["decisions"] if d["lesion_id"] == 2)
    assert (mine["decision"], mine["comment"]) == ("suspect_pml", "satellites")
    assert "centroid" in mine and exported["report_id"]  # what review import checks
    dl = tmp_path / "downloads"
    for _ in range(50):
        if (dl / "decisions.json").exists():
            break
        time.sleep(0.1)
    assert json.loads((dl / "decisions.json").read_text())["decisions"] == exported["decisions"]
    _no_console_errors(drv)


def test_pdf_pages_hold_rebaseline_and_followup_crops(tmp_path):
    """pdftoppm renders every lesion page; its two FLAIR rows (rebaseline, follow-up) show the lesion outline,
    and inside the outline the follow-up crop is brighter than the rebaseline one (the new lesion)."""
    from PIL import Image

    for tool in ("pdftoppm", "pdftotext"):
        require(shutil.which(tool) is not None, f"{tool} missing: `make test` as root installs it "
                                                "(.ci/system_deps.sh), or apt-get install poppler-utils")
    labels, imgs = _case()
    lesions = score_pml([MS, PML])
    pdf = write_report(tmp_path, lesions, imgs, labels)["pdf"]
    seen = set()
    for page in range(2, 2 + 2 * len(lesions), 2):
        text = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), str(pdf), "-"], capture_output=True,
                              text=True, check=True).stdout
        lid = int(re.search(r"Lesion (\d+)", text).group(1))
        assert "FLAIR rebaseline" in text and "FLAIR follow-up" in text
        png = tmp_path / f"page-{page}"
        subprocess.run(["pdftoppm", "-png", "-r", "120", "-f", str(page), "-l", str(page), "-singlefile", str(pdf),
                        str(png)], check=True)
        a = np.asarray(Image.open(f"{png}.png").convert("RGB")).astype(int)
        red = (a[..., 0] > a[..., 1] + 50) & (a[..., 0] > a[..., 2] + 50)
        gray = (np.abs(a[..., 0] - a[..., 1]) < 8) & (np.abs(a[..., 1] - a[..., 2]) < 8) & (a[..., 0] < 245)
        panels = [s for s in ndi.find_objects(ndi.label(ndi.binary_opening(gray | red, np.ones((5, 5))))[0])
                  if s[0].stop - s[0].start > 40 and s[1].stop - s[1].start > 40]
        rows = sorted({s[0].start // 10 for s in panels})
        assert len(panels) >= 6 and len(rows) >= 2, (page, len(panels))
        means = []
        for r in rows[:2]:  # rebaseline row, then follow-up row: each with an outlined lesion in every view
            row = [s for s in panels if s[0].start // 10 == r]
            assert len(row) == 3 and all(red[s].sum() > 5 for s in row), (page, r)
            outline = ndi.binary_closing(red[row[0]], np.ones((3, 3)))
            inside = ndi.binary_erosion(ndi.binary_fill_holes(outline) & ~outline, np.ones((3, 3)))
            means.append(a[row[0]][..., 1][inside].mean())
        assert means[1] > means[0] + 20, (lid, means)
        seen.add(lid)
    assert seen == {d["lesion_id"] for d in lesions}


@pytest.mark.slow
@pytest.mark.shared
def test_real_pair_report_in_chromium(shared_data, tmp_path, chromium, benchmark_script):
    """patient01 (real, two scanners): the report benchmarks/report_size.py builds (the pipeline's
    characterise_and_report on the rebaseline, the follow-up FLAIR/T1/T2 put on its grid with the data set's
    reference transforms, the expert new/enlarging lesions as label map).  Size < 15 MB; every lesion click
    puts both crosshairs within one voxel of lesions.tsv's centroid; no console error."""
    bench = benchmark_script("report_size")
    d = shared_data / "ljubljana-longitudinal/patient01"
    html, labels = bench.build_report(d, tmp_path / "p01")
    size_mb = html.stat().st_size / 1e6
    assert size_mb < 15, size_mb
    lines = (tmp_path / "p01" / "lesions.tsv").read_text().splitlines()
    tsv = [dict(zip(lines[0].split("\t"), row.split("\t"))) for row in lines[1:]]
    assert len(tsv) >= 5
    drv = chromium
    _open_report(drv, html)
    for r in tsv:
        lid = int(r["lesion_id"])
        _click_lesion_and_check(drv, lid, labels, [float(r[f"centroid_{a}"]) for a in "xyz"])
    drv.find_element("css selector", "#lesion-table tr[data-lesion]").click()  # the most suspicious lesion
    _screenshot(drv, tmp_path / "p01_first_lesion.png")
    from selenium.webdriver.support.ui import Select

    Select(drv.find_element("id", "fu-image")).select_by_value("t2_fu")
    drv.find_element("css selector", "button[data-slice='multiplanar']").click()
    _screenshot(drv, tmp_path / "p01_t2_multiplanar.png")
    _no_console_errors(drv)
    print(f"patient01 report: {size_mb:.1f} MB, {len(tsv)} lesions, screenshots in {tmp_path}")
