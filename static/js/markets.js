// The Markets page: live watchlist, chart with indicators, symbol search.
// Server-rendered first (the table has the quotes of the moment); this module keeps it live over
// /ws/market/ and draws the chart from the REST API. Configuration comes from the page's
// json_script (#markets-config); no inline script (strict CSP).

import { createPriceChart, toTime } from "./chart.js";
import { connectMarket, showLiveState } from "./market_ws.js";

const config = JSON.parse(document.getElementById("markets-config").textContent);
const $ = (selector, root = document) => root.querySelector(selector);

// History loaded per timeframe (kept under the API's resampling cap of 500,000 1m bars).
const LOOKBACK_DAYS = { "1m": 5, "5m": 15, "15m": 45, "1h": 120, "1d": 300 };
const INDICATOR_REFRESH_MS = 15000;
const STALE_CHECK_MS = 5000;
const FLASH_MS = 700;
const OVERLAY_GROUPS = new Set(["overlap"]);
const DEFAULT_INDICATORS = [["SMA", 20], ["EMA", 50]];

const state = {
  symbol: config.chart?.symbol ?? null,
  timeframe: config.timeframe,
  catalog: new Map(),
  active: new Map(), // id -> {name, params, overlay, label}
  loadSeq: 0,
  lastIndicatorLoad: 0,
  indicatorTimer: null,
  clockOffset: 0, // server epoch s - client epoch s, from the messages' "at"
  live: false,
};

// --- formatting (the same rules as apps/marketdata/views/markets.py) ---------------------------

const fmt = (digits) => new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const FMT2 = fmt(2);
const FMT4 = fmt(4);
export function priceText(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  return (Math.abs(v) >= 1 ? FMT2 : FMT4).format(v);
}
function changeText(v, pct = false, price = null) {
  // Percent with 2 decimals; in price terms with the price's decimals (as views/markets.py).
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  const sign = v > 0 ? "+" : v < 0 ? "-" : "+";
  if (pct) return `${sign}${FMT2.format(Math.abs(v))}%`;
  const size = Number.isFinite(price) ? Math.abs(price) : Math.abs(v);
  return `${sign}${(size >= 1 || v === 0 ? FMT2 : FMT4).format(Math.abs(v))}`;
}

// --- the watchlist ------------------------------------------------------------------------------

const rows = () => [...document.querySelectorAll("#watchlist-table tr.wl-row")];
const rowFor = (symbol) => document.querySelector(`#watchlist-table tr.wl-row[data-symbol="${CSS.escape(symbol)}"]`);
const watchlistSymbols = () => rows().map((r) => r.dataset.symbol);

function setStale(row, stale) {
  row.classList.toggle("stale", stale);
  $(".stale-badge", row).hidden = !stale;
}

function flash(row, cls) {
  row.classList.remove("flash-up", "flash-down");
  void row.offsetWidth; // restart the animation
  row.classList.add(cls);
  window.setTimeout(() => row.classList.remove(cls), FLASH_MS);
}

function applyQuote(symbol, q) {
  const row = rowFor(symbol);
  if (row) {
    const before = Number.parseFloat(row.dataset.last ?? "NaN");
    const prev = Number.parseFloat(row.dataset.prevClose);
    const change = Number.isFinite(prev) ? q.l - prev : null;
    $(".c-last", row).textContent = priceText(q.l);
    $(".c-bid", row).textContent = priceText(q.b);
    $(".c-ask", row).textContent = priceText(q.a);
    $(".c-chg", row).textContent = changeText(change, false, q.l);
    $(".c-pct", row).textContent = changeText(change === null || !prev ? null : (100 * change) / prev, true);
    row.classList.toggle("up", change > 0);
    row.classList.toggle("down", change < 0);
    row.classList.remove("noquote");
    row.dataset.last = String(q.l);
    row.dataset.quoteTs = String(q.t);
    setStale(row, Boolean(q.stale) || !state.live);
    if (Number.isFinite(before) && before !== q.l) flash(row, q.l > before ? "flash-up" : "flash-down");
  }
  if (symbol === state.symbol) {
    const last = $("#chart-last");
    last.textContent = priceText(q.l);
    last.classList.toggle("stale", Boolean(q.stale));
  }
}

function quoteEpoch(raw) {
  if (!raw) return null;
  const n = Number(raw);
  return Number.isFinite(n) ? n : Date.parse(raw) / 1000;
}

