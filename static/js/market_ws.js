// The market stream: /ws/market/ with reconnect (exponential backoff with jitter) and
// re-subscription of everything wanted after each reconnect.
//
//   const stream = connectMarket({ onMarket, onState });
//   stream.want({ symbols: ["AAPL", "MSFT"], chart: { symbol: "AAPL", timeframe: "5m" } });
//
// onMarket(message) gets each {"type": "market", ...} message; onState({state, code}) gets
// "open" | "closed" | "refused" and, on protocol errors, "error" with the server's error object.
// The browser authenticates with its session cookie (same origin).

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const PING_MS = 25000;
const REFUSED = new Set([4401, 4403]); // not logged in / forbidden: reconnecting will not help

export function connectMarket({ path = "/ws/market/", onMarket = () => {}, onState = () => {} } = {}) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${window.location.host}${path}`;
  let socket = null;
  let attempt = 0;
  let timer = null;
  let pinger = null;
  let stopped = false;
  let wanted = { symbols: [], chart: null };
  let subscribed = new Set(); // what the server confirmed on this connection

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function wantedSymbols() {
    const all = new Set(wanted.symbols);
    if (wanted.chart) all.add(wanted.chart.symbol);
    return all;
  }

  function sync() {
    // Subscribe to the union (the chart's symbol with its timeframe), drop what is no longer wanted.
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const all = wantedSymbols();
    const quotesOnly = [...all].filter((s) => !wanted.chart || s !== wanted.chart.symbol).sort();
    // timeframes [] = quotes only (a symbol that was charted before stops getting bars).
    if (quotesOnly.length) send({ type: "subscribe", symbols: quotesOnly, timeframes: [] });
    if (wanted.chart) send({ type: "subscribe", symbols: [wanted.chart.symbol], timeframes: [wanted.chart.timeframe] });
    const gone = [...subscribed].filter((s) => !all.has(s));
    if (gone.length) send({ type: "unsubscribe", symbols: gone });
  }

  function onMessage(raw) {
    let message;
    try {
      message = JSON.parse(raw.data);
    } catch {
      return;
    }
    if (message.type === "market") onMarket(message);
    else if (message.type === "subscribed" || message.type === "unsubscribed") subscribed = new Set(message.symbols || []);
    else if (message.type === "error") onState({ state: "error", error: message.error });
  }

  function schedule() {
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
    attempt += 1;
    timer = window.setTimeout(open, delay / 2 + Math.random() * (delay / 2)); // jitter
  }

  function open() {
    if (stopped) return;
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      attempt = 0;
      subscribed = new Set();
      onState({ state: "open", code: null });
      sync();
      pinger = window.setInterval(() => send({ type: "ping" }), PING_MS);
    });
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", (event) => {
      socket = null;
      window.clearInterval(pinger);
      if (REFUSED.has(event.code)) {
        onState({ state: "refused", code: event.code });
        return;
      }
      onState({ state: "closed", code: event.code });
      if (!stopped) schedule();
    });
  }

  open();
  return {
    want(next) {
      wanted = { symbols: [...(next.symbols ?? wanted.symbols)], chart: next.chart === undefined ? wanted.chart : next.chart };
      sync();
    },
    get subscribed() {
      return [...subscribed];
    },
    close() {
      stopped = true;
      window.clearTimeout(timer);
      window.clearInterval(pinger);
      if (socket) socket.close(1000);
    },
  };
}

const LIVE_LABELS = { open: "Live", closed: "Reconnecting…", refused: "Offline", connecting: "Connecting…" };

// Show a stream's state on a badge (its data-state drives the colour); true when the stream is live.
export function showLiveState(badge, name) {
  badge.dataset.state = name;
  badge.textContent = LIVE_LABELS[name] ?? name;
  return name === "open";
}
