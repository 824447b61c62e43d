/* One backtest run: metrics, equity and drawdown, candles with forecasts, trades. */
"use strict";
(() => {
  const { $, el, api, table, pct, num, price, kv, stat, showError, signClass, COLORS } = K;
  const runId = document.body.dataset.runId;
  const PCT = new Set(["total_return", "annual_return", "max_drawdown", "win_rate", "exposure"]);
  const LABELS = { total_return: "total return", annual_return: "annual return", sharpe: "Sharpe",
    period_sharpe: "period Sharpe", sortino: "Sortino", max_drawdown: "max drawdown", trades: "trades", win_rate: "win rate", fees: "fees",
    exposure: "exposure", calmar: "Calmar", profit_factor: "profit factor", expectancy: "expectancy / trade",
    avg_win: "average win", avg_loss: "average loss", avg_holding_hours: "average holding (hours)",
    longest_losing_streak: "longest losing streak" };
  const fmtMetric = (k, v) => (PCT.has(k) ? pct(v) : (k === "trades" || k === "longest_losing_streak") ? num(v, 0) : num(v, 2));

  async function load() {
    try {
      const d = await api(`/api/backtests/${runId}`);
      const r = d.run;
      $("run-title").textContent = `Backtest ${r.name}`;
      $("run-badges").replaceChildren(el("span", { class: `badge ${r.status}`, text: r.status }), " ",
        el("span", { class: "badge", text: `${r.symbol || "?"} ${r.timeframe || ""}` }));
      const m = Object.fromEntries(d.metrics.map((x) => [x.metric, x]));
      const get = (k, side) => (m[k] ? m[k][side] : null);
      $("headline").replaceChildren(
        stat("strategy return", pct(get("total_return", "strategy")), `buy & hold ${pct(get("total_return", "buy_and_hold"))}`,
          signClass(get("total_return", "strategy"))),
        stat("Sharpe", num(get("sharpe", "strategy"), 2), `buy & hold ${num(get("sharpe", "buy_and_hold"), 2)}`),
        stat("max drawdown", pct(get("max_drawdown", "strategy")), `buy & hold ${pct(get("max_drawdown", "buy_and_hold"))}`, "neg"),
        stat("trades", num(get("trades", "strategy"), 0), `win rate ${pct(get("win_rate", "strategy"))}`),
        stat("exposure", pct(get("exposure", "strategy")), `fees ${num(get("fees", "strategy"), 2)}`));
      const label = (x) => (LABELS[x.metric] || x.metric) + (x.annualised ? " *" : "");
      $("metrics-table").replaceChildren(table(d.metrics.map((x) => ({ ...x, label: label(x) })), [
        { key: "label", label: "metric" },
        { key: "strategy", label: "strategy", num: true, fmt: (v, row) => fmtMetric(row.metric, v) },
        { key: "buy_and_hold", label: "buy & hold", num: true, fmt: (v, row) => fmtMetric(row.metric, v) }]),
        d.short_span_note ? el("div", { class: "note", id: "short-span-note", text: d.short_span_note }) : "");
      const c = d.config || {};
      const risk = c.risk || {}, costs = c.costs || {}, dates = c.dates || {}, gate = c.gate;
      const off = (v) => (v == null ? "off" : pct(v, 2));
      kv($("config-kv"), [["run id", r.id], ["started (UTC)", r.started_at], ["finished (UTC)", r.finished_at],
        ["bars (UTC)", dates.first_bar ? `${dates.first_bar} .. ${dates.last_bar}` : null],
        ["start / end asked", `${dates.start || "–"} / ${dates.end || "–"}`],
        ["model", (c.model || {}).name], ["lookback / horizon", c.forecast ? `${c.forecast.lookback} / ${c.forecast.horizon}` : null],
        ["samples", c.forecast ? String(c.forecast.sample_count) : null],
        ["strategy", (c.strategy || {}).name],
        ["skill gate", gate ? `${gate.rule}, window ${gate.window}` : "off"],
        ["stop-loss / take-profit", `${off(risk.stop_loss)} / ${off(risk.take_profit)}`],
        ["cash", c.backtest ? num(c.backtest.cash, 2) : null],
        ["commission / slippage", `${pct(costs.commission, 3)} / ${pct(costs.slippage, 3)}`],
        ["bars", r.bars != null ? String(r.bars) : null]]);
      drawEquity(d);
      drawSkill(d.skill || { rows: [] });
      const digits = K.priceDigits(d.trades.flatMap((t) => [t.entry_price, t.exit_price]));
      $("trades").replaceChildren(table(d.trades, [
        { key: "entry_time", label: "entry (UTC)" }, { key: "exit_time", label: "exit (UTC)" },
        { key: "side", label: "side" }, { key: "size", label: "size", num: true, fmt: (v) => num(v, 4) },
        { key: "entry_price", label: "entry", num: true, fmt: (v) => price(v, digits) },
        { key: "exit_price", label: "exit", num: true, fmt: (v) => price(v, digits) },
        { key: "pnl", label: "PnL", num: true, fmt: (v) => num(v, 2), cls: signClass },
        { key: "pnl_pct", label: "PnL %", num: true, fmt: (v) => pct(v), cls: signClass },
        { key: "fees", label: "fees", num: true, fmt: (v) => num(v, 2) },
        { key: "exit_reason", label: "exit reason" }], { empty: "no closed trades" }));
    } catch (err) {
      showError("run-error", err.message);
    }
    loadOverlay();
  }

  function drawSkill(sk) {
    $("skill-verdict").textContent = `${sk.windows || 0} forecasts resolved (${sk.pending || 0} still open): ${sk.verdict || ""}`;
    const ci = (v, row) => (row.calls ? `${pct(row.hit_low, 0)}–${pct(row.hit_high, 0)}` : "");
    $("skill-table").replaceChildren(table(sk.rows, [
      { key: "step", label: "step", num: true }, { key: "forecaster", label: "forecaster" },
      { key: "mae", label: "MAE", num: true, fmt: (v) => num(v, 2) },
      { key: "crps", label: "CRPS", num: true, fmt: (v) => num(v, 2) },
      { key: "crps_skill_random_walk", label: "skill vs RW", num: true, fmt: (v) => num(v, 3), cls: signClass },
      { key: "crps_skill_random_walk_vol", label: "skill vs RW+vol", num: true, fmt: (v) => num(v, 3), cls: signClass },
      { key: "coverage_50", label: "cov 50%", num: true, fmt: (v) => pct(v, 1) },
      { key: "coverage_90", label: "cov 90%", num: true, fmt: (v) => pct(v, 1) },
      { key: "hit_rate", label: "hit rate", num: true, fmt: (v) => pct(v, 1) },
      { key: "hit_low", label: "95% CI", num: true, fmt: ci },
      { key: "rank_corr", label: "rank corr", num: true, fmt: (v) => num(v, 3) }], { empty: "no resolved forecasts" }));
  }

  function drawEquity(d) {
    const e = d.equity;
    const traces = [{ type: "scatter", mode: "lines", name: "strategy equity", x: e.timestamps, y: e.equity,
      line: { color: COLORS.accent, width: 2 } }];
    if (d.hold && d.hold.equity.length) {
      traces.push({ type: "scatter", mode: "lines", name: "buy & hold", x: d.hold.timestamps, y: d.hold.equity,
        line: { color: "#64748b", width: 1.5, dash: "dot" } });
    }
    const breaks = K.closureBreaks(e.timestamps);  // market closures take no room, as in the workbench
    const equityLayout = K.baseLayout();
    equityLayout.xaxis.rangebreaks = breaks;
    K.plot("equity-chart", traces, equityLayout);
    const drawdownLayout = K.baseLayout({ showlegend: false, yaxis: { tickformat: ".2~%", gridcolor: "#eef1f5" } });
    drawdownLayout.xaxis.rangebreaks = breaks;
    K.plot("drawdown-chart", [{ type: "scatter", mode: "lines", name: "drawdown", x: e.timestamps, y: e.drawdown,
      fill: "tozeroy", line: { color: COLORS.down, width: 1 }, fillcolor: "rgba(220,38,38,0.18)" }], drawdownLayout);
  }

  let baseTraces = [];
  let baseLayout = null;

  async function loadOverlay() {
    try {
      const o = await api(`/api/backtests/${runId}/overlay`);
      $("overlay-notes").replaceChildren(...o.notes.map((n) => el("div", { class: "note", text: n })));
      const f = o.forecasts;
      const traces = [];
      if (o.candles) traces.push(K.candles(o.candles, "candles"));
      if (f.ids.length) {
        traces.push({ type: "scatter", mode: "lines", x: f.ahead.timestamps, y: f.ahead.q95, line: { width: 0 },
          hoverinfo: "skip", showlegend: false, legendgroup: "band" });
        traces.push({ type: "scatter", mode: "lines", x: f.ahead.timestamps, y: f.ahead.q05, fill: "tonexty",
          fillcolor: COLORS.band90, line: { width: 0 }, name: `5–95% at ${f.horizon} bars ahead`, legendgroup: "band",
          hoverinfo: "skip" });
        traces.push({ type: "scatter", mode: "lines+markers", name: `forecast ${f.horizon} bars ahead (mean close)`,
          x: f.ahead.timestamps, y: f.ahead.close, customdata: f.ids, marker: { size: 3 },
          line: { color: COLORS.accent, width: 1.5 } });
        traces.push({ type: "scatter", mode: "lines+markers", name: "forecast next bar (mean close)",
          x: f.next.timestamps, y: f.next.close, customdata: f.ids, marker: { size: 3 },
          line: { color: "#f59e0b", width: 1 }, visible: "legendonly" });
      }
      const fl = o.fills;
      for (const side of ["buy", "sell"]) {
        const idx = fl.side.map((s, i) => (s === side ? i : -1)).filter((i) => i >= 0);
        if (!idx.length) continue;
        traces.push({ type: "scatter", mode: "markers", name: side === "buy" ? "buys" : "sells",
          x: idx.map((i) => fl.timestamps[i]), y: idx.map((i) => fl.price[i]),
          marker: { symbol: side === "buy" ? "triangle-up" : "triangle-down", size: 11,
            color: side === "buy" ? COLORS.up : COLORS.down, line: { color: "#fff", width: 1 } } });
      }
      if (!traces.length) {
        $("overlay-chart").replaceChildren(el("div", { class: "empty", text: "no candles or forecasts stored for this run" }));
        return;
      }
      baseTraces = traces;
      baseLayout = K.baseLayout({ hovermode: "closest" });
      baseLayout.xaxis.rangebreaks = K.closureBreaks(o.candles ? o.candles.timestamps : f.next.timestamps,
        o.interval_seconds * 1000);
      await K.plot("overlay-chart", traces, baseLayout);
      $("overlay-chart").on("plotly_click", (ev) => {
        const pt = ev.points && ev.points[0];
        if (pt && pt.customdata !== undefined) inspect(pt.customdata);
      });
    } catch (err) {
      $("overlay-notes").replaceChildren(el("div", { class: "error", text: err.message }));
    }
  }

  async function inspect(id) {
    try {
      const f = await api(`/api/backtests/${runId}/forecasts/${id}`);
      const q = f.quantiles;
      const extra = [];
      if (q["0.05"] && q["0.95"]) {
        extra.push({ type: "scatter", mode: "lines", x: f.timestamps, y: q["0.95"], line: { width: 0 }, showlegend: false,
          hoverinfo: "skip" });
        extra.push({ type: "scatter", mode: "lines", x: f.timestamps, y: q["0.05"], fill: "tonexty",
          fillcolor: "rgba(245,158,11,0.22)", line: { width: 0 }, name: "selected: 5–95%", hoverinfo: "skip" });
      }
      extra.push({ type: "scatter", mode: "lines+markers", x: f.timestamps, y: f.close, name:
        `selected forecast @ ${f.window_end} (E[r] ${pct(f.expected_return)}, P(up) ${pct(f.prob_up, 0)})`,
        line: { color: "#f59e0b", width: 2.5 }, marker: { size: 4 } });
      await K.plot("overlay-chart", [...baseTraces, ...extra], baseLayout);
    } catch (err) {
      $("overlay-notes").replaceChildren(el("div", { class: "error", text: err.message }));
    }
  }

  load();
})();
