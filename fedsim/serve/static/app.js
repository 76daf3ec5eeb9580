// fedsim serve: live updates without a build step. The server renders every fragment (escaped by Jinja2);
// this script only swaps them in, recolours grid cells, counts elapsed seconds, and appends log text as text.
"use strict";
(function () {
  const body = document.body;
  const conn = document.getElementById("conn");
  const serverNow = parseFloat(body.dataset.now || "0");
  let offset = serverNow ? serverNow - Date.now() / 1000 : 0; // server clock minus ours, seconds

  function dur(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }
  function tick() {
    const now = Date.now() / 1000 + offset;
    document.querySelectorAll("[data-started]").forEach((el) => {
      el.textContent = dur(now - parseFloat(el.dataset.started));
    });
  }
  setInterval(tick, 1000);

  let cells = null;
  function indexCells() {
    cells = new Map();
    // a site's data prep jobs show in every model's cell: one key, several boxes
    document.querySelectorAll("#grid .job[data-key]").forEach((el) => {
      if (!cells.has(el.dataset.key)) cells.set(el.dataset.key, []);
      cells.get(el.dataset.key).push(el);
    });
  }
  function apply(msg, full) {
    if (msg.now) offset = msg.now - Date.now() / 1000;
    if (msg.grid) {
      document.getElementById("grid").innerHTML = msg.grid;
      cells = null;
    }
    if (msg.fragments) {
      for (const [id, html] of Object.entries(msg.fragments)) {
        const el = document.getElementById(id);
        if (el) el.innerHTML = html;
      }
    }
    if (msg.cells) {
      if (cells === null) indexCells();
      for (const [key, c] of Object.entries(msg.cells)) {
        for (const el of cells.get(key) || []) {
          el.className = "job " + c.css;
          el.title = c.title;
          el.dataset.status = c.status;
        }
      }
    }
    body.dataset.updates = String(parseInt(body.dataset.updates || "0", 10) + 1);
    tick();
  }
  function stream(url, handlers) {
    const es = new EventSource(url);
    es.onopen = () => conn && conn.classList.add("on");
    es.onerror = () => conn && conn.classList.remove("on");
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (ev) => fn(JSON.parse(ev.data), es));
    }
    return es;
  }
  if (body.dataset.stream) {
    stream(body.dataset.stream, { state: (m) => apply(m, true), delta: (m) => apply(m, false) });
  }
  if (body.dataset.log) {
    const pre = document.getElementById("log");
    const status = document.getElementById("log-status");
    const MAX_CHARS = 2000000; // what the page keeps: the end of the log
    stream(body.dataset.log, {
      meta: (m) => {
        pre.textContent = m.skipped ? "[... " + m.skipped + " bytes before are not shown]\n" : "";
        status.textContent = "streaming";
      },
      reset: () => { pre.textContent = ""; },
      log: (text) => {
        const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.appendChild(document.createTextNode(text));
        if (pre.textContent.length > MAX_CHARS) pre.textContent = pre.textContent.slice(-MAX_CHARS);
        if (stick) pre.scrollTop = pre.scrollHeight;
      },
      end: (m, es) => {
        status.textContent = "(" + m.reason + ")";
        body.dataset.logEnded = "1";
        es.close();
        const state = document.getElementById("job-state");
        if (state && state.textContent === "running") setTimeout(() => location.reload(), 300);
      },
    });
  }
})();
