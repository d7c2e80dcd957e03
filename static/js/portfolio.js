// The Portfolio page: live holdings and header over /ws/market/, a holdings reload on this
// portfolio's fills (/ws/events/), and the charts (equity vs benchmark, drawdown, allocation).
// Server-rendered first; each row carries its quantity, multiplier, signed cost, the price it was
// valued at and its day P&L as data attributes, and a live quote moves the row by the price change
// (so the server's day P&L definition, trades of the day included, carries over). No inline script
// (strict CSP): configuration comes from the page's json_script (#portfolio-config).

import { AreaSeries, ColorType, LineSeries, createChart } from "../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";
import { renderDonut } from "./donut.js";
import { connectMarket, showLiveState } from "./market_ws.js";

const config = JSON.parse(document.getElementById("portfolio-config").textContent);
const $ = (selector, root = document) => root.querySelector(selector);
const STALE_CHECK_MS = 5000;
const FLASH_MS = 700;
const RELOAD_DEBOUNCE_MS = 250;

const state = { live: false, clockOffset: 0, reloads: 0, charts: null, allocation: null, allocBy: "by_instrument" };

// --- formatting (the same rules as apps/portfolios/views/pages.py) ------------------------------

const fmt = (digits) => new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const FMT2 = fmt(2);
const FMT4 = fmt(4);
const ok = (v) => v !== null && v !== undefined && Number.isFinite(v);
export const money = (v) => (ok(v) ? FMT2.format(Math.abs(v) < 0.005 ? 0 : v) : "—");
export const signed = (v) => {
  if (!ok(v)) return "—";
  const text = money(v);
  return text.startsWith("-") ? text : `+${text}`;
};
export const percent = (v) => (ok(v) ? `${v < -0.005 ? "-" : "+"}${FMT2.format(Math.abs(v))}%` : "—");
export const price = (v) => (ok(v) ? (Math.abs(v) >= 1 ? FMT2 : FMT4).format(v) : "—");
const tone = (v) => (!ok(v) || Math.abs(v) < 0.005 ? "" : v > 0 ? "pos" : "neg");
const num = (text) => (text === undefined || text === "" ? NaN : Number(text));

function setNumber(el, text, value = null, withTone = false) {
  if (!el) return;
  el.textContent = text;
  if (withTone) {
    el.classList.remove("pos", "neg");
    const t = tone(value);
    if (t) el.classList.add(t);
  }
}

// --- holdings --------------------------------------------------------------------------------------

const book = () => $("#book");
const rows = () => [...document.querySelectorAll("#holdings-table tr.h-row")];
const rowFor = (symbol) => document.querySelector(`#holdings-table tr.h-row[data-symbol="${CSS.escape(symbol)}"]`);
const heldSymbols = () => rows().map((r) => r.dataset.symbol);

// The numbers the server valued the row at; live values are computed from these.
function server(row) {
  if (!row._server) {
    const d = row.dataset;
    row._server = { qty: num(d.qty), mult: num(d.mult) || 1, cost: num(d.cost), last: num(d.last), prevClose: num(d.prevClose),
      mv: num(d.marketValue), day: num(d.dayPnl) };
    row._live = { mv: row._server.mv, day: row._server.day, unr: row._server.mv - row._server.cost };
  }
  return row._server;
}

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

// One row at price `l`: market value, unrealized (and % of |cost|), day P&L moved by the price change.
export function valueAt(s, l) {
  const mv = s.qty * l * s.mult;
  const unr = mv - s.cost;
  let day = null;
  if (ok(s.day) && ok(s.last)) day = s.day + s.qty * s.mult * (l - s.last);
  else if (!ok(s.last) && ok(s.prevClose)) day = s.qty * s.mult * (l - s.prevClose); // unpriced until now
  return { mv, unr, unrPct: s.cost ? (100 * unr) / Math.abs(s.cost) : null, day };
}

function applyQuote(symbol, q) {
  const row = rowFor(symbol);
  if (!row || !ok(q.l)) return;
  const s = server(row);
  const before = num(row.dataset.liveLast ?? row.dataset.last);
  const live = valueAt(s, q.l);
  row._live = live;
  row.dataset.liveLast = String(q.l);
  row.dataset.quoteTs = String(q.t);
  $(".c-last", row).textContent = price(q.l);
  setNumber($(".c-mv", row), money(live.mv));
  setNumber($(".c-unr", row), signed(live.unr), live.unr, true);
  setNumber($(".c-unr-pct", row), percent(live.unrPct), live.unr, true);
  setNumber($(".c-day", row), signed(live.day), live.day, true);
  setStale(row, Boolean(q.stale) || !state.live);
  if (ok(before) && before !== q.l) flash(row, q.l > before ? "flash-up" : "flash-down");
}

