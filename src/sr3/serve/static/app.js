// sr3 upscale page: choose an image, queue a job, follow its progress, compare and download the result.
"use strict";
let chosenFile = null;
let pollTimer = null;

async function loadModels() {
  const response = await fetch("/api/models");
  if (!response.ok) { showError(await errorOf(response)); return; }
  const info = await response.json();
  for (const m of info.models) {
    const option = new Option(`${m.name} (${m.scale}x)`, m.name, m.default, m.default);
    option.dataset.note = `${m.description}; default ${m.sampler}, ${m.steps} step(s)`;
    option.dataset.denoise = m.denoise ? "yes" : "";
    option.dataset.steps = m.takes_steps ? "yes" : "";
    $("model").add(option);
  }
  for (const name of info.examples) $("example").add(new Option(name, name));
  $("steps").max = info.max_steps;
  noteModel();
}

function noteModel() {
  const option = $("model").selectedOptions[0];
  $("model-note").textContent = option ? option.dataset.note : "";
  // only models trained with a noise level take a denoise strength
  $("denoise-field").hidden = !(option && option.dataset.denoise);
  // a cascade samples each stage with the steps its file sets
  const fixed = !(option && option.dataset.steps);
  $("steps").disabled = fixed;
  if (fixed) $("steps").value = "";
}

function choose(file) {
  chosenFile = file;
  $("example").value = "";
  $("chosen").textContent = file ? `${file.name} (${(file.size / 1024).toFixed(0)} kB)` : "";
}

async function submit() {
  showError("");
  const form = new FormData();
  if ($("example").value) form.append("example", $("example").value);
  else if (chosenFile) form.append("file", chosenFile, chosenFile.name);
  else { showError("Choose an image or an example first."); return; }
  form.append("model", $("model").value);
  if (!$("steps").disabled) form.append("steps", $("steps").value);
  form.append("seed", $("seed").value);
  if (!$("denoise-field").hidden) form.append("denoise", $("denoise").value);
  $("go").disabled = true;
  try {
    const response = await fetch("/api/jobs", { method: "POST", body: form });
    if (!response.ok) { showError(await errorOf(response)); return; }
    const job = await response.json();
    location.hash = `job=${job.id}`;
    follow(job.id);
  } catch (e) {
    showError(`The server did not answer: ${e}`);
  } finally {
    $("go").disabled = false;
  }
}

function follow(id) {
  clearTimeout(pollTimer);
  $("result").hidden = true;
  const poll = async () => {
    const response = await fetch(`/api/jobs/${encodeURIComponent(id)}`);
    if (!response.ok) { showError(await errorOf(response)); $("status").textContent = ""; return; }
    const job = await response.json();
    const bar = $("progress");
    if (job.status === "queued") {
      $("status").textContent = `Queued: ${job.position} job(s) ahead.`;
      bar.hidden = false; bar.value = 0;
    } else if (job.status === "running") {
      $("status").textContent = `Sampling: step ${job.done_steps} of ${job.total_steps || "?"}.`;
      bar.hidden = false; bar.max = job.total_steps || 1; bar.value = job.done_steps;
    } else if (job.status === "failed") {
      bar.hidden = true; $("status").textContent = "";
      showError(job.error);
      return;
    } else {
      bar.hidden = true;
      $("status").textContent = `Done: ${job.model}, seed ${job.seed}.`;
      showResult(job);
      return;
    }
    pollTimer = setTimeout(poll, 250);
  };
  poll();
}

function showResult(job) {
  const after = $("after"), before = $("before");
  after.onload = () => {
    before.style.height = `${after.clientHeight}px`;
    before.style.width = `${after.clientWidth}px`;
    zoomAt(0.5, 0.5);
  };
  after.src = job.result;
  before.src = job.input;
  const stem = job.name.replace(/\.[^.]*$/, "");
  $("download").href = job.result;
  $("download").download = `${stem}_sr3.png`;
  $("size").textContent = `${job.width} x ${job.height} px`;
  $("result").hidden = false;
}

function zoomAt(fx, fy) {
  const after = $("after"), zoom = $("zoom");
  if (!after.naturalWidth) return;
  const factor = 2;  // two screen pixels per output pixel
  const w = after.naturalWidth * factor, h = after.naturalHeight * factor;
  zoom.style.backgroundImage = `url("${after.src}")`;
  zoom.style.backgroundSize = `${w}px ${h}px`;
  const x = Math.max(0, Math.min(w - zoom.clientWidth, fx * w - zoom.clientWidth / 2));
  const y = Math.max(0, Math.min(h - zoom.clientHeight, fy * h - zoom.clientHeight / 2));
  zoom.style.backgroundPosition = `${-x}px ${-y}px`;
}

function init() {
  loadModels();
  $("model").addEventListener("change", noteModel);
  $("file").addEventListener("change", () => choose($("file").files[0] || null));
  $("example").addEventListener("change", () => { if ($("example").value) { chosenFile = null; $("chosen").textContent = ""; } });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]);
  });
  $("go").addEventListener("click", submit);
  $("slider").addEventListener("input", () => { $("before-clip").style.width = `${$("slider").value}%`; });
  $("compare").addEventListener("mousemove", (e) => {
    const box = $("after").getBoundingClientRect();
    zoomAt((e.clientX - box.left) / box.width, (e.clientY - box.top) / box.height);
  });
  const match = location.hash.match(/job=([\w-]+)/);
  if (match) follow(match[1]);
}

init();
