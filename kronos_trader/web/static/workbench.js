/* Forecast workbench: load data, pick model and window, run a forecast job, chart and score it. */
"use strict";
(() => {
  const { $, el, api, postJSON, showError, num, price, pct, table, kv, stat, COLORS } = K;
  const maxUploadMb = parseFloat(document.body.dataset.maxUploadMb || "20");
  const state = { dataset: null, models: [], defaults: {}, job: null, result: null, previewTimer: null,
    preview: null };

  /* ---------- setup ---------- */
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll(".tabs button").forEach((x) => x.classList.toggle("active", x === b));
    document.querySelectorAll("[data-pane]").forEach((p) => { p.hidden = p.dataset.pane !== b.dataset.tab; });
    if (b.dataset.tab === "db") loadStoredList();
  }));

  async function init() {
    try {
      const info = await api("/api/models");
      state.models = info.models;
      state.defaults = info.defaults;
      $("model").replaceChildren(...info.models.map((m) => el("option", { value: m.id, text: m.label })));
      $("device").replaceChildren(...info.devices.map((d) => el("option", { value: d, text: d })));
      $("device").value = info.devices.includes(info.defaults.device) ? info.defaults.device : "auto";
      for (const k of ["temperature", "top_p", "top_k", "sample_count", "seed"]) $(k).value = info.defaults[k];
      applyModel(true);
    } catch (err) {
      showError("run-error", "could not load the model list: " + err.message);
    }
  }

  function currentModel() { return state.models.find((m) => m.id === $("model").value); }

  function applyModel(resetDefaults) {
    const m = currentModel();
    if (!m) return;
    const ctx = m.max_context;
    $("model-hint").textContent = [`context ${ctx} bars`, m.note].filter(Boolean).join(" · ");
    $("lookback").max = ctx;
    $("horizon").max = ctx;
    if (resetDefaults || +$("lookback").value > ctx) $("lookback").value = Math.min(state.defaults.lookback || 256, ctx);
    if (resetDefaults || +$("horizon").value > ctx) $("horizon").value = Math.min(state.defaults.horizon || 24, ctx);
    $("context-hint").textContent = `Lookback and horizon are each capped at the model's context (${ctx}).`;
    fitWindow(false);
  }

  $("model").addEventListener("change", () => applyModel(false));
  // until the user picks a start, the window stays the latest one (a forecast of what comes next)
  for (const id of ["lookback", "horizon"]) {
    $(id).addEventListener("change", () => { state.result = null; fitWindow(!state.startPicked); });
  }

  /* ---------- data ---------- */
  $("file-input").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    showError("data-error", "");
    if (file.size > maxUploadMb * 1e6) {
      showError("data-error", `${file.name}: file is larger than the ${maxUploadMb} MB upload limit`);
      return;
    }
    await loadDataset(() => api("/api/datasets/upload", { method: "POST", body: file,
      headers: { "X-Filename": file.name, "Content-Type": "application/octet-stream" } }), `uploading ${file.name}…`);
    ev.target.value = "";  // choosing the same file again (after fixing it) uploads it again
  });
  $("load-sample").addEventListener("click", () => loadDataset(() => postJSON("/api/datasets/sample", {}),
    "loading the sample…"));
  $("load-stored").addEventListener("click", () => {
    const v = $("stored-series").value;
    if (!v) return;
    loadDataset(() => postJSON("/api/datasets/stored", JSON.parse(v)), "loading candles…");
  });

  let storedLoaded = false;
  async function loadStoredList() {
    if (storedLoaded) return;
    try {
      const { series } = await api("/api/datasets/stored");
      storedLoaded = true;
      if (!series.length) {
        $("stored-series").replaceChildren(el("option", { value: "", text: "no candles stored yet" }));
        $("stored-hint").textContent = "Store candles with `kronos-trader fetch` first.";
        return;
      }
      $("stored-series").replaceChildren(...series.map((s) => el("option", {
        value: JSON.stringify({ source: s.source, symbol: s.symbol, timeframe: s.timeframe }),
        text: `${s.symbol} ${s.timeframe} · ${s.source} · ${s.rows} bars` })));
      $("stored-hint").textContent = "";
    } catch (err) {
      $("stored-series").replaceChildren(el("option", { value: "", text: "database unavailable" }));
      $("stored-hint").textContent = err.message;
    }
  }

  async function loadDataset(request, busyText) {
    showError("data-error", "");
    $("chart-title").textContent = busyText;
    try {
      const info = await request();
      onDataset(info);
    } catch (err) {
      showError("data-error", err.message);
      $("chart-title").textContent = state.dataset ? state.dataset.name : "Load data to begin";
    }
  }

  function onDataset(info) {
    state.dataset = info;
    state.result = null;
    setDownloads(null);
    $("metrics").hidden = true;
    $("steps-card").hidden = true;
    $("dataset-info").hidden = false;
    kv($("dataset-kv"), [["name", info.name], ["rows", info.rows.toLocaleString("en-US")],
      ["columns", info.columns.join(", ")], ["from", info.start], ["to", info.end],
      ["bar interval", info.interval],
      ["gaps", (info.gaps ? `${info.gaps} (${info.missing_bars} missing bars)` : "none") +
        (info.closures ? `; ${info.closures} market closures (not missing)` : "")]]);
    $("dataset-notes").replaceChildren(...info.notes.map((n) => el("div", { class: "note", text: n })));
    const cols = ["timestamp", "open", "high", "low", "close", "volume"].map((k) => ({ key: k, label: k,
      num: k !== "timestamp", fmt: k === "timestamp" ? undefined : (v) => price(v) }));
    $("dataset-preview").replaceChildren(table([...info.preview.head, { timestamp: "…" }, ...info.preview.tail], cols));
    $("run").disabled = false;
    state.startPicked = false;
    fitWindow(true);
  }

  /* ---------- window ---------- */
  function fitWindow(resetStart) {
    const d = state.dataset;
    if (!d) return;
    const m = currentModel();
    const ctx = m ? m.max_context : 512;
    let lookback = Math.max(8, Math.min(+$("lookback").value || 8, ctx, d.rows));
    let horizon = Math.max(1, Math.min(+$("horizon").value || 1, ctx));
    $("lookback").value = lookback;
    $("horizon").value = horizon;
    const slider = $("start-slider");
    const maxStart = Math.max(0, d.rows - lookback);
    slider.max = maxStart;
    slider.disabled = false;
    $("start-date").disabled = false;
    if (resetStart) slider.value = maxStart;  // the latest window, as the CLI forecasts; move it back to score
    if (+slider.value > maxStart) slider.value = maxStart;
    schedulePreview();
  }

  $("start-slider").addEventListener("input", () => { state.result = null; state.startPicked = true; schedulePreview(); });
  $("start-date").addEventListener("change", async () => {
    if (!state.dataset || !$("start-date").value) return;
    try {
      const r = await api(`/api/datasets/${state.dataset.id}/locate?time=${encodeURIComponent($("start-date").value)}`);
      $("start-slider").value = Math.min(r.index, +$("start-slider").max);
      state.result = null;
      state.startPicked = true;
      schedulePreview();
    } catch (err) { showError("run-error", err.message); }
  });

  function schedulePreview() {
    clearTimeout(state.previewTimer);
    state.previewTimer = setTimeout(preview, 150);
  }

  async function preview() {
    const d = state.dataset;
    if (!d) return;
    const start = +$("start-slider").value;
    const lookback = +$("lookback").value, horizon = +$("horizon").value;
    try {
      const data = await api(`/api/datasets/${d.id}/candles?start=${start}&count=${Math.min(lookback + horizon, 5000)}`);
      state.preview = data;
      const n = data.timestamps.length;
      const histEnd = Math.min(lookback, n);
      const after = n - histEnd;
      $("start-date").value = data.timestamps[0].slice(0, 16).replace(" ", "T");
      $("window-hint").textContent = `Bars ${start + 1}–${start + histEnd} (${data.timestamps[0]} → ` +
        `${data.timestamps[histEnd - 1]}); forecasting ${horizon} bars. ` +
        (after ? `${after} actual bar${after > 1 ? "s" : ""} follow for scoring.` : "No actual bars follow (pure forecast).");
      if (!state.result) drawPreview(data, histEnd);
    } catch (err) { showError("run-error", err.message); }
  }

  function slice(data, a, b) {
    const out = {};
    for (const [k, v] of Object.entries(data)) if (Array.isArray(v)) out[k] = v.slice(a, b);
    return out;
  }

  function drawPreview(data, histEnd) {
    $("chart-title").textContent = `${state.dataset.name} · window preview`;
    const traces = [K.candles(slice(data, 0, histEnd), "window")];
    if (data.timestamps.length > histEnd) {
      traces.push(K.candles(slice(data, histEnd), "after the window", {
        increasing: { line: { color: COLORS.muted } }, decreasing: { line: { color: "#64748b" } } }));
    }
    const layout = K.baseLayout({ shapes: histEnd < data.timestamps.length ? [vline(data.timestamps[histEnd])] : [] });
    layout.xaxis.rangebreaks = K.closureBreaks(data.timestamps, state.dataset.interval_seconds * 1000);
    K.plot("chart", traces, layout);
  }

  function vline(x) {
    return { type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1,
      line: { color: "#64748b", width: 1, dash: "dot" } };
  }

  /* ---------- forecast job ---------- */
  $("run").addEventListener("click", runForecast);

  async function runForecast() {
    if (!state.dataset) return;
    showError("run-error", "");
    const body = { dataset_id: state.dataset.id, model: $("model").value, device: $("device").value,
      lookback: +$("lookback").value, horizon: +$("horizon").value, temperature: +$("temperature").value,
      top_p: +$("top_p").value, top_k: +$("top_k").value, sample_count: +$("sample_count").value,
      seed: +$("seed").value, start: +$("start-slider").value };
    $("run").disabled = true;
    setProgress(0, "submitting…");
    try {
      const job = await postJSON("/api/forecasts", body);
      state.job = job.id;
      await poll(job.id);
    } catch (err) {
      $("job").hidden = true;
      showError("run-error", err.message);
    } finally {
      $("run").disabled = false;
    }
  }

  function setProgress(fraction, text) {
    $("job").hidden = false;
    $("job-bar").style.width = `${Math.round(fraction * 100)}%`;
    $("job-text").textContent = text;
  }

  async function poll(id) {
    for (;;) {
      const job = await api(`/api/jobs/${id}`);
      const label = job.status === "queued" ? "waiting for the previous forecast…" :
        `${job.phase}${job.phase === "sampling" ? ` ${Math.round(job.progress * 100)}%` : ""} · ${job.elapsed.toFixed(1)} s`;
      setProgress(job.status === "done" ? 1 : job.phase === "sampling" ? 0.1 + 0.85 * job.progress : 0.05, label);
      if (job.status === "failed") throw new Error(job.error);
      if (job.status === "done") {
        const result = await api(`/api/jobs/${id}/result`);
        setProgress(1, `done in ${job.elapsed.toFixed(1)} s`);
        showResult(id, result);
        return;
      }
      await new Promise((r) => setTimeout(r, 400));
    }
  }

  function setDownloads(id) {
    for (const [node, ext] of [[$("dl-json"), "json"], [$("dl-csv"), "csv"]]) {
      node.classList.toggle("disabled", !id);
      node.href = id ? `/api/jobs/${id}/result.${ext}` : "#";
    }
  }

  function showResult(id, result) {
    state.result = result;
    setDownloads(id);
    drawResult(result);
    drawMetrics(result);
    drawSteps(result);
  }

  function drawResult(r) {
    const m = r.meta, f = r.forecast, q = f.quantiles;
    $("chart-title").textContent = `${m.dataset} · ${m.model} · ${m.horizon} bars after ${m.window_end_time}` +
      ((m.warnings || []).length ? ` · warning: ${m.warnings.join("; ")}` : "");
    const x = f.timestamps;
    const band = (lo, hi, name, color) => [
      { type: "scatter", mode: "lines", x, y: q[hi].close, line: { width: 0 }, hoverinfo: "skip",
        showlegend: false, legendgroup: name },
      { type: "scatter", mode: "lines", x, y: q[lo].close, fill: "tonexty", fillcolor: color, line: { width: 0 },
        name, legendgroup: name, hoverinfo: "skip" }];
    const traces = [K.candles(r.history, "history")];
    traces.push(...band("0.05", "0.95", "5–95% band", COLORS.band90));
    traces.push(...band("0.25", "0.75", "25–75% band", COLORS.band50));
    if (r.actual.timestamps.length) {
      traces.push(K.candles(r.actual, "actual", { increasing: { line: { color: "#15803d" }, fillcolor: "rgba(0,0,0,0)" },
        decreasing: { line: { color: "#b91c1c" }, fillcolor: "rgba(0,0,0,0)" } }));
    }
    traces.push({ type: "scatter", mode: "lines", name: "forecast mean (close)", x, y: f.mean.close,
      line: { color: COLORS.accent, width: 2 } });
    traces.push({ type: "bar", name: "P(close > last close)", x, y: f.p_up, yaxis: "y2",
      marker: { color: f.p_up.map((p) => (p > 0.5 ? "rgba(22,163,74,0.6)" : p < 0.5 ? "rgba(220,38,38,0.6)"
        : "rgba(100,116,139,0.6)")) },
      hovertemplate: "%{y:.0%}<extra>P(up)</extra>" });
    const layout = K.baseLayout({
      yaxis: { domain: [0.26, 1], gridcolor: "#eef1f5", title: { text: "price" } },
      yaxis2: { domain: [0, 0.2], range: [0, 1], tickformat: ".0%", gridcolor: "#eef1f5", title: { text: "P(up)" } },
      shapes: [vline(x[0])],
    });
    const shown = [...new Set([...r.history.timestamps, ...x, ...r.actual.timestamps])].sort();
    layout.xaxis.rangebreaks = K.closureBreaks(shown, state.dataset.interval_seconds * 1000);
    K.plot("chart", traces, layout);
  }

  function drawMetrics(r) {
    const m = r.metrics, f = r.forecast, meta = r.meta;
    const last = f.mean.close[f.mean.close.length - 1];
    const ret = last / meta.last_close - 1;
    const cards = [stat("expected return", pct(ret), `mean close at step ${meta.horizon}`, K.signClass(ret)),
      stat("P(up) at horizon", pct(f.p_up[f.p_up.length - 1], 0), `${meta.sample_count} sample paths`)];
    if (m.steps) {
      cards.push(stat("MAE", price(m.mae), `close, ${m.steps} step${m.steps > 1 ? "s" : ""}`),
        stat("RMSE", price(m.rmse), `MAPE ${pct(m.mape)}`),
        stat("direction hit rate", pct(m.direction_hit_rate, 0), "vs last close"),
        stat("5–95% band coverage", pct(m.coverage_90, 0), "ideal ≈ 90%"),
        stat("25–75% band coverage", pct(m.coverage_50, 0), "ideal ≈ 50%"));
    } else {
      cards.push(stat("error metrics", "–", "no actual bars after this window"));
    }
    $("metrics").replaceChildren(...cards);
    $("metrics").hidden = false;
  }

  function drawSteps(r) {
    const f = r.forecast, q = f.quantiles, a = r.actual;
    const rows = f.timestamps.map((t, i) => ({ step: i + 1, time: t, mean: f.mean.close[i], q05: q["0.05"].close[i],
      q25: q["0.25"].close[i], q75: q["0.75"].close[i], q95: q["0.95"].close[i], p_up: f.p_up[i],
      actual: i < a.close.length ? a.close[i] : null,
      error: i < a.close.length ? f.mean.close[i] - a.close[i] : null }));
    const p = (v) => price(v);
    $("steps-table").replaceChildren(table(rows, [{ key: "step", label: "step", num: true }, { key: "time", label: "time" },
      { key: "mean", label: "mean", num: true, fmt: p }, { key: "q05", label: "5%", num: true, fmt: p },
      { key: "q25", label: "25%", num: true, fmt: p }, { key: "q75", label: "75%", num: true, fmt: p },
      { key: "q95", label: "95%", num: true, fmt: p }, { key: "p_up", label: "P(up)", num: true, fmt: (v) => pct(v, 0) },
      { key: "actual", label: "actual", num: true, fmt: p },
      { key: "error", label: "error", num: true, fmt: p, cls: K.signClass }]));
    $("steps-card").hidden = false;
  }

  init();
})();
