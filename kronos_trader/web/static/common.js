/* Shared helpers for the kronos-trader pages: API calls, formatting, tables, charts. */
"use strict";
const K = (() => {
  const COLORS = { up: "#16a34a", down: "#dc2626", accent: "#2563eb", band90: "rgba(37,99,235,0.13)",
    band50: "rgba(37,99,235,0.28)", muted: "#94a3b8", ink: "#1d2330" };

  async function api(url, options = {}) {
    let response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      throw new Error("the server is not reachable (" + err.message + ")");
    }
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!response.ok) {
      const msg = body && body.error ? body.error : `request failed (HTTP ${response.status})`;
      const err = new Error(msg);
      err.status = response.status;
      throw err;
    }
    return body;
  }

  const postJSON = (url, data) => api(url, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(data) });

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function showError(box, message) {
    const node = typeof box === "string" ? $(box) : box;
    if (!node) return;
    node.textContent = message || "";
    node.hidden = !message;
  }

  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function num(v, digits = 2) {
    if (!isNum(v)) return "–";
    const abs = Math.abs(v);
    const d = abs >= 1000 ? Math.min(digits, 2) : abs >= 1 ? digits : Math.max(digits, 4);
    return v.toLocaleString("en-US", { minimumFractionDigits: 0, maximumFractionDigits: d });
  }
  /* decimals that keep about 6 significant digits at a series' level (data.display.price_digits) */
  function priceDigits(values) {
    const v = values.filter((x) => isNum(x) && x !== 0).map(Math.abs).sort((a, b) => a - b);
    if (!v.length) return 2;
    const median = v[Math.floor((v.length - 1) / 2)];
    return Math.min(12, Math.max(2, 5 - Math.floor(Math.log10(median))));
  }
  /* a price with `digits` decimals (default: its own level's), trailing zeros kept as the CLI
     prints them (1.23280, not 1.2328) */
  function price(v, digits) {
    if (!isNum(v)) return "–";
    const d = Number.isInteger(digits) ? digits : priceDigits([v]);
    return v.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
  }
  /* the one time format of every page: 2024-03-01 14:00:00 (UTC, 24-hour) */
  function nowUtc() { return new Date().toISOString().slice(0, 19).replace("T", " ") + " UTC"; }
  function pct(v, digits = 2) { return isNum(v) ? (v * 100).toFixed(digits) + "%" : "–"; }
  function signClass(v) { return isNum(v) ? (v > 0 ? "pos" : v < 0 ? "neg" : "") : ""; }

  /* columns: [{key, label, fmt?: (v,row)=>string|Node, num?: bool, cls?: (v,row)=>string}] */
  function table(rows, columns, options = {}) {
    if (!rows || !rows.length) return el("div", { class: "empty", text: options.empty || "nothing yet" });
    const head = el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : "" , text: c.label })));
    const body = rows.map((r) => {
      const tr = el("tr", { class: options.href ? "link" : "" },
        columns.map((c) => {
          const v = r[c.key];
          const shown = c.fmt ? c.fmt(v, r) : (v === null || v === undefined ? "–" : String(v));
          const cls = [c.num ? "num" : "", c.cls ? c.cls(v, r) : ""].join(" ").trim();
          return el("td", { class: cls }, shown);
        }));
      if (options.href) tr.addEventListener("click", () => { window.location.href = options.href(r); });
      return tr;
    });
    return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
  }

  function kv(node, pairs) {
    node.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v ?? "–")]));
  }

  function stat(label, value, sub, cls) {
    return el("div", { class: "stat" }, el("div", { class: "label", text: label }),
      el("div", { class: "value " + (cls || ""), text: value }), sub ? el("div", { class: "sub", text: sub }) : null);
  }

  const plotConfig = { responsive: true, displaylogo: false,
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d"] };

  function baseLayout(extra = {}) {
    return Object.assign({
      margin: { l: 60, r: 20, t: 10, b: 40 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff",
      font: { family: "system-ui, DejaVu Sans, sans-serif", size: 12, color: COLORS.ink },
      hovermode: "x unified", showlegend: true,
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      xaxis: { type: "date", gridcolor: "#eef1f5", rangeslider: { visible: false }, hoverformat: "%Y-%m-%d %H:%M" },
      yaxis: { gridcolor: "#eef1f5", zeroline: false },
    }, extra);
  }

  /* x-axis breaks for the closures in `timestamps` ("YYYY-MM-DD HH:MM:SS", UTC): a spacing longer
     than one bar (an FX weekend, a stock's night) takes no room instead of a blank stretch */
  function closureBreaks(timestamps, intervalMs) {
    const ms = timestamps.map((t) => Date.parse(String(t).replace(" ", "T") + "Z"));
    const step = intervalMs || Math.min(...ms.slice(1).map((t, i) => t - ms[i]).filter((d) => d > 0));
    if (!isFinite(step) || step <= 0) return [];
    const byLength = new Map();
    for (let i = 1; i < ms.length; i++) {
      const gap = ms[i] - ms[i - 1] - step;
      if (gap <= 0) continue;
      const start = new Date(ms[i - 1] + step).toISOString().slice(0, 19).replace("T", " ");
      if (!byLength.has(gap)) byLength.set(gap, []);
      byLength.get(gap).push(start);
    }
    return [...byLength].map(([dvalue, values]) => ({ values, dvalue }));
  }

  function candles(data, name, opts = {}) {
    return Object.assign({
      type: "candlestick", name, x: data.timestamps, open: data.open, high: data.high, low: data.low,
      close: data.close, increasing: { line: { color: COLORS.up } }, decreasing: { line: { color: COLORS.down } },
    }, opts);
  }

  function plot(node, traces, layout) {
    const target = typeof node === "string" ? $(node) : node;
    if (!target.classList.contains("js-plotly-plot")) target.replaceChildren();
    return Plotly.react(target, traces, layout, plotConfig);
  }

  return { COLORS, api, postJSON, $, el, showError, num, price, pct, signClass, table, kv, stat, baseLayout,
    candles, plot, isNum, nowUtc, priceDigits, closureBreaks };
})();
