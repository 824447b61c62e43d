/* Paper-trading monitor: refreshes itself every 10 seconds. */
"use strict";
(() => {
  const { $, el, api, table, pct, num, price, stat, showError, signClass, COLORS } = K;
  const params = new URLSearchParams(window.location.search);
  const REFRESH_MS = Math.max(1, parseFloat(params.get("refresh")) || 10) * 1000;
  let runId = params.get("run");
  let timer = null;

  async function loadRuns() {
    const { runs } = await api("/api/paper");
    $("paper-empty").hidden = runs.length > 0;
    if (!runs.length) {  // say so, rather than an empty dropdown
      $("run-select").replaceChildren(el("option", { value: "", text: "no paper-trading runs yet" }));
      $("run-select").disabled = true;
      $("paper-body").hidden = true;
      return null;
    }
    $("run-select").disabled = false;
    const current = $("run-select").value || runId;
    $("run-select").replaceChildren(...runs.map((r) => el("option", { value: r.id,
      text: `${r.name} · ${r.kind} · ${r.status} · ${r.started_at}` })));
    const pick = runs.find((r) => r.id === current) || runs.find((r) => r.status === "running") || runs[0];
    $("run-select").value = pick.id;
    return pick.id;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const id = await loadRuns();
      if (id) {
        runId = id;
        render(await api(`/api/paper/${id}`));
      }
      showError("paper-error", "");
      $("updated").textContent = `updated ${K.nowUtc()}`;
    } catch (err) {
      showError("paper-error", err.message);
    }
    if ($("auto").checked) timer = setTimeout(refresh, REFRESH_MS);
  }

  function render(d) {
    $("paper-body").hidden = false;
    const r = d.run, s = d.summary;
    $("run-badges").replaceChildren(el("span", { class: `badge ${r.status}`, text: r.status }), " ",
      el("span", { class: `badge ${r.live ? "live" : ""}`, text: r.live ? "LIVE orders" : r.kind }),
      r.exchange ? " " : null, r.exchange ? el("span", { class: "badge", text: r.exchange }) : null);
    const change = K.isNum(s.equity) && K.isNum(s.start_equity) ? s.equity / s.start_equity - 1 : null;
    $("summary").replaceChildren(
      stat("equity", num(s.equity, 2), s.as_of ? `as of ${s.as_of}` : "no snapshot yet"),
      stat("since start", pct(change), K.isNum(s.start_equity) ? `from ${num(s.start_equity, 2)}` : "", signClass(change)),
      stat("cash", num(s.cash, 2)), stat("in positions", num(s.position_value, 2)),
      stat("open errors", String(d.errors.length), d.errors.length ? "see below" : "all clear", d.errors.length ? "neg" : ""),
      ...(d.gate || []).map((g) => stat(`skill gate ${g.symbol || ""}`, g.state, `${g.message} (${g.ts})`,
        g.state === "open" ? "pos" : "neg")));
    $("errors-card").hidden = !d.errors.length;
    $("errors").replaceChildren(...d.errors.map((e) => el("div", { class: "error",
      text: `${e.ts} · ${e.symbol || "run"} · ${e.message}` })));
    $("positions").replaceChildren(table(d.pairs.map((p) => ({ pair: `${p.symbol} ${p.timeframe}`, ...p.position })), [
      { key: "pair", label: "pair" }, { key: "amount", label: "amount", num: true, fmt: (v) => num(v, 6) },
      { key: "entry_price", label: "entry", num: true, fmt: price },
      { key: "price", label: "last", num: true, fmt: price }, { key: "value", label: "value", num: true, fmt: (v) => num(v, 2) },
      { key: "unrealized_pnl", label: "unreal. PnL", num: true, fmt: (v) => num(v, 2), cls: signClass }],
      { empty: "no pairs configured" }));
    $("balances").replaceChildren(table(d.balances, [{ key: "currency", label: "currency" },
      { key: "free", label: "free", num: true, fmt: (v) => num(v, 6) }, { key: "used", label: "used", num: true, fmt: (v) => num(v, 6) },
      { key: "updated_at", label: "updated (UTC)" }], { empty: "no balances recorded yet" }));
    if (d.equity.timestamps.length) {
      K.plot("equity-chart", [{ type: "scatter", mode: "lines", name: "equity", x: d.equity.timestamps, y: d.equity.equity,
        line: { color: COLORS.accent, width: 2 } }, { type: "scatter", mode: "lines", name: "cash", x: d.equity.timestamps,
        y: d.equity.cash, line: { color: "#64748b", width: 1, dash: "dot" } }], K.baseLayout());
    } else {
      $("equity-chart").replaceChildren(el("div", { class: "empty", text: "no equity snapshots yet" }));
    }
    renderPairs(d.pairs);
    $("orders").replaceChildren(table(d.orders, [{ key: "created_at", label: "time (UTC)" }, { key: "symbol", label: "pair" },
      { key: "side", label: "side", cls: (v) => (v === "buy" ? "pos" : "neg") }, { key: "type", label: "type" },
      { key: "amount", label: "amount", num: true, fmt: (v) => num(v, 6) }, { key: "price", label: "price", num: true, fmt: price },
      { key: "status", label: "status" }, { key: "reason", label: "reason" }], { empty: "no orders yet" }));
    $("fills").replaceChildren(table(d.fills, [{ key: "ts", label: "time (UTC)" }, { key: "symbol", label: "pair" },
      { key: "side", label: "side", cls: (v) => (v === "buy" ? "pos" : "neg") },
      { key: "amount", label: "amount", num: true, fmt: (v) => num(v, 6) }, { key: "price", label: "price", num: true, fmt: price },
      { key: "fee", label: "fee", num: true, fmt: (v) => num(v, 4) }], { empty: "no fills yet" }));
    $("events").replaceChildren(table(d.events, [{ key: "ts", label: "time (UTC)" },
      { key: "level", label: "level", cls: (v) => (v === "error" ? "neg" : "") }, { key: "symbol", label: "pair" },
      { key: "message", label: "message" }], { empty: "no events yet" }));
  }

  function renderPairs(pairs) {
    const box = $("pairs");
    const cards = pairs.map((p, i) => {
      const f = p.forecast, s = p.signal;
      const chart = el("div", { class: "chart small", id: `pair-chart-${i}` });
      const rows = [];
      if (s) {
        rows.push(["signal bar", s.bar_time], ["target position", num(s.target_position, 2)]);
        if (s.details && s.details.reason) rows.push(["reason", s.details.reason]);
      }
      if (f) {
        rows.push(["forecast made at", f.window_end], ["expected return", pct(f.expected_return)],
          ["P(up) at horizon", pct(f.prob_up, 0)], ["horizon", `${f.horizon} bars`]);
      }
      const dl = el("dl", { class: "kv" });
      K.kv(dl, rows.length ? rows : [["status", "no signal yet"]]);
      return { card: el("div", { class: "card" }, el("h2", { text: `${p.symbol} · ${p.timeframe}` }), dl, chart), p, i };
    });
    box.replaceChildren(...(cards.length ? cards.map((c) => c.card) : [el("div", { class: "empty", text: "no pairs yet" })]));
    for (const { p, i } of cards) {
      const traces = [];
      if (p.candles) traces.push(K.candles(p.candles, "candles"));
      const f = p.forecast;
      if (f) {
        if (f.quantiles["0.05"] && f.quantiles["0.95"]) {
          traces.push({ type: "scatter", mode: "lines", x: f.timestamps, y: f.quantiles["0.95"], line: { width: 0 },
            showlegend: false, hoverinfo: "skip" });
          traces.push({ type: "scatter", mode: "lines", x: f.timestamps, y: f.quantiles["0.05"], fill: "tonexty",
            fillcolor: COLORS.band90, line: { width: 0 }, name: "5–95%", hoverinfo: "skip" });
        }
        traces.push({ type: "scatter", mode: "lines", x: f.timestamps, y: f.close, name: "forecast mean",
          line: { color: COLORS.accent, width: 2 } });
      }
      if (traces.length) K.plot(`pair-chart-${i}`, traces, K.baseLayout({ margin: { l: 50, r: 10, t: 10, b: 30 } }));
      else $(`pair-chart-${i}`).replaceChildren(el("div", { class: "empty", text: "no candles or forecast yet" }));
    }
  }

  $("run-select").addEventListener("change", () => { runId = $("run-select").value; refresh(); });
  $("auto").addEventListener("change", () => { if ($("auto").checked) refresh(); else clearTimeout(timer); });
  refresh();
})();
