// The Dashboard: reloads itself (totals, portfolios, movers, activity, open orders, recent fills) when
// one of the firm's portfolios books a fill (/ws/events/ "portfolio.fill"), one of its orders changes
// ("order") or events were missed ("resync").
// The server filters what the member may see; an event for a portfolio not shown is ignored.

const RELOAD_DEBOUNCE_MS = 500;
let timer = null;
const state = { reloads: 0 };

function shown() {
  return new Set([...document.querySelectorAll("#dash-portfolio-table tr[data-portfolio]")].map((r) => Number(r.dataset.portfolio)));
}

function reload() {
  window.clearTimeout(timer);
  timer = window.setTimeout(() => {
    window.htmx.ajax("GET", window.location.pathname, { target: "#dashboard", select: "#dashboard", swap: "outerHTML" })
      .then(() => { state.reloads += 1; });
  }, RELOAD_DEBOUNCE_MS);
}

document.addEventListener("octopus:event", (event) => {
  const message = event.detail;
  if (message.kind === "portfolio.fill" && shown().has(Number(message.payload?.portfolio))) reload();
  if (message.kind === "order" && shown().has(Number(message.payload?.order?.portfolio))) reload();
});
document.addEventListener("resync", reload);
window.octopusDashboard = state;
