// pmlseg report viewer: rebaseline and follow-up side by side in NiiVue (vendored in the page), one crosshair,
// one zoom, one slice orientation, lesion overlays toggled on both, the lesion table drives both views.
// Coordinates: lesions.tsv is LPS mm (ITK); NIfTI/NiiVue world space is RAS mm: x and y change sign.
// window.pmlsegViewer exposes the state the browser test reads (and a reader's console can use).
(function () {
  'use strict';
  const V = JSON.parse(document.getElementById('viewer-data').textContent);
  const L = JSON.parse(document.getElementById('lesion-data').textContent);
  const status = document.getElementById('viewer-status');
  const api = window.pmlsegViewer = {ready: false, error: null, current: null};
  if (!V) { status.textContent = 'No viewer: this report has no rebaseline/follow-up FLAIR pair.'; return; }
  if (!document.createElement('canvas').getContext('webgl2')) {
    status.textContent = 'This browser has no WebGL2, so the interactive viewer is off; the crops below show every lesion.';
    api.error = 'no webgl2';
    return;
  }
  const N = window.niivue;
  const ras = p => [-p[0], -p[1], p[2]];
  const SLICE = {axial: N.SLICE_TYPE.AXIAL, coronal: N.SLICE_TYPE.CORONAL, sagittal: N.SLICE_TYPE.SAGITTAL,
                 multiplanar: N.SLICE_TYPE.MULTIPLANAR};
  const OVERLAY = {new: {colormap: 'red', opacity: 0.55}, possible: {colormap: 'green', opacity: 0.55}};
  const opts = {isRadiologicalConvention: true, sagittalNoseLeft: true, isOrientationTextVisible: true, show3Dcrosshair: false,
                crosshairColor: [1, 0.85, 0, 1], crosshairGap: 6, multiplanarShowRender: N.SHOW_RENDER.NEVER,
                fontMinPx: 18, fontColor: [0.45, 0.8, 1, 1], sliceType: SLICE.axial, logLevel: 'error',
                loadingText: 'loading volumes ...'};
  const nvs = [new N.Niivue(opts), new N.Niivue(opts)];
  const order = L.order;  // lesions, then the review-only possible ones (P1, ...)
  let syncing = false;

  const load = (key, b64, extra) => N.NVImage.loadFromBase64({base64: b64, name: key + '.nii.gz', ...extra});
  const overlayKeys = Object.keys(V.overlays);
  async function overlays() {
    const out = [];
    for (const k of overlayKeys) {
      out.push(await load(k, V.overlays[k], {colormap: OVERLAY[k].colormap, opacity: OVERLAY[k].opacity,
                                             cal_min: 0.5, cal_max: 1}));
    }
    return out;
  }
  function mm(i) {  // crosshair of viewer i, LPS mm
    const p = nvs[i].frac2mm(nvs[i].scene.crosshairPos);
    return [-p[0], -p[1], p[2]];
  }
  function showPosition() {
    const p = mm(1).map(v => v.toFixed(1)).join(', ');
    document.getElementById('viewer-pos').textContent =
      (api.current ? `lesion ${api.current} (${order.indexOf(api.current) + 1}/${order.length}) · ` : '') +
      `crosshair LPS ${p} mm`;
  }
  function follow(from) {  // copy one viewer's crosshair and pan/zoom to the other
    if (syncing) return;
    syncing = true;
    const to = nvs[1 - from];
    to.scene.crosshairPos = to.mm2frac(nvs[from].frac2mm(nvs[from].scene.crosshairPos));
    to.scene.pan2Dxyzmm = nvs[from].scene.pan2Dxyzmm.slice();
    to.drawScene();
    syncing = false;
    showPosition();
  }
  function jumpTo(id) {
    id = String(id);
    const t = L.targets[id];
    if (!t) return false;
    api.current = id;
    for (const nv of nvs) {
      nv.scene.crosshairPos = nv.mm2frac(ras(t));
      nv.drawScene();
    }
    for (const tr of document.querySelectorAll('tr[data-lesion]')) tr.classList.toggle('current', tr.dataset.lesion === id);
    showPosition();
    return true;
  }
  function step(d) {
    if (!order.length) return;
    const i = api.current === null ? (d > 0 ? 0 : order.length - 1)
      : (order.indexOf(api.current) + d + order.length) % order.length;
    jumpTo(order[i]);
  }
  function setSlice(name) {
    for (const nv of nvs) nv.setSliceType(SLICE[name]);
    for (const b of document.querySelectorAll('button[data-slice]')) b.classList.toggle('on', b.dataset.slice === name);
  }
  function zoom(f) {
    for (const nv of nvs) {
      const p = nv.scene.pan2Dxyzmm.slice();
      p[3] = Math.min(8, Math.max(1, p[3] * f));
      nv.scene.pan2Dxyzmm = p;
      nv.drawScene();
    }
  }
  function windowLevel() {  // sliders are in % of each volume's 8-bit range (0 = its 0.5th percentile)
    const w = +document.getElementById('wl-window').value, l = +document.getElementById('wl-level').value;
    for (const nv of nvs) {
      nv.volumes[0].cal_min = 2.55 * (l - w / 2);
      nv.volumes[0].cal_max = 2.55 * (l + w / 2);
      nv.updateGLVolume();
    }
  }
  function setOverlay(key, on) {
    const k = overlayKeys.indexOf(key);
    if (k < 0) return;
    for (const nv of nvs) nv.setOpacity(1 + k, on ? OVERLAY[key].opacity : 0);
  }
  const fuVolumes = {};
  async function setFollowup(key) {
    const nv = nvs[1];
    if (!fuVolumes[key]) fuVolumes[key] = await load(key, V.volumes[key], {colormap: 'gray'});
    const old = nv.volumes[0];
    if (old === fuVolumes[key]) return;
    nv.addVolume(fuVolumes[key]);
    nv.setVolume(fuVolumes[key], 0);
    nv.removeVolume(old);
    document.getElementById('fu-caption').textContent = `Follow-up ${V.labels[key]} (on the baseline grid` +
      (V.reduced.includes(key) ? ', half resolution to keep the report small)' : ')');
    document.getElementById('fu-image').value = key;
    windowLevel();
    follow(0);
  }

  async function start() {
    await nvs[0].attachTo('nv-bl');
    await nvs[1].attachTo('nv-fu');
    nvs[0].addVolume(await load('flair_bl', V.volumes.flair_bl, {colormap: 'gray'}));
    fuVolumes.flair_fu = await load('flair_fu', V.volumes.flair_fu, {colormap: 'gray'});
    nvs[1].addVolume(fuVolumes.flair_fu);
    for (const nv of nvs) for (const o of await overlays()) nv.addVolume(o);
    nvs.forEach((nv, i) => { nv.onLocationChange = () => follow(i); });
    // pan/zoom and slice type follow the viewer being used (NiiVue syncs from the focused canvas)
    nvs[0].broadcastTo(nvs[1], {zoomPan: true, sliceType: true});
    nvs[1].broadcastTo(nvs[0], {zoomPan: true, sliceType: true});
    for (const b of document.querySelectorAll('button[data-slice]')) b.addEventListener('click', () => setSlice(b.dataset.slice));
    for (const tr of document.querySelectorAll('tr[data-lesion]')) tr.addEventListener('click', () => jumpTo(tr.dataset.lesion));
    for (const cb of document.querySelectorAll('input[data-overlay]')) cb.addEventListener('change', () => setOverlay(cb.dataset.overlay, cb.checked));
    document.getElementById('prev').addEventListener('click', () => step(-1));
    document.getElementById('next').addEventListener('click', () => step(1));
    document.getElementById('zoom-in').addEventListener('click', () => zoom(1.25));
    document.getElementById('zoom-out').addEventListener('click', () => zoom(0.8));
    for (const id of ['wl-window', 'wl-level']) document.getElementById(id).addEventListener('input', windowLevel);
    document.getElementById('wl-reset').addEventListener('click', () => {
      document.getElementById('wl-window').value = 100; document.getElementById('wl-level').value = 50; windowLevel();
    });
    document.getElementById('fu-image').addEventListener('change', e => setFollowup(e.target.value));
    document.addEventListener('keydown', e => {
      if (e.target.closest && e.target.closest('textarea, input[type=text]')) return;
      if (e.key === 'n') step(1);
      else if (e.key === 'p') step(-1);
      else if (e.key === '+' || e.key === '=') zoom(1.25);
      else if (e.key === '-') zoom(0.8);
    });
    setSlice('axial');
    if (order.length) jumpTo(order[0]); else showPosition();
    Object.assign(api, {ready: true, nvs, jumpTo, step, mm, setOverlay, setSlice, setFollowup, zoom,
      overlayKeys, opacity: key => nvs.map(nv => nv.volumes[1 + overlayKeys.indexOf(key)].opacity)});
    status.textContent = '';
  }
  start().catch(err => {
    api.error = String(err);
    status.textContent = 'The viewer could not start (' + err + '); the crops below show every lesion.';
  });
})();
