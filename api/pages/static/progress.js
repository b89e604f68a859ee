// Live progress of a sweep page: polls the sweep's progress.json and redraws the bar and the counts,
// until the sweep is completed or cancelled. Served as a file: the pages allow no inline script.
"use strict";

(function () {
  const section = document.getElementById("progress");
  if (!section || section.dataset.final === "true") return;
  const url = section.dataset.url;
  const pollMs = Math.max(250, 1000 * Number(section.dataset.pollSeconds || 2));
  const states = ["pending", "running", "completed", "failed", "pruned", "diverged", "cancelled"];
  const svgNs = "http://www.w3.org/2000/svg";

  function countsText(counts) {
    const parts = states.filter((s) => counts[s]).map((s) => counts[s] + " " + s);
    return parts.length ? parts.join(", ") : "no trials";
  }

  function drawBar(counts) {
    const bar = document.getElementById("progress-bar");
    const total = states.reduce((sum, s) => sum + (counts[s] || 0), 0);
    while (bar.childNodes.length > 1) bar.removeChild(bar.lastChild); // keep the background
    let x = 0;
    for (const s of states) {
      const n = counts[s] || 0;
      if (!n || !total) continue;
      const width = (100 * n) / total;
      const rect = document.createElementNS(svgNs, "rect");
      rect.setAttribute("class", "st-" + s);
      rect.setAttribute("x", x.toFixed(3));
      rect.setAttribute("y", "0");
      rect.setAttribute("width", width.toFixed(3));
      rect.setAttribute("height", "10");
      const title = document.createElementNS(svgNs, "title");
      title.textContent = n + " " + s;
      rect.appendChild(title);
      bar.appendChild(rect);
      x += width;
    }
    bar.setAttribute("aria-label", countsText(counts));
  }

  function show(doc) {
    drawBar(doc.trials_by_state);
    document.getElementById("progress-counts").textContent = countsText(doc.trials_by_state);
    document.getElementById("progress-done").textContent = (100 * doc.progress).toFixed(1) + "%";
    const badge = document.querySelector("#sweep-state .state");
    if (badge) {
      badge.textContent = doc.state;
      badge.className = "state st-" + doc.state;
    }
    section.dataset.final = doc.final ? "true" : "false";
    document.getElementById("progress-live").textContent = doc.final ? "(finished: reload for the final tables)" : "(updates live)";
  }

  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const doc = await response.json();
        show(doc);
        if (doc.final) return;
      }
    } catch (err) {
      // the service is restarting or the network dropped: try again at the next tick
    }
    window.setTimeout(poll, pollMs);
  }

  window.setTimeout(poll, pollMs);
})();