// A quote the server sent as live turns stale here when nothing newer arrives in time (the feed
// stopped) or the stream is down: never show a stale price as live.
function checkStaleness() {
  const now = Date.now() / 1000 + state.clockOffset;
  for (const row of rows()) {
    const ts = quoteEpoch(row.dataset.quoteTs);
    if (ts === null) continue;
    if (!state.live || now - ts > config.maxQuoteAge) setStale(row, true);
  }
}

function initRows() {
  for (const row of rows()) {
    const last = Number.parseFloat($(".c-last", row).textContent.replaceAll(",", ""));
    if (Number.isFinite(last)) row.dataset.last = String(last);
  }
}

// --- the chart ----------------------------------------------------------------------------------

const chartBox = $("#chart");
const chart = chartBox ? createPriceChart(chartBox) : null;
const status = (text) => {
  $("#chart-status").textContent = text;
};

function range() {
  const end = new Date(Date.now() + 60_000 * 60 * 24); // exclusive; includes today's forming bars
  const start = new Date(end.getTime() - LOOKBACK_DAYS[state.timeframe] * 86_400_000);
  return { start: start.toISOString(), end: end.toISOString() };
}

async function getJSON(url, params) {
  const query = new URLSearchParams(params);
  const response = await fetch(`${url}?${query}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const fields = body?.error?.fields ?? {};
    const detail = Object.values(fields).flat()[0] || body?.error?.message || response.statusText;
    throw new Error(detail);
  }
  return body;
}

async function loadChart() {
  if (!chart || !state.symbol) {
    status(state.symbol ? "" : "Choose a symbol to chart.");
    return;
  }
  const seq = ++state.loadSeq;
  status("Loading…");
  chartBox.dataset.loaded = "false";
  try {
    const body = await getJSON(config.urls.bars, { symbol: state.symbol, timeframe: state.timeframe, ...range() });
    if (seq !== state.loadSeq) return; // a newer symbol/timeframe was chosen meanwhile
    chart.setBars(body.bars.map((b) => ({ time: toTime(b.ts), open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume })));
    status(body.bars.length ? "" : `No ${state.timeframe} bars for ${state.symbol} in the last ${LOOKBACK_DAYS[state.timeframe]} days.`);
    chartBox.dataset.loaded = "true";
    chartBox.dataset.bars = String(body.bars.length);
    await loadIndicators(seq);
    if (seq === state.loadSeq) chart.fit();
  } catch (error) {
    if (seq === state.loadSeq) status(`Could not load the chart: ${error.message}`);
  }
}

function indicatorParams(entry) {
  return { symbol: state.symbol, timeframe: state.timeframe, name: entry.name, ...entry.params, ...range() };
}

async function loadIndicator(id, entry, seq) {
  try {
    const result = await getJSON(config.urls.indicators, indicatorParams(entry));
    if (seq !== state.loadSeq || !state.active.has(id)) return;
    chart.setIndicator(id, { overlay: entry.overlay, result, label: entry.label });
  } catch (error) {
    status(`${entry.label}: ${error.message}`);
  }
}

async function loadIndicators(seq = state.loadSeq) {
  state.lastIndicatorLoad = Date.now();
  await Promise.all([...state.active].map(([id, entry]) => loadIndicator(id, entry, seq)));
  chartBox.dataset.panes = String(chart.paneCount());
}

// New bars change the indicators: refetch, at most once per INDICATOR_REFRESH_MS.
function scheduleIndicatorRefresh() {
  if (state.indicatorTimer || !state.active.size) return;
  const wait = Math.max(0, state.lastIndicatorLoad + INDICATOR_REFRESH_MS - Date.now());
  state.indicatorTimer = window.setTimeout(() => {
    state.indicatorTimer = null;
    loadIndicators();
  }, wait);
}

function applyBar(raw) {
  const bar = { time: toTime(raw.t), open: raw.o, high: raw.h, low: raw.l, close: raw.c, volume: raw.v };
  if (!chartBox.dataset.loaded || chartBox.dataset.loaded !== "true") return;
  const appended = chart.updateBar(bar);
  chartBox.dataset.lastClose = String(bar.close);
  chartBox.dataset.lastTime = String(bar.time);
  if (appended || raw.final) scheduleIndicatorRefresh();
}

// --- indicators picker -------------------------------------------------------------------------

const select = $("#indicator-select");
const periodInput = $("#indicator-period");
const addButton = $("#indicator-add");

function labelFor(name, params) {
  const values = Object.values(params);
  return values.length ? `${name} ${values.join(",")}` : name;
}

function renderChips() {
  const list = $("#indicator-chips");
  list.replaceChildren();
  for (const [id, entry] of state.active) {
    const li = document.createElement("li");
    li.className = "chip";
    li.dataset.indicator = id;
    const label = document.createElement("span");
    label.className = "chip-label";
    label.textContent = entry.label;
    li.append(label);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "icon";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${entry.label}`);
    remove.addEventListener("click", () => {
      state.active.delete(id);
      chart.removeIndicator(id);
      chartBox.dataset.panes = String(chart.paneCount());
      renderChips();
    });
    li.append(remove);
    list.append(li);
  }
}