// Header totals = the server's totals moved by each row's live change (cash does not move on a tick).
function recomputeHeader() {
  const b = book();
  if (!b) return;
  const base = { equity: num(b.dataset.equity), mv: num(b.dataset.marketValue), unr: num(b.dataset.unrealized), day: num(b.dataset.dayPnl) };
  let dMv = 0;
  let dDay = 0;
  let dayKnown = ok(base.day);
  for (const row of rows()) {
    const s = server(row);
    const live = row._live;
    dMv += live.mv - s.mv;
    if (ok(live.day) && ok(s.day)) dDay += live.day - s.day;
    else if (ok(live.day) !== ok(s.day)) dayKnown = false;
  }
  const equity = base.equity + dMv;
  setNumber($("#h-equity"), money(equity));
  setNumber($("#h-mv"), money(base.mv + dMv));
  setNumber($("#h-unrealized"), signed(base.unr + dMv), base.unr + dMv, true);
  const day = dayKnown ? base.day + dDay : null;
  setNumber($("#h-day"), signed(day), day, true);
  for (const row of rows()) setNumber($(".c-weight", row), equity > 0 ? percent((100 * row._live.mv) / equity).replace("+", "") : "—");
  $("#h-stale").hidden = !rows().some((r) => r.classList.contains("stale"));
  b.dataset.liveEquity = String(equity);
}

function quoteEpoch(raw) {
  if (!raw) return null;
  const n = Number(raw);
  return Number.isFinite(n) ? n : Date.parse(raw) / 1000;
}

// Never show a stale price as live: no newer quote in time, or the stream is down.
function checkStaleness() {
  const now = Date.now() / 1000 + state.clockOffset;
  let changed = false;
  for (const row of rows()) {
    const ts = quoteEpoch(row.dataset.quoteTs ?? row.dataset.priceTs);
    const stale = row.classList.contains("stale") || !state.live || ts === null || now - ts > config.maxQuoteAge;
    if (stale && !row.classList.contains("stale")) {
      setStale(row, true);
      changed = true;
    }
  }
  if (changed) recomputeHeader();
}

function initRows() {
  for (const row of rows()) server(row);
}

// --- streams ---------------------------------------------------------------------------------------

function setLive(name) {
  state.live = showLiveState($("#live-state"), name);
  if (!state.live) checkStaleness();
}

const stream = connectMarket({
  path: config.urls.ws,
  onMarket(message) {
    if (typeof message.at === "number") state.clockOffset = message.at - Date.now() / 1000;
    let any = false;
    for (const [symbol, q] of Object.entries(message.quotes ?? {})) {
      if (rowFor(symbol)) {
        applyQuote(symbol, q);
        any = true;
      }
    }
    if (any) recomputeHeader();
  },
  onState({ state: name, error }) {
    if (name === "error") console.warn("market stream:", error?.code, error?.message);
    else setLive(name);
  },
});

let reloadTimer = null;
function reloadHoldings() {
  window.clearTimeout(reloadTimer);
  reloadTimer = window.setTimeout(() => {
    window.htmx.ajax("GET", config.urls.holdings, { target: "#book", swap: "outerHTML" }).then(() => {
      state.reloads += 1;
      initRows();
      stream.want({ symbols: heldSymbols() });
      loadCharts();
    });
  }, RELOAD_DEBOUNCE_MS);
}

// A fill of this portfolio (booking.book_fill publishes after commit), or missed events: reload.
document.addEventListener("octopus:event", (event) => {
  const message = event.detail;
  if (message.kind === "portfolio.fill" && Number(message.payload?.portfolio) === config.portfolio) reloadHoldings();
});
document.addEventListener("resync", reloadHoldings);

// --- charts ----------------------------------------------------------------------------------------

