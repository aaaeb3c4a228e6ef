// exemplar-color web app: upload a gray photo, pick references, colorize, compare, download.
// Everything this page needs comes from its own server; each tab keeps its own upload and job ids.
"use strict";

// the label map's colours, in reference order (the server's LABEL_COLOURS, Okabe-Ito)
const COLOURS = ["#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#000000"];
const $ = (id) => document.getElementById(id);
const state = { target: null, job: null, info: { index: false, max_upload_bytes: 0, max_references: 8 } };

function say(text) {
  const m = $("message");
  m.textContent = text || "";
  m.hidden = !text;
}

async function api(url, options = {}) {
  // the server refuses any POST without this header: another site's page cannot send it here
  const headers = { ...(options.headers || {}), "X-Exemplar-Color": "1" };
  let response;
  try {
    response = await fetch(url, { ...options, headers });
  } catch (e) {
    throw new Error("the app's server does not answer (is `exemplar-color app` still running?)");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  return body;
}

async function upload(file, role) {
  if (state.info.max_upload_bytes && file.size > state.info.max_upload_bytes) {
    throw new Error(`${file.name}: the file is ${file.size.toLocaleString()} bytes, over the limit of ` +
                    `${state.info.max_upload_bytes.toLocaleString()}`);
  }
  return api(`/api/upload?role=${role}`, {
    method: "POST", body: file, headers: { "X-Filename": encodeURIComponent(file.name).slice(0, 200) },
  });
}

function selectedRefs() {
  return [...document.querySelectorAll(".ref.selected")];
}

function refreshSelection() {
  const chosen = selectedRefs();
  chosen.forEach((el, i) => { el.querySelector(".swatch").style.background = COLOURS[i % COLOURS.length]; });
  const none = chosen.length === 0 && !state.info.colours_alone;  // some models colour with no reference
  $("colorize").disabled = !state.target || none || chosen.length > state.info.max_references;
}

function addRef(key, src, name, selected) {
  const el = document.createElement("button");
  el.className = "ref" + (selected ? " selected" : "");
  el.type = "button";
  el.title = name;
  el.dataset.ref = JSON.stringify(key);
  el.dataset.name = name;
  const img = document.createElement("img");
  img.src = src;
  img.alt = name;
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  el.append(img, swatch);
  el.addEventListener("click", () => { el.classList.toggle("selected"); refreshSelection(); });
  $("refs").append(el);
  refreshSelection();
}

async function chooseTarget(file) {
  say("");
  $("step-result").hidden = true;
  $("colorize").disabled = true;
  try {
    const up = await upload(file, "target");
    state.target = up;
    state.job = null;
    $("before").src = URL.createObjectURL(file);
    $("step-refs").hidden = false;
    $("refs").replaceChildren();
    if (up.colour) say(`${up.name}: a colour photo; only its brightness is used`);
    if (state.info.index) {
      $("rec-status").textContent = "Finding references in the gallery…";
      const recs = await api(`/api/recommend/${up.id}`, { method: "POST" });
      if (state.target !== up) return;  // another photo was chosen meanwhile
      recs.recommendations.forEach((r) =>
        addRef({ gallery: r.id }, `/api/gallery/${r.id}/thumb`, r.name, false));
      $("rec-status").textContent = "Recommended from the gallery, best first. Click to select.";
    } else {
      $("rec-status").textContent = "No gallery index: add your own references.";
    }
  } catch (e) {
    say(e.message);
  }
}

async function addOwnReference(file) {
  say("");
  try {
    const up = await upload(file, "reference");
    addRef({ upload: up.id }, URL.createObjectURL(file), up.name, true);
  } catch (e) {
    say(e.message);
  }
}

function showProgress(job) {
  $("progress").hidden = false;
  $("bar").style.width = `${Math.round(100 * job.progress)}%`;
  $("stage").textContent = `${job.stage} (${job.seconds} s)`;
}

async function colorize() {
  const chosen = selectedRefs();
  say("");
  $("colorize").disabled = true;
  try {
    let job = await api("/api/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ target: state.target.id, references: chosen.map((el) => JSON.parse(el.dataset.ref)) }),
    });
    state.job = job.id;
    while (job.state === "queued" || job.state === "running") {
      showProgress(job);
      await new Promise((r) => setTimeout(r, 400));
      if (state.job !== job.id) return;  // superseded in this tab
      job = await api(`/api/jobs/${job.id}`);
    }
    $("progress").hidden = true;
    if (job.state === "error") throw new Error(job.error);
    showResult(job, chosen.map((el) => el.dataset.name));
  } catch (e) {
    $("progress").hidden = true;
    say(e.message);
  } finally {
    refreshSelection();
  }
}

function showResult(job, names) {
  const base = `/api/jobs/${job.id}`;
  $("result").src = `${base}/image.png`;
  $("confidence").src = `${base}/confidence.png`;
  $("labels").src = `${base}/labels.png`;
  $("download").href = `${base}/image.png`;
  $("slider").value = 100;
  setSlider();
  const legend = $("legend");
  legend.replaceChildren("Which reference coloured each part:");
  names.forEach((n, i) => {
    const dot = document.createElement("span");
    dot.style.background = COLOURS[i % COLOURS.length];
    legend.append(dot, n);
  });
  $("step-result").hidden = false;
  $("step-result").dataset.job = job.id;
}

function setSlider() {
  $("result").style.clipPath = `inset(0 ${100 - $("slider").value}% 0 0)`;
}

function init() {
  api("/api/info").then((info) => { state.info = info; }).catch((e) => say(e.message));
  $("target-file").addEventListener("change", (e) => {
    if (e.target.files[0]) chooseTarget(e.target.files[0]);
    e.target.value = "";
  });
  $("reference-file").addEventListener("change", (e) => {
    if (e.target.files[0]) addOwnReference(e.target.files[0]);
    e.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) chooseTarget(e.dataTransfer.files[0]);
  });
  $("colorize").addEventListener("click", colorize);
  $("slider").addEventListener("input", setSlider);
}

init();
