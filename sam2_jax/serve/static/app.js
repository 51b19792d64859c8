// sam2-jax serve: the page. Plain JS, no build step. The server's API is described in sam2_jax/serve/app.py.
"use strict";

const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const $ = (id) => document.getElementById(id);
const app = {
  sid: null, info: null, frame: 0, obj: 1, objects: [1],
  prompts: {},   // frame -> obj -> {points: [[x, y, label]], box: [x0, y0, x1, y1] | null}
  masks: {},     // frame -> base64 PNG of the frame's object-id map (tab10, 0 transparent)
  propagation: null,  // AbortController of the running propagation
};
window.sam2 = app;  // for the browser test and the console

function setStatus(text, busy) {
  $("status").textContent = text;
  document.body.dataset.status = busy ? "busy" : (app.info ? "ready" : "empty");
}
function showError(msg) {
  $("error").textContent = msg;
  $("error").hidden = !msg;
}
async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const r = await fetch(`/api/sessions/${app.sid}${path}`, opts);
  const data = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}
async function guarded(label, fn) {
  showError("");
  setStatus(label + "…", true);
  try { await fn(); setStatus(""); }
  catch (e) { showError(e.message); setStatus("error"); }
}

async function newSession() {
  const r = await fetch("/api/sessions", { method: "POST" });
  const data = await r.json();
  if (!r.ok) throw new Error(data.error);
  app.sid = data.session;
}

// --- opening -----------------------------------------------------------------------------------------------
async function opened(info) {
  app.info = info; app.frame = 0; app.prompts = {}; app.masks = {};
  app.objects = [1]; app.obj = 1;
  document.body.dataset.kind = info.kind;
  $("name").textContent = `${info.name} — ${info.width}×${info.height}` + (info.kind === "video" ? `, ${info.num_frames} frames` : "");
  for (const id of ["frame", "mask", "prompts"]) { $(id).width = info.width; $(id).height = info.height; }
  $("slider").max = info.num_frames - 1; $("slider").value = 0;
  $("dl-masks").href = `/api/sessions/${app.sid}/download/masks.zip`;
  $("dl-overlay").href = `/api/sessions/${app.sid}/download/overlay`;
  $("progress").value = 0; $("progress-text").textContent = ""; $("auto-count").textContent = "";
  renderObjects();
  await showFrame(0);
}
$("upload").addEventListener("change", () => guarded("uploading", async () => {
  const file = $("upload").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  await opened(await api("POST", "/open", form));
  $("upload").value = "";
}));
$("open-path").addEventListener("click", () => guarded("opening", async () => {
  if (!$("files").value) throw new Error("choose a file the server offers first");
  await opened(await api("POST", "/open", { path: $("files").value }));
}));
async function listFiles() {
  const data = await (await fetch("/api/files")).json();
  $("files").hidden = $("open-path").hidden = !data.allow_dir;
  for (const f of data.files) {
    const o = document.createElement("option");
    o.value = f.path; o.textContent = `${f.path} (${f.kind}${f.frames ? `, ${f.frames} frames` : ""})`;
    $("files").appendChild(o);
  }
}

