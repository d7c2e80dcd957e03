// Unit test of static/js/ws.js under node's test runner, with a fake WebSocket and document.
import assert from "node:assert/strict";
import { test } from "node:test";

class FakeSocket extends EventTarget {
  static all = [];
  constructor(url) {
    super();
    this.url = url;
    FakeSocket.all.push(this);
  }
  receive(message) {
    this.dispatchEvent(Object.assign(new Event("message"), { data: JSON.stringify(message) }));
  }
  drop(code) {
    this.dispatchEvent(Object.assign(new Event("close"), { code }));
  }
  close() {}
}

const timers = [];
globalThis.document = new EventTarget();
globalThis.document.body = { dataset: { wsEvents: "off" } }; // no auto-connect on import
globalThis.WebSocket = FakeSocket;
globalThis.window = {
  location: { protocol: "https:", host: "octopus.example" },
  setTimeout: (fn, ms) => timers.push({ fn, ms }),
  clearTimeout: () => {},
};

const { connectEvents } = await import("../../static/js/ws.js");

function record(name) {
  const seen = [];
  document.addEventListener(name, (event) => seen.push(event.detail));
  return seen;
}

test("tracks seq, drops duplicates, emits resync on a gap and on a reconnect that missed events", () => {
  const events = record("octopus:event");
  const resyncs = record("resync");
  const client = connectEvents();
  const socket = FakeSocket.all.at(-1);
  assert.equal(socket.url, "wss://octopus.example/ws/events/");
  socket.receive({ type: "hello", firm: 3, last_seq: 10 });
  socket.receive({ type: "event", kind: "fill", firm: 3, seq: 11, event_id: "a", payload: {} });
  socket.receive({ type: "event", kind: "fill", firm: 3, seq: 11, event_id: "a", payload: {} }); // duplicate
  socket.receive({ type: "seq", firm: 3, seq: 12, event_id: "b" }); // hidden step: no event, no gap
  socket.receive({ type: "event", kind: "fill", firm: 3, seq: 14, event_id: "d", payload: {} }); // 13 missed
  assert.deepEqual(events.map((e) => e.seq), [11, 14]);
  assert.deepEqual(resyncs, [{ firm: 3, reason: "gap", expected: 13, got: 14 }]);
  assert.equal(client.lastSeq, 14);

  socket.drop(1013); // Redis unavailable: reconnect with backoff
  assert.equal(timers.length, 1);
  assert.ok(timers[0].ms >= 500 && timers[0].ms <= 1000);
  timers.shift().fn();
  const again = FakeSocket.all.at(-1);
  assert.notEqual(again, socket);
  again.receive({ type: "hello", firm: 3, last_seq: 16 });
  assert.deepEqual(resyncs.at(-1), { firm: 3, reason: "reconnect", expected: 15, got: 16 });
  assert.equal(client.lastSeq, 16);
  client.close();
});

test("does not reconnect when refused (4401/4403)", () => {
  const states = record("octopus:ws");
  connectEvents();
  const before = timers.length;
  FakeSocket.all.at(-1).drop(4401);
  assert.equal(timers.length, before);
  assert.deepEqual(states.at(-1), { state: "refused", code: 4401 });
});