function addIndicator(name, period) {
  const spec = state.catalog.get(name);
  if (!spec) return;
  const params = {};
  for (const [key, p] of Object.entries(spec.params)) params[key] = p.type === "int" ? Math.round(p.default) : p.default;
  if (period && "timeperiod" in spec.params) params.timeperiod = period;
  const shown = "timeperiod" in spec.params ? { timeperiod: params.timeperiod } : Object.keys(spec.params).length ? params : {};
  const label = labelFor(name, shown);
  const id = `${name}:${Object.values(params).join(":")}`;
  if (state.active.has(id)) return;
  const entry = { name, params, overlay: OVERLAY_GROUPS.has(spec.group), label };
  state.active.set(id, entry);
  renderChips();
  if (chartBox.dataset.loaded === "true") loadIndicator(id, entry, state.loadSeq).then(() => {
    chartBox.dataset.panes = String(chart.paneCount());
  });
}

async function loadCatalog() {
  const catalog = await getJSON(config.urls.catalog, {});
  const groups = new Map();
  for (const entry of catalog) {
    state.catalog.set(entry.name, entry);
    if (!groups.has(entry.group)) groups.set(entry.group, []);
    groups.get(entry.group).push(entry);
  }
  for (const [group, entries] of groups) {
    const optgroup = document.createElement("optgroup");
    optgroup.label = OVERLAY_GROUPS.has(group) ? "Overlays" : group[0].toUpperCase() + group.slice(1);
    for (const entry of entries) {
      const option = document.createElement("option");
      option.value = entry.name;
      option.textContent = `${entry.name} — ${entry.description}`;
      optgroup.append(option);
    }
    select.append(optgroup);
  }
}

select?.addEventListener("change", () => {
  const spec = state.catalog.get(select.value);
  const hasPeriod = Boolean(spec && "timeperiod" in spec.params);
  periodInput.disabled = !hasPeriod;
  periodInput.value = hasPeriod ? String(spec.params.timeperiod.default) : "";
  addButton.disabled = !spec;
});
addButton?.addEventListener("click", () => {
  const period = Number.parseInt(periodInput.value, 10);
  addIndicator(select.value, Number.isFinite(period) && period > 0 ? period : null);
  select.value = "";
  select.dispatchEvent(new Event("change"));
});

// --- symbol, timeframe ---------------------------------------------------------------------------

function chooseSymbol(symbol, name = "") {
  state.symbol = symbol;
  $("#chart-symbol").textContent = symbol;
  $("#chart-name").textContent = name;
  $("#chart-last").textContent = "";
  for (const row of rows()) row.classList.toggle("selected", row.dataset.symbol === symbol);
  const url = new URL(window.location.href);
  url.searchParams.set("symbol", symbol);
  window.history.replaceState(null, "", url);
  stream.want({ chart: { symbol, timeframe: state.timeframe } });
  loadChart();
}

for (const button of document.querySelectorAll(".tf-buttons [data-timeframe]")) {
  button.addEventListener("click", () => {
    state.timeframe = button.dataset.timeframe;
    for (const b of document.querySelectorAll(".tf-buttons [data-timeframe]")) {
      const on = b === button;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", String(on));
    }
    const url = new URL(window.location.href);
    url.searchParams.set("timeframe", state.timeframe);
    window.history.replaceState(null, "", url);
    if (state.symbol) stream.want({ chart: { symbol: state.symbol, timeframe: state.timeframe } });
    loadChart();
  });
}

// Row clicks (delegated: HTMX replaces the table when symbols are added or removed).
$("#markets").addEventListener("click", (event) => {
  const row = event.target.closest("tr.wl-row");
  if (!row || event.target.closest("form, button")) return;
  chooseSymbol(row.dataset.symbol, $(".sym-name", row)?.textContent ?? "");
});
$("#markets").addEventListener("keydown", (event) => {
  const row = event.target.closest?.("tr.wl-row");
  if (row && (event.key === "Enter" || event.key === " ")) {
    event.preventDefault();
    chooseSymbol(row.dataset.symbol, $(".sym-name", row)?.textContent ?? "");
  }
});

