// The firm event stream: /ws/events/ with reconnect, sequence tracking and resync on a gap.
//
// Events are re-dispatched on `document`:
//   "octopus:event"  detail = the event ({type: "event", kind, firm, seq, event_id, at, payload})
//   "resync"         detail = {firm, reason, expected, got}: reload state from the REST API
//   "octopus:ws"     detail = {state: "open" | "closed" | "refused", code}
// The browser authenticates with its session cookie; the server checks the Origin header.

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const REFUSED = new Set([4401, 4403]); // not logged in / forbidden: reconnecting will not help
const SEEN_LIMIT = 500;

function emit(name, detail) {
  document.dispatchEvent(new CustomEvent(name, { detail }));
}

export function connectEvents({ path = "/ws/events/" } = {}) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${window.location.host}${path}`;
  let socket = null;
  let firm = null;
  let lastSeq = null;
  let attempt = 0;
  let timer = null;
  let stopped = false;
  const seen = [];

  function duplicate(eventId) {
    if (!eventId) return false;
    if (seen.includes(eventId)) return true;
    seen.push(eventId);
    if (seen.length > SEEN_LIMIT) seen.shift();
    return false;
  }

  function advance(message) {
    // Returns false for a duplicate. A gap (or a sequence that went backwards, e.g. Redis
    // lost its counters) means some events were missed: resync from REST.
    if (message.seq == null) return true;
    if (lastSeq !== null && message.seq <= lastSeq && message.seq > lastSeq - SEEN_LIMIT) return false;
    if (lastSeq !== null && message.seq !== lastSeq + 1) {
      emit("resync", { firm, reason: "gap", expected: lastSeq + 1, got: message.seq });
    }
    lastSeq = message.seq;
    return true;
  }

  function onMessage(raw) {
    let message;
    try {
      message = JSON.parse(raw.data);
    } catch {
      return;
    }
    if (message.type === "hello") {
      const reconnect = firm === message.firm && lastSeq !== null;
      if (firm !== null && firm !== message.firm) {
        emit("resync", { firm: message.firm, reason: "firm-changed", expected: null, got: message.last_seq });
      } else if (reconnect && message.last_seq !== lastSeq) {
        emit("resync", { firm, reason: "reconnect", expected: lastSeq + 1, got: message.last_seq });
      }
      firm = message.firm;
      lastSeq = message.last_seq;
      attempt = 0;
      emit("octopus:ws", { state: "open", code: null });
    } else if (message.type === "event" || message.type === "seq") {
      if (duplicate(message.event_id) || !advance(message)) return;
      if (message.type === "event") emit("octopus:event", message);
    }
  }

  function schedule() {
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
    attempt += 1;
    timer = window.setTimeout(open, delay / 2 + Math.random() * (delay / 2)); // jitter
  }

  function open() {
    if (stopped) return;
    socket = new WebSocket(url);
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", (event) => {
      socket = null;
      if (REFUSED.has(event.code)) {
        emit("octopus:ws", { state: "refused", code: event.code });
        return;
      }
      emit("octopus:ws", { state: "closed", code: event.code });
      if (!stopped) schedule();
    });
  }

  open();
  return {
    close() {
      stopped = true;
      window.clearTimeout(timer);
      if (socket) socket.close(1000);
    },
    get lastSeq() {
      return lastSeq;
    },
  };
}

if (document.body?.dataset.wsEvents !== "off") {
  window.octopusEvents = connectEvents();
}
