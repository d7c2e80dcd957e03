// The Trade page: the order ticket (fields per type and class, client-side checks that mirror the
// server's, preview then send over HTMX), the blotter and positions kept live from the firm event
// stream (/ws/events/, static/js/ws.js): a kind "order" event of this portfolio reloads the blotter
// (debounced), one carrying an execution reloads the positions too. A live quote for the ticket's
// symbol comes over /ws/market/. The Algos panel's list reloads with the blotter and every 5 s while an
// algo runs (see its section below). No inline script (strict CSP): configuration is #trade-config.

import { connectMarket, showLiveState } from "./market_ws.js";

const config = JSON.parse(document.getElementById("trade-config").textContent);
const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
const RELOAD_DEBOUNCE_MS = 300;
const QUOTE_DEBOUNCE_MS = 400;
const SWAP_ERRORS = new Set([400, 403, 409, 422, 423]);
const state = { blotterReloads: 0, positionsReloads: 0, algosReloads: 0, events: 0, quote: null, stream: null };

// --- the ticket: which fields the type, class and amount use ---------------------------------------

const form = () => $("#ticket-form");
const value = (name) => {
  const f = form();
  if (!f) return "";
  const checked = f.querySelector(`[name="${name}"]:checked`);
  if (checked) return checked.value;
  const el = f.elements.namedItem(name);
  return el && !(el instanceof RadioNodeList) ? (el.value || "").trim() : "";
};

function show(group, visible) {
  group.hidden = !visible;
  for (const input of $$("input, select", group)) input.disabled = !visible; // not sent when hidden
}

export function layoutTicket() {
  const f = form();
  if (!f) return;
  const type = value("type");
  const cls = value("order_class");
  const amount = value("amount_in") || "qty";
  for (const group of $$("[data-types]", f)) {
    const types = group.dataset.types.split(" ");
    const also = (group.dataset.classesAlso || "").split(" ").filter(Boolean);
    show(group, types.includes(type) || also.includes(cls));
  }
  for (const group of $$("[data-classes]", f)) show(group, group.dataset.classes.split(" ").includes(cls));
  for (const group of $$("[data-amount]", f)) show(group, group.dataset.amount === amount);
  const send = $("#t-send");
  if (send) send.textContent = `Send ${value("side") || "buy"} order`;
}

// --- client-side checks (the server's messages, apps/orders/validation.py) --------------------------

const NUMBER = /^\s*-?(\d+\.?\d*|\.\d+)\s*$/;
const LIMIT_TYPES = ["limit", "stop_limit"];
const STOP_TYPES = ["stop", "stop_limit"];

function positive(errors, name, text, { required = false, requiredMessage = "This field is required." } = {}) {
  if (!text) {
    if (required) (errors[name] ??= []).push(requiredMessage);
    return;
  }
  if (!NUMBER.test(text)) (errors[name] ??= []).push("A valid number is required.");
  else if (Number(text) <= 0) (errors[name] ??= []).push(`${name} must be greater than 0.`);
}

export function checkTicket() {
  const errors = {};
  const type = value("type");
  const cls = value("order_class");
  if (!value("symbol")) errors.symbol = ["This field is required."];
  const amount = value("amount_in") === "notional" ? "notional" : "qty";
  positive(errors, amount, value(amount), { required: true, requiredMessage: "Give qty or notional." });
  if (amount === "notional" && type !== "market") (errors.notional ??= []).push("notional is allowed only on market orders.");
  positive(errors, "limit_price", value("limit_price"), {
    required: LIMIT_TYPES.includes(type) && cls !== "oco", requiredMessage: `limit_price is required on ${type} orders.` });
  positive(errors, "stop_price", value("stop_price"), {
    required: STOP_TYPES.includes(type), requiredMessage: `stop_price is required on ${type} orders.` });
  if (type === "trailing_stop") {
    const [price, percent] = [value("trail_price"), value("trail_percent")];
    if (Boolean(price) === Boolean(percent)) errors.trail_price = ["A trailing_stop order needs exactly one of trail_price and trail_percent."];
    positive(errors, "trail_price", price);
    positive(errors, "trail_percent", percent);
  }
  if (["bracket", "oco", "oto"].includes(cls)) {
    const tp = value("take_profit.limit_price");
    const slStop = value("stop_loss.stop_price");
    const slLimit = value("stop_loss.limit_price");
    if (cls === "oto") {
      if (Boolean(tp) === Boolean(slStop || slLimit)) errors.order_class = ["An oto order takes exactly one of take_profit and stop_loss."];
    } else {
      if (!tp) errors["take_profit.limit_price"] = [`take_profit is required on ${cls} orders.`];
      if (!slStop && !slLimit) errors["stop_loss.stop_price"] = [`stop_loss is required on ${cls} orders.`];
    }
    if (slLimit && !slStop) (errors["stop_loss.stop_price"] ??= []).push("stop_loss.stop_price is required.");
    positive(errors, "take_profit.limit_price", tp);
    positive(errors, "stop_loss.stop_price", slStop);
    positive(errors, "stop_loss.limit_price", slLimit);
  }
  return errors;
}