function baseChart(container) {
  return createChart(container, {
    autoSize: true,
    layout: {
      background: { type: ColorType.Solid, color: "#16212e" },
      textColor: "#8b98a5",
      fontFamily: 'system-ui, -apple-system, "Segoe UI", sans-serif',
      attributionLogo: false, // it injects an inline <style> (CSP); the page links TradingView instead
    },
    grid: { vertLines: { color: "#1e2b3a" }, horzLines: { color: "#1e2b3a" } },
    rightPriceScale: { borderColor: "#2a3644" },
    timeScale: { borderColor: "#2a3644" },
    crosshair: { mode: 0 },
  });
}

function makeCharts() {
  const equityBox = $("#equity-chart");
  const drawdownBox = $("#drawdown-chart");
  if (!equityBox || !drawdownBox) return null;
  const equity = baseChart(equityBox);
  const growth = equity.addSeries(LineSeries, { color: "#58a6ff", lineWidth: 2, title: "Portfolio", priceLineVisible: false });
  const bench = equity.addSeries(LineSeries, { color: "#f2cc60", lineWidth: 1, title: config.benchmark ?? "", priceLineVisible: false });
  const drawdown = baseChart(drawdownBox);
  const dd = drawdown.addSeries(AreaSeries, {
    lineColor: "#f85149", topColor: "rgba(248,81,73,.05)", bottomColor: "rgba(248,81,73,.35)", lineWidth: 1,
    priceFormat: { type: "custom", formatter: (v) => `${v.toFixed(1)}%`, minMove: 0.01 }, priceLineVisible: false,
  });
  return { equity, growth, bench, drawdown, dd };
}

function renderMetrics(metrics) {
  const list = $("#metrics");
  list.replaceChildren();
  for (const m of metrics ?? []) {
    const div = document.createElement("div");
    div.dataset.metric = m.key;
    const dt = document.createElement("dt");
    dt.textContent = m.label;
    const dd = document.createElement("dd");
    dd.className = "mono";
    dd.textContent = m.value;
    div.append(dt, dd);
    list.append(div);
  }
}

function renderAllocation() {
  const box = $("#allocation");
  if (!box || !state.allocation) return;
  const parts = state.allocation[state.allocBy] ?? [];
  renderDonut(box, parts, { center: { text: money(state.allocation.gross), sub: "gross value" } });
  box.dataset.parts = String(parts.length);
}

async function loadCharts() {
  const status = $("#equity-status");
  try {
    const response = await fetch(config.urls.charts, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(response.statusText);
    const body = await response.json();
    state.charts ??= makeCharts();
    const c = state.charts;
    if (c) {
      c.growth.setData(body.equity);
      c.bench.setData(body.benchmark);
      c.dd.setData(body.drawdown.map((p) => ({ time: p.time, value: p.value * 100 })));
      c.equity.timeScale().fitContent();
      c.drawdown.timeScale().fitContent();
      const box = $("#equity-chart");
      box.dataset.points = String(body.equity.length);
      box.dataset.benchmarkPoints = String(body.benchmark.length);
      box.dataset.loaded = "true";
    }
    status.textContent = body.equity.length ? "" : "No end-of-day snapshots yet: the curve starts after the first session close.";
    state.allocation = body.allocation;
    renderAllocation();
    renderMetrics(body.metrics);
  } catch (error) {
    status.textContent = `Charts unavailable: ${error.message}`;
  }
}

for (const button of document.querySelectorAll(".seg [data-alloc]")) {
  button.addEventListener("click", () => {
    state.allocBy = button.dataset.alloc;
    for (const b of document.querySelectorAll(".seg [data-alloc]")) {
      const on = b === button;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", String(on));
    }
    renderAllocation();
  });
}

// --- ledger tabs -----------------------------------------------------------------------------------

function hideJsFallbacks(root = document) {
  for (const el of root.querySelectorAll(".js-hide")) el.hidden = true;
}

document.body.addEventListener("htmx:afterSwap", (event) => {
  const target = event.detail.target;
  if (target?.id !== "ledger") return;
  const tab = $(".ledger-body", target)?.dataset.tab;
  for (const a of document.querySelectorAll(".tabs [data-tab]")) a.setAttribute("aria-selected", String(a.dataset.tab === tab));
  hideJsFallbacks(target);
  const url = new URL(window.location.href);
  url.searchParams.set("tab", tab);
  window.history.replaceState(null, "", url);
});

initRows();
hideJsFallbacks();
stream.want({ symbols: heldSymbols() });
window.setInterval(checkStaleness, STALE_CHECK_MS);
loadCharts();
window.octopusPortfolio = { state, stream, reloadHoldings }; // for tests and the console
