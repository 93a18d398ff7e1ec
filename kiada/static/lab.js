// Draws the watch live from its Server-Sent Events (lab/watch with Accept: text/event-stream):
// one row per pod, a mark per call, failures in red, transitions labelled, the summary under
// it. Everything that came from the network goes in through textContent or attributes, never
// as markup. Without this script the form opens the same watch as text.
"use strict";

(function () {
  const form = document.getElementById("watch-form");
  if (!form) return;
  const SVG = "http://www.w3.org/2000/svg";
  const svg = document.getElementById("timeline");
  const status = document.getElementById("watch-status");
  const list = document.getElementById("transitions");
  const summaryBox = document.getElementById("watch-summary");
  const startButton = document.getElementById("watch-start");
  const stopButton = document.getElementById("watch-stop");
  const colour = window.kiadaPodColour || (() => "#5b6477");

  // Layout, in SVG units: labels on the left, time across, a row per pod under a label band.
  const LABEL = 130, WIDTH = 680, BAND = 30, ROW = 20;
  let source = null, duration = 60, rows = new Map(), marks = 0, finished = false, labels = 0;

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function x(t) {
    return LABEL + Math.min(t / duration, 1) * (WIDTH - LABEL - 10);
  }

  function resize() {
    const height = BAND + rows.size * ROW + 6;
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
    svg.querySelectorAll("line.transition").forEach((l) => l.setAttribute("y2", height));
  }

  // The row of a pod, or of the failed and throttled calls, made when first needed.
  function row(key, label, fill) {
    let r = rows.get(key);
    if (r) return r;
    const y = BAND + rows.size * ROW;
    const g = el("g", { class: "row", "data-row": key });
    g.append(el("line", { class: "row-line", x1: LABEL, x2: WIDTH - 10, y1: y + ROW / 2, y2: y + ROW / 2 }));
    const text = el("text", { x: 0, y: y + ROW / 2 + 4, fill }, label);
    g.append(text);
    svg.append(g);
    r = { g, y };
    rows.set(key, r);
    resize();
    return r;
  }

  function onCall(call) {
    let r, cls = "mark";
    let fill;
    if (call.outcome === "ok") {
      fill = colour(call.pod);
      r = row("pod:" + call.pod, call.pod, fill);
      if (call.state !== "ready") cls += " not-ready";
    } else if (call.outcome === "failed") {
      fill = "#c23b3b";
      r = row("failed", "failed", fill);
      cls += " failed";
    } else {
      fill = "#b8bfcc";
      r = row("throttled", "throttled", fill);
      cls += " throttled";
    }
    const mark = el("rect", { class: cls, x: x(call.t) - 1, y: r.y + 3, width: 3, height: ROW - 6, fill });
    const what = call.outcome === "ok" ? `${call.pod} (${call.state}) ${call.ms} ms`
      : call.outcome === "failed" ? `${call.kind}: ${call.error}` : "throttled";
    mark.append(el("title", {}, `${call.t.toFixed(2)} s ${what}`));
    r.g.append(mark);
    marks++;
    status.textContent = `${marks} call(s) so far, ${call.t.toFixed(1)} s of ${duration} s`;
  }

  function onTransition(tr) {
    // A pod's first answer shows as its row starting; the other changes get a line and a
    // label, on two alternating levels so that close ones stay readable.
    if (tr.kind !== "new-pod") {
      const at = x(tr.t);
      const y = labels++ % 2 === 0 ? 10 : 22;
      svg.append(el("line", { class: "transition " + tr.kind, x1: at, x2: at, y1: y + 2, y2: svg.getAttribute("height") }));
      const short = tr.pod ? `${tr.kind} ${tr.pod}` : tr.kind;
      svg.append(el("text", { class: "transition-label", x: at + 2, y }, short));
    }
    const item = document.createElement("li");
    item.className = tr.kind;
    item.textContent = `${tr.t.toFixed(2)} s  ${tr.text}`;
    list.append(item);
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.append(td);
    return td;
  }

  function onSummary(s) {
    finish(`Done: ${s.calls} call(s), ${s.answered} answered, ${s.failed} failed, ${s.throttled} throttled in ${s.durationS.toFixed(1)} s.`, false);
    summaryBox.replaceChildren();
    const table = document.createElement("table");
    table.id = "summary-pods";
    const head = document.createElement("tr");
    for (const h of ["pod", "calls", "first", "last", "last state"]) {
      const th = document.createElement("th");
      th.textContent = h;
      head.append(th);
    }
    table.append(head);
    for (const [pod, p] of Object.entries(s.pods)) {
      const tr = document.createElement("tr");
      const name = cell(tr, "");
      const sw = el("svg", { class: "swatch", width: 10, height: 10 });
      sw.append(el("circle", { cx: 5, cy: 5, r: 5, fill: colour(pod) }));
      name.append(sw, document.createTextNode(pod));
      cell(tr, String(p.calls), "num");
      cell(tr, `${p.firstS.toFixed(2)} s`);
      cell(tr, `${p.lastS.toFixed(2)} s`);
      cell(tr, p.state);
      table.append(tr);
    }
    summaryBox.append(table);
    const line = (text, cls) => {
      const p = document.createElement("p");
      if (cls) p.className = cls;
      p.textContent = text;
      summaryBox.append(p);
    };
    const kinds = Object.entries(s.failures);
    if (kinds.length === 0) line("Failures: none.");
    for (const [kind, f] of kinds) {
      line(`Failed with ${kind}: ${f.count}, first at ${f.firstS.toFixed(2)} s, last at ${f.lastS.toFixed(2)} s.`, "error");
    }
    if (s.longestRun) {
      const r = s.longestRun;
      line(`Longest run without a failure: ${r.calls} call(s), ${r.fromS.toFixed(2)} s to ${r.toS.toFixed(2)} s (${r.seconds.toFixed(1)} s).`);
    }
    for (const g of s.stopped) {
      let text = `${g.pod} stopped answering: last answer at ${g.lastS.toFixed(2)} s, ${g.silentS.toFixed(1)} s before the end`;
      if (g.state) text += `; it said ${g.state} from ${g.notReadySinceS.toFixed(2)} s and kept answering ${g.answeredWhileNotReadyS.toFixed(1)} s after that`;
      line(text + ".");
    }
  }

  // The summary is the last event and the server ends the stream after it: let it end (closing
  // now would abort a response that is complete), and close on the error event that follows,
  // before EventSource would reconnect and start another watch.
  function finish(message, closeNow = true) {
    finished = true;
    if (source && closeNow) {
      source.close();
      source = null;
    }
    status.textContent = message;
    startButton.hidden = false;
    stopButton.hidden = true;
  }

  function parse(handler) {
    return (event) => {
      try {
        handler(JSON.parse(event.data));
      } catch (e) {
        finish("Could not read the watch: " + e.message);
      }
    };
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (source) source.close();
    const url = form.getAttribute("action") + "?" + new URLSearchParams(new FormData(form));
    svg.replaceChildren();
    rows = new Map();
    marks = 0;
    labels = 0;
    finished = false;
    list.replaceChildren();
    summaryBox.replaceChildren();
    svg.removeAttribute("hidden");
    resize();
    status.textContent = "Starting the watch…";
    startButton.hidden = true;
    stopButton.hidden = false;
    source = new EventSource(url);
    source.addEventListener("start", parse((s) => {
      duration = s.durationS;
      status.textContent = `Watching ${s.service} every ${s.intervalMs} ms for ${s.durationS} s (${s.connection} connection).`;
    }));
    source.addEventListener("call", parse(onCall));
    source.addEventListener("transition", parse(onTransition));
    source.addEventListener("summary", parse(onSummary));
    // The stream ends after the summary; an error before it means the watch was refused (at
    // most four at once, or a bad parameter) or cut. EventSource would reconnect and start a
    // new watch: close it instead.
    const current = source;
    current.addEventListener("error", () => {
      if (finished) {
        current.close();
        if (source === current) source = null;
        return;
      }
      finish(marks === 0
        ? "The watch was refused or could not start: open the same URL without JavaScript to read why (at most four watches run at once per kiada pod)."
        : "The watch was cut before its end.");
    });
  });

  stopButton.addEventListener("click", () => finish(`Stopped after ${marks} call(s).`));
})();

