// Shared by the sr3 pages: element lookup and the one way a refusal is shown.
"use strict";
const $ = (id) => document.getElementById(id);

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// The server's one-line message of a refused request ({"error": ...}), else the HTTP status text.
async function errorOf(response) {
  try { return (await response.json()).error || response.statusText; } catch (e) { return response.statusText; }
}
