/* Sweep list and one sweep: trials table, objective against each parameter, best equity curves. */
"use strict";
(async () => {
  const { $, api, table, pct, num, showError, el } = K;
  const name = document.body.dataset.sweep;
  if (!name) {
    try {
      const { sweeps } = await api("/api/sweeps");
      $("sweeps").replaceChildren(table(sweeps, [
        { key: "name", label: "sweep", fmt: (v) => el("a", { href: `/sweeps/${encodeURIComponent(v)}`, text: v }) },
        { key: "started", label: "started (UTC)" },
        { key: "symbols", label: "symbols" },
        { key: "sampler", label: "sampler" },
        { key: "objective", label: "objective" },
        { key: "trials", label: "trials", num: true },
        { key: "best_oos", label: "best: out-of-sample", num: true, fmt: (v) => num(v, 3) },
        { key: "best", label: "best: in-sample", num: true, fmt: (v) => num(v, 3) },
      ], { href: (r) => `/sweeps/${encodeURIComponent(r.name)}`,
        empty: "No sweeps yet: run `kronos-trader sweep` and they appear here." }));
    } catch (err) {
      $("sweeps").replaceChildren();
      showError("sweeps-error", err.message);
    }
    return;
  }
  try {
    const s = await api(`/api/sweeps/${encodeURIComponent(name)}`);
    const objective = s.spec.objective || "objective";
    const walk = s.spec.walk_forward != null;
    const done = s.trials.filter((t) => t.state === "complete");
    const plots = $("param-plots");
    for (const p of s.params) {
      const div = el("div", { class: "plot", id: `param-${p}` });
      plots.append(div);
      const traces = [{ x: done.map((t) => t.params[p]), y: done.map((t) => t.value), mode: "markers",
        type: "scatter", name: walk ? "in-sample" : objective, text: done.map((t) => `#${t.number}`) }];
      if (walk) traces.push({ x: done.map((t) => t.params[p]), y: done.map((t) => t.oos), mode: "markers",
        type: "scatter", name: "out-of-sample", text: done.map((t) => `#${t.number}`) });
      // plotly.js 3+ draws only { text } titles (plain strings are dropped silently)
      Plotly.newPlot(div, traces, { title: { text: `${objective} vs ${p}` }, height: 300, margin: { t: 40 },
        xaxis: { title: { text: p } }, yaxis: { title: { text: objective } } },
        { displaylogo: false, responsive: true });
    }
    Plotly.newPlot($("equity-plot"), s.curves.map((c) => ({ x: c.x, y: c.y, type: "scatter", mode: "lines",
      name: `#${c.number} (${c.span})` })), { height: 360, margin: { t: 20 },
      xaxis: { title: { text: "time (UTC)" } }, yaxis: { title: { text: "equity" } } },
      { displaylogo: false, responsive: true });
    const columns = [];
    if (walk) columns.push({ key: "oos", label: `out-of-sample ${objective}`, num: true, fmt: (v) => num(v, 3) });
    columns.push({ key: "number", label: "#", num: true },
      { key: "value", label: `${walk ? "in-sample " : ""}${objective}`, num: true, fmt: (v) => num(v, 3) });
    if (s.trials.some((t) => t.screen != null)) {  // the screening pass's score beside Backtrader's
      columns.push({ key: "screen", label: `screen ${objective}`, num: true, fmt: (v) => num(v, 3) });
    }
    for (const p of s.params) columns.push({ key: p, label: p.replace("strategy.params.", ""), num: true,
      fmt: (v, r) => String(r.params[p] ?? "–") });
    const span = walk ? " (out-of-sample)" : "";  // a walk-forward trial's figures are its test span's
    columns.push({ key: "total_return", label: `return${span}`, num: true, fmt: (v) => pct(v) },
      { key: "max_drawdown", label: `max DD${span}`, num: true, fmt: (v) => pct(v) },
      { key: "trades", label: `trades${span}`, num: true },
      { key: "state", label: "state", fmt: (v, r) => (r.error ? `failed: ${r.error}` : v) });
    $("trials").replaceChildren(table(s.trials, columns, { empty: "No trials yet." }));
  } catch (err) {
    $("trials").replaceChildren();
    showError("sweep-error", err.message);
  }
})();