// --- drawing -----------------------------------------------------------------------------------------------
function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${src.slice(0, 60)}`));
    img.src = src;
  });
}
async function showFrame(t) {
  app.frame = t;
  $("slider").value = t;
  $("frame-label").textContent = `frame ${t} / ${app.info.num_frames - 1}`;
  const img = await loadImage(`/api/sessions/${app.sid}/frames/${t}`);
  if (app.frame !== t) return;  // the user moved on while it loaded
  $("frame").getContext("2d").drawImage(img, 0, 0);
  await drawMask(t);
  drawPrompts();
}
async function drawMask(t) {
  const ctx = $("mask").getContext("2d");
  if (!(t in app.masks) && app.info.frames_with_masks.includes(t)) app.masks[t] = (await api("GET", `/masks/${t}`)).mask;
  const src = app.masks[t];
  const img = src ? await loadImage("data:image/png;base64," + src) : null;
  if (app.frame !== t) return;
  ctx.clearRect(0, 0, $("mask").width, $("mask").height);
  if (img) ctx.drawImage(img, 0, 0);
  document.body.dataset.maskFrame = String(t);
}
function drawPrompts(drag) {
  const c = $("prompts"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const r = Math.max(4, c.width / 150);
  for (const [obj, p] of Object.entries(app.prompts[app.frame] || {})) {
    ctx.strokeStyle = TAB10[obj % 10]; ctx.lineWidth = r / 2;
    if (p.box) ctx.strokeRect(p.box[0], p.box[1], p.box[2] - p.box[0], p.box[3] - p.box[1]);
    for (const [x, y, label] of p.points) {
      ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fillStyle = label ? "#2c2" : "#d22"; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.stroke();
    }
  }
  if (drag) { ctx.strokeStyle = "#fff"; ctx.setLineDash([6, 4]); ctx.strokeRect(drag[0], drag[1], drag[2] - drag[0], drag[3] - drag[1]); ctx.setLineDash([]); }
}
function renderObjects() {
  const box = $("objects");
  box.innerHTML = "";
  for (const id of app.objects) {
    const b = document.createElement("button");
    b.innerHTML = `<span class="swatch" style="background:${TAB10[id % 10]}"></span>object ${id}`;
    b.className = id === app.obj ? "current" : "";
    b.dataset.obj = id;
    b.addEventListener("click", () => { app.obj = id; renderObjects(); });
    box.appendChild(b);
  }
}

// --- prompts -----------------------------------------------------------------------------------------------
function toImage(e) {
  const c = $("prompts"), rect = c.getBoundingClientRect();
  return [Math.round((e.clientX - rect.left) * c.width / rect.width * 10) / 10,
          Math.round((e.clientY - rect.top) * c.height / rect.height * 10) / 10];
}
let down = null;
$("prompts").addEventListener("contextmenu", (e) => e.preventDefault());
$("prompts").addEventListener("mousedown", (e) => { if (app.info) down = { at: toImage(e), e }; });
$("prompts").addEventListener("mousemove", (e) => {
  if (!down) return;
  const [x, y] = toImage(e);
  drawPrompts([Math.min(down.at[0], x), Math.min(down.at[1], y), Math.max(down.at[0], x), Math.max(down.at[1], y)]);
});
$("prompts").addEventListener("mouseup", (e) => {
  if (!down || app.propagation) { down = null; return; }
  const [x0, y0] = down.at, [x, y] = toImage(e), start = down.e;
  down = null;
  const p = ((app.prompts[app.frame] ||= {})[app.obj] ||= { points: [], box: null });
  const dragged = Math.hypot(e.clientX - start.clientX, e.clientY - start.clientY) > 6;
  if (dragged) p.box = [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)];
  else {
    const negative = e.button === 2 || e.shiftKey || document.querySelector("input[name=label]:checked").value === "0";
    p.points.push([x, y, negative ? 0 : 1]);
  }
  drawPrompts();
  sendPrompt(app.frame, app.obj);
});
async function sendPrompt(t, obj) {
  const p = app.prompts[t][obj];
  await guarded("segmenting", async () => {
    const data = await api("POST", "/prompt", { frame: t, obj_id: obj, points: p.points, box: p.box });
    app.masks[t] = data.mask;
    app.info.objects = data.objects;
    await drawMask(t);
  });
}
$("add-object").addEventListener("click", () => {
  app.obj = Math.max(0, ...app.objects) + 1;
  app.objects.push(app.obj);
  renderObjects();
});
$("remove-object").addEventListener("click", () => guarded("removing", async () => {
  const obj = app.obj;
  try { app.info = await api("POST", "/remove_object", { obj_id: obj }); }
  catch (e) { if (!e.message.startsWith("no object")) throw e; }  // never prompted: nothing on the server
  for (const f of Object.values(app.prompts)) delete f[obj];
  app.objects = app.objects.filter((o) => o !== obj);
  if (!app.objects.length) app.objects = [1];
  app.obj = app.objects[0];
  await refetchMasks();
  renderObjects();
}));
$("clear-frame").addEventListener("click", () => guarded("clearing", async () => {
  const p = (app.prompts[app.frame] || {})[app.obj];
  if (!p) return;
  delete app.prompts[app.frame][app.obj];
  const data = await api("POST", "/clear", { frame: app.frame, obj_id: app.obj });
  await refetchMasks();
}));
$("reset").addEventListener("click", () => guarded("resetting", async () => {
  app.info = await api("POST", "/reset");
  app.prompts = {}; app.masks = {};
  await showFrame(app.frame);
}));
async function refetchMasks() {
  const info = await api("GET", "");
  app.info = info;
  app.masks = {};  // fetched again frame by frame as they are shown
  await showFrame(app.frame);
}

// --- propagation (server-sent events over fetch, so that Cancel and closing the page stop it) ---------------
$("propagate").addEventListener("click", async () => {
  showError("");
  const direction = $("direction").value;
  const start = direction === "both" ? "" : `&start=${app.frame}`;
  const ctrl = app.propagation = new AbortController();
  $("propagate").disabled = true; $("cancel").disabled = false;
  setStatus("tracking…", true);
  try {
    const r = await fetch(`/api/sessions/${app.sid}/propagate?direction=${direction}${start}`, { signal: ctrl.signal });
    if (!r.ok) throw new Error((await r.json()).error);
    const reader = r.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        const kind = (block.match(/^event: (.*)$/m) || [, "message"])[1];
        const data = JSON.parse(block.match(/^data: (.*)$/m)[1]);
        if (kind === "failed") throw new Error(data.error);
        if (kind === "end") { $("progress-text").textContent = `${data.done} / ${data.total}` + (data.cancelled ? " (cancelled)" : " done"); continue; }
        app.masks[data.frame] = data.mask;
        $("progress").max = data.total; $("progress").value = data.done;
        $("progress-text").textContent = `${data.done} / ${data.total}`;
        await showFrame(data.frame);
      }
    }
    setStatus("");
  } catch (e) {
    if (e.name !== "AbortError") { showError(e.message); setStatus("error"); } else setStatus("cancelled");
  } finally {
    app.propagation = null;
    $("propagate").disabled = false; $("cancel").disabled = true;
    document.body.dataset.status = "ready";
  }
});
$("cancel").addEventListener("click", async () => {
  await api("POST", "/cancel").catch(() => {});
});

// --- the mask generator ------------------------------------------------------------------------------------
$("auto").addEventListener("click", () => guarded("segmenting everything", async () => {
  const data = await api("POST", "/auto", {
    points_per_side: Number($("pps").value), pred_iou_thresh: Number($("iou").value),
    stability_score_thresh: Number($("stab").value),
  });
  app.masks[0] = data.mask;
  $("auto-count").textContent = `${data.count} masks`;
  await drawMask(0);
}));

// --- timeline ----------------------------------------------------------------------------------------------
$("slider").addEventListener("input", () => showFrame(Number($("slider").value)));
$("prev").addEventListener("click", () => app.frame > 0 && showFrame(app.frame - 1));
$("next").addEventListener("click", () => app.frame < app.info.num_frames - 1 && showFrame(app.frame + 1));
document.addEventListener("keydown", (e) => {
  if (!app.info || e.target.tagName === "INPUT" && e.target.type !== "range") return;
  if (e.key === "ArrowLeft") $("prev").click();
  if (e.key === "ArrowRight") $("next").click();
});
window.addEventListener("pagehide", () => {
  if (app.sid) navigator.sendBeacon(`/api/sessions/${app.sid}/cancel`);
});

guarded("starting", async () => { await newSession(); await listFiles(); });