// The local suite's pods (lab/pods, JSON), refreshed every second; rollout and delete buttons
// ask the suite (same origin) and say what it answered. Text from the network goes in through
// textContent only.
(function () {
  const table = document.getElementById("pods-table");
  if (!table) return;
  const body = table.querySelector("tbody");
  const status = document.getElementById("pods-status");
  let said = "";

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.append(td);
    return td;
  }

  function render(pods) {
    const rows = pods.map((pod) => {
      const row = document.createElement("tr");
      row.dataset.pod = pod.name;
      const name = cell(row, pod.name);
      name.style.color = (window.kiadaPodColour || (() => ""))(pod.name);
      cell(row, pod.service);
      cell(row, pod.state, "state-" + pod.state);
      cell(row, pod.endpoint ? "yes" : "no");
      cell(row, pod.admin);
      cell(row, String(pod.requests ?? "?"), "num");
      cell(row, String(pod.open), "num");
      const td = document.createElement("td");
      if (pod.state !== "draining") {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Delete";
        button.addEventListener("click", () => ask("DELETE", "lab/pods/" + encodeURIComponent(pod.name)));
        td.append(button);
      }
      row.append(td);
      return row;
    });
    body.replaceChildren(...rows);
  }

  async function ask(method, url) {
    try {
      const res = await fetch(url, { method, headers: { accept: "text/plain" } });
      said = (await res.text()).trim();
    } catch (e) {
      said = "the suite did not answer: " + e.message;
    }
    status.textContent = said;
    refresh();
  }

  async function refresh() {
    try {
      const res = await fetch("lab/pods", { headers: { accept: "application/json" } });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const data = await res.json();
      render(data.pods);
      const rolling = data.services.filter((s) => s.rollout).map((s) => s.name + ": " + s.rollout);
      status.textContent = [said, ...rolling].filter(Boolean).join(" | ");
    } catch (e) {
      status.textContent = "cannot read the pods (" + e.message + "); retrying";
    }
  }

  document.querySelectorAll("button[data-rollout]").forEach((button) => {
    button.addEventListener("click", () => ask("POST", "lab/rollout?service=" + button.dataset.rollout));
  });
  refresh();
  setInterval(refresh, 1000);
})();