function showErrors(errors) {
  for (const list of $$("#ticket-form [data-error-for]")) {
    const messages = errors[list.dataset.errorFor] || [];
    list.replaceChildren(...messages.map((m) => Object.assign(document.createElement("li"), { textContent: m })));
    list.hidden = messages.length === 0;
  }
}

// Capture phase on the document: runs before HTMX's own submit listener on the form.
document.addEventListener("submit", (event) => {
  if (event.target.id !== "ticket-form") return;
  const errors = checkTicket();
  showErrors(errors);
  if (Object.keys(errors).length) {
    event.preventDefault();
    event.stopPropagation();
    const first = $("#ticket-form [data-error-for]:not([hidden])");
    first?.parentElement?.querySelector("input, select")?.focus();
  }
}, true);

// Anything edited after a preview makes it stale: preview again before sending.
function onTicketEdit(event) {
  if (!event.target.closest?.("#ticket-form")) return;
  layoutTicket();
  const preview = $("#preview");
  if (preview && event.target.name !== "client_order_id") {
    preview.classList.add("stale");
    $("#t-send")?.remove();
  }
  if (event.target.name === "symbol") watchSymbol();
}
document.addEventListener("change", onTicketEdit);
document.addEventListener("input", (event) => {
  if (event.target.name === "symbol" && event.target.closest?.("#ticket-form")) onTicketEdit(event);
});