// --- search ---------------------------------------------------------------------------------------

const searchInput = $("#symbol-search");
const results = $("#search-results");
let searchTimer = null;
let searchSeq = 0;

function addToWatchlist(symbol) {
  const form = $("#watchlist-add-form");
  if (!form) return;
  form.querySelector("input[name=symbol]").value = symbol;
  form.requestSubmit(); // HTMX posts it and swaps the table
}

function renderResults(items) {
  results.replaceChildren();
  const listed = new Set(watchlistSymbols());
  for (const item of items) {
    const li = document.createElement("li");
    li.dataset.symbol = item.symbol;
    const pick = document.createElement("button");
    pick.type = "button";
    pick.className = "result";
    const code = document.createElement("strong");
    code.textContent = item.symbol;
    const name = document.createElement("span");
    name.className = "muted";
    name.textContent = ` ${item.name} · ${item.asset_class}`;
    pick.append(code, name);
    pick.addEventListener("click", () => {
      results.hidden = true;
      chooseSymbol(item.symbol, item.name);
    });
    li.append(pick);
    if (config.canWrite && config.watchlist && !listed.has(item.symbol)) {
      const add = document.createElement("button");
      add.type = "button";
      add.className = "small add";
      add.textContent = "+ Watch";
      add.setAttribute("aria-label", `Add ${item.symbol} to the watchlist`);
      add.addEventListener("click", () => {
        results.hidden = true;
        addToWatchlist(item.symbol);
      });
      li.append(add);
    }
    results.append(li);
  }
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "muted none";
    li.textContent = "No matching symbol.";
    results.append(li);
  }
  results.hidden = false;
}

searchInput?.addEventListener("input", () => {
  window.clearTimeout(searchTimer);
  const q = searchInput.value.trim();
  if (!q) {
    results.hidden = true;
    return;
  }
  searchTimer = window.setTimeout(async () => {
    const seq = ++searchSeq;
    try {
      const body = await getJSON(config.urls.instruments, { q, page_size: 8 });
      if (seq === searchSeq) renderResults(body.results);
    } catch (error) {
      status(`Search failed: ${error.message}`);
    }
  }, 200);
});
searchInput?.addEventListener("keydown", (event) => {
  if (event.key === "Escape") results.hidden = true;
  if (event.key === "Enter") {
    event.preventDefault();
    results.querySelector("button.result")?.click();
  }
});
document.addEventListener("click", (event) => {
  if (!event.target.closest(".symbol-search")) results.hidden = true;
});

// --- the stream -----------------------------------------------------------------------------------

function setLive(stateName) {
  state.live = showLiveState($("#live-state"), stateName);
  if (!state.live) checkStaleness();
}

const stream = connectMarket({
  path: config.urls.ws,
  onMarket(message) {
    if (typeof message.at === "number") state.clockOffset = message.at - Date.now() / 1000;
    for (const [symbol, q] of Object.entries(message.quotes ?? {})) applyQuote(symbol, q);
    const bar = message.bars?.[state.symbol]?.[state.timeframe];
    if (bar) applyBar(bar);
  },
  onState({ state: name, error }) {
    if (name === "error") console.warn("market stream:", error?.code, error?.message);
    else setLive(name);
  },
});

// HTMX swapped the watchlist (a symbol added or removed): follow the new symbol list.
document.body.addEventListener("htmx:afterSwap", (event) => {
  if (event.detail.target?.id !== "watchlist-table" && !event.detail.elt?.closest?.("#watchlist-table")) return;
  initRows();
  for (const row of rows()) row.classList.toggle("selected", row.dataset.symbol === state.symbol);
  stream.want({ symbols: watchlistSymbols() });
});

// The watchlist picker submits itself.
const picker = $("form[data-autosubmit]");
if (picker) {
  picker.querySelector("button[type=submit]").hidden = true;
  picker.querySelector("select").addEventListener("change", () => picker.requestSubmit());
}

initRows();
for (const row of rows()) row.classList.toggle("selected", row.dataset.symbol === state.symbol);
stream.want({ symbols: watchlistSymbols(), chart: state.symbol ? { symbol: state.symbol, timeframe: state.timeframe } : null });
window.setInterval(checkStaleness, STALE_CHECK_MS);
window.octopusMarkets = { state, chart, stream }; // for tests and the console

loadCatalog()
  .then(() => {
    for (const [name, period] of DEFAULT_INDICATORS) addIndicator(name, period);
  })
  .catch((error) => status(`Indicators unavailable: ${error.message}`))
  .finally(loadChart);
