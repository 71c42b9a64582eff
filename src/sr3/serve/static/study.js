// sr3 study page: SR3's 2AFC protocol. Each pair shows for a few seconds, then the participant picks a side.
"use strict";
let participant = "";
let current = null;
let shownAt = 0;
let hideTimer = null;

function loaded(img, url) {
  return new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = url; });
}

async function next() {
  showError("");
  const response = await fetch(`/api/study/next?participant=${encodeURIComponent(participant)}`);
  if (!response.ok) { showError(await errorOf(response)); return; }
  const state = await response.json();
  if (!state.trial) { $("trial").hidden = true; $("finished").hidden = false; return; }
  current = state.trial;
  $("progress-text").textContent = `Trial ${state.done + 1} of ${state.total}`;
  $("question").textContent = current.question;
  const images = [loaded($("left"), current.left), loaded($("right"), current.right)];
  $("middle").hidden = !current.lr;
  if (current.lr) images.push(loaded($("middle"), current.lr));
  for (const id of ["left", "right", "middle"]) $(id).style.visibility = "hidden";
  await Promise.all(images);
  for (const id of ["left", "right", "middle"]) $(id).style.visibility = "visible";
  $("choose-left").disabled = $("choose-right").disabled = false;
  shownAt = performance.now();
  clearTimeout(hideTimer);
  hideTimer = setTimeout(() => {
    for (const id of ["left", "right", "middle"]) $(id).style.visibility = "hidden";
  }, state.show_seconds * 1000);
}

async function answer(choice) {
  if (!current || $("choose-left").disabled) return;
  $("choose-left").disabled = $("choose-right").disabled = true;
  const body = { participant, trial: current.id, choice, seconds: (performance.now() - shownAt) / 1000 };
  const response = await fetch("/api/study/answer", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok && response.status !== 409) { showError(await errorOf(response)); return; }
  current = null;
  next();
}

$("begin").addEventListener("click", () => {
  participant = $("participant").value.trim();
  if (!participant) { showError("Enter your participant id first."); return; }
  $("start").hidden = true;
  $("trial").hidden = false;
  next();
});
$("choose-left").addEventListener("click", () => answer("left"));
$("choose-right").addEventListener("click", () => answer("right"));
document.addEventListener("keydown", (e) => {
  if ($("trial").hidden) return;
  if (e.key === "ArrowLeft") answer("left");
  if (e.key === "ArrowRight") answer("right");
});
