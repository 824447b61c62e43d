/* Backtest list. */
"use strict";
(async () => {
  const { $, api, table, pct, num, showError, signClass, el } = K;
  try {
    const { runs } = await api("/api/backtests");
    $("runs").replaceChildren(table(runs, [
      { key: "name", label: "run", fmt: (v, r) => el("a", { href: `/backtests/${r.id}`, text: v || r.id.slice(0, 8) }) },
      { key: "started_at", label: "started (UTC)" },
      { key: "status", label: "status", fmt: (v) => el("span", { class: `badge ${v}`, text: v }) },
      { key: "symbol", label: "pair", fmt: (v, r) => [v, r.timeframe].filter(Boolean).join(" ") || "–" },
      { key: "bars", label: "bars", num: true },
      { key: "model", label: "model", fmt: (v) => (v ? String(v).split("/").pop() : "–") },
      { key: "total_return", label: "return", num: true, fmt: (v) => pct(v), cls: signClass },
      { key: "hold_return", label: "buy & hold", num: true, fmt: (v) => pct(v), cls: signClass },
      { key: "sharpe", label: "Sharpe", num: true, fmt: (v) => num(v, 2) },
      { key: "max_drawdown", label: "max DD", num: true, fmt: (v) => pct(v), cls: signClass },
      { key: "trades", label: "trades", num: true },
    ], { href: (r) => `/backtests/${r.id}`,
      empty: "No backtests yet: run `kronos-trader backtest` and they appear here." }));
  } catch (err) {
    $("runs").replaceChildren();
    showError("runs-error", err.message);
  }
})();