// HTMX leaves 4xx responses unswapped by default: the ticket and the blotter render their errors.
document.addEventListener("htmx:beforeSwap", (event) => {
  const status = event.detail.xhr.status;
  if (SWAP_ERRORS.has(status) && event.detail.xhr.getResponseHeader("Content-Type")?.startsWith("text/html")
      && event.detail.xhr.responseText.includes('id="')) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

document.addEventListener("htmx:afterSwap", (event) => {
  if (event.detail.target?.id === "ticket" || $("#ticket")?.contains(event.detail.elt)) {
    layoutTicket();
    watchSymbol();
  }
});

// --- live quote for the ticket's symbol -------------------------------------------------------------

let quoteTimer = null;
function watchSymbol() {
  window.clearTimeout(quoteTimer);
  quoteTimer = window.setTimeout(() => {
    const symbol = value("symbol").toUpperCase();
    if (!state.stream || !symbol) {
      renderQuote(null);
      return;
    }
    renderQuote(symbol === state.quote?.symbol ? state.quote : null); // a swapped ticket shows the last one
    state.stream.want({ symbols: [symbol] });
  }, QUOTE_DEBOUNCE_MS);
}

const fmt = (v) => (v === null || v === undefined || !Number.isFinite(v) ? "—"
  : new Intl.NumberFormat("en-US", { minimumFractionDigits: Math.abs(v) >= 1 ? 2 : 4, maximumFractionDigits: Math.abs(v) >= 1 ? 2 : 4 }).format(v));

function renderQuote(q) {
  const el = $("#t-quote");
  if (!el) return;
  if (!q) {
    el.textContent = "";
    return;
  }
  el.textContent = `bid ${fmt(q.b)} · ask ${fmt(q.a)} · last ${fmt(q.l)}${q.stale ? " · stale" : ""}`;
  el.classList.toggle("stale", Boolean(q.stale));
}

if (config.canTrade) {
  state.stream = connectMarket({
    path: config.urls.ws,
    onMarket(message) {
      const symbol = value("symbol").toUpperCase();
      const q = message.quotes?.[symbol];
      if (q) {
        state.quote = { symbol, ...q };
        renderQuote(q);
      }
    },
  });
}

// --- blotter and positions, live ----------------------------------------------------------------------

function busy() {
  // an open replace form or a focused input in the blotter: do not pull it from under the user
  return Boolean($("#blotter details[open]")) || Boolean(document.activeElement?.closest?.("#blotter form"));
}

const timers = {};
function reload(name, url, target, { force = false } = {}) {
  window.clearTimeout(timers[name]);
  timers[name] = window.setTimeout(() => {
    if (name === "blotter" && !force && busy()) {
      reload(name, url, target); // try again shortly
      return;
    }
    // its own source: htmx queues requests per source element (the body by default), keeping only the
    // last one while one is in flight, so the blotter, positions and algos reloads would drop each other
    window.htmx.ajax("GET", url, { source: target, target, swap: "outerHTML" }).then(() => {
      state[`${name}Reloads`] += 1;
    });
  }, RELOAD_DEBOUNCE_MS);
}
const reloadBlotter = (options) => reload("blotter", config.urls.blotter, "#blotter", options);
const reloadPositions = () => reload("positions", config.urls.positions, "#positions");

document.addEventListener("octopus:event", (event) => {
  const message = event.detail;
  if (message.kind === "order" && Number(message.payload?.order?.portfolio) === config.portfolio) {
    state.events += 1;
    reloadBlotter();
    reloadAlgos(); // an algo's children are orders: their fills move its progress
    if (message.payload.execution || /fill/.test(message.payload.event || "")) reloadPositions();
  } else if (message.kind === "portfolio.fill" && Number(message.payload?.portfolio) === config.portfolio) {
    reloadPositions();
  }
});
document.addEventListener("resync", () => {
  reloadBlotter();
  reloadPositions();
  reloadAlgos();
});
document.body.addEventListener("orders-changed", () => reloadBlotter({ force: true }));
document.addEventListener("octopus:ws", (event) => {
  const badge = $("#live-state");
  if (badge) showLiveState(badge, event.detail.state);
});

// ==== the Algos panel (TWAP / VWAP): progress kept live, the new-algo form's symbol follows the ticket ====
// #algo-list reloads on an order event of this portfolio (above) and, while it says an algo is running
// (data-running), every ALGO_POLL_MS: a slice can be sent before any event of it reaches this member.

const ALGO_POLL_MS = 5000;
function reloadAlgos() {
  if (config.urls.algos) reload("algos", config.urls.algos, "#algo-list");
}
let algoPoll = null;
let algoList = null;
function watchAlgos() {
  const list = $("#algo-list");
  if (list === algoList) return; // another part of the page was swapped
  algoList = list;
  window.clearTimeout(algoPoll);
  if (Number(list?.dataset.running || 0) > 0) algoPoll = window.setTimeout(reloadAlgos, ALGO_POLL_MS);
}
document.addEventListener("htmx:afterSettle", watchAlgos);

// The form's symbol starts as the ticket's, and follows it until the member types one of its own.
document.addEventListener("input", (event) => {
  const algoSymbol = $("#a-symbol");
  if (!algoSymbol) return;
  if (event.target === algoSymbol) algoSymbol.dataset.typed = "true";
  else if (event.target.id === "t-symbol" && !algoSymbol.dataset.typed) algoSymbol.value = event.target.value;
});
function seedAlgoSymbol() {
  const algoSymbol = $("#a-symbol");
  if (algoSymbol && !algoSymbol.value) algoSymbol.value = $("#t-symbol")?.value || "";
}
document.addEventListener("htmx:afterSwap", seedAlgoSymbol);
watchAlgos();
seedAlgoSymbol();
// ==== end Algos panel ====

// --- the portfolio picker ---------------------------------------------------------------------------

const picker = $("#portfolio-picker");
if (picker) {
  for (const el of $$(".js-hide", picker)) el.hidden = true;
  $("select", picker).addEventListener("change", () => picker.requestSubmit());
}

layoutTicket();
watchSymbol();
window.octopusTrade = state;
