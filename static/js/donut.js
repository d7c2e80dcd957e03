// An SVG donut with a legend, for allocation shares (lightweight-charts has no pie). No inline
// styles (strict CSP): colours are SVG presentation attributes.

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = ["#58a6ff", "#f2cc60", "#3fb950", "#a371f7", "#ff9bce", "#56d4dd", "#ffa657", "#f85149",
  "#7ee787", "#d2a8ff", "#8b98a5"];
const RADIUS = 15.91549430918954; // circumference 100: dash lengths are percentages
const MAX_SLICES = 10; // the rest is drawn as "Other"

function svg(name, attrs = {}) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

function fold(parts) {
  if (parts.length <= MAX_SLICES) return parts;
  const head = parts.slice(0, MAX_SLICES - 1);
  const rest = parts.slice(MAX_SLICES - 1);
  return [...head, { label: "Other", value: rest.reduce((a, p) => a + p.value, 0), share: rest.reduce((a, p) => a + p.share, 0) }];
}

// parts: [{label, value, share (0..1)}], largest first. center: {text, sub}.
export function renderDonut(container, parts, { center = null, formatShare = (s) => `${(s * 100).toFixed(1)}%` } = {}) {
  container.replaceChildren();
  if (!parts.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "Nothing priced to allocate.";
    container.append(p);
    return;
  }
  const slices = fold(parts);
  const chart = svg("svg", { viewBox: "0 0 42 42", role: "img", "aria-label": "Allocation" });
  chart.append(svg("circle", { cx: 21, cy: 21, r: RADIUS, fill: "none", stroke: "#1e2b3a", "stroke-width": 6 }));
  let offset = 25; // start at 12 o'clock
  slices.forEach((part, i) => {
    const length = Math.max(0, Math.min(100, part.share * 100));
    const arc = svg("circle", {
      cx: 21, cy: 21, r: RADIUS, fill: "none", stroke: PALETTE[i % PALETTE.length], "stroke-width": 6,
      "stroke-dasharray": `${length} ${100 - length}`, "stroke-dashoffset": offset,
    });
    arc.dataset.label = part.label;
    const title = svg("title");
    title.textContent = `${part.label}: ${formatShare(part.share)}`;
    arc.append(title);
    chart.append(arc);
    offset = (offset - length + 100) % 100;
  });
  if (center) {
    const text = svg("text", { x: 21, y: 21, "text-anchor": "middle", class: "donut-center", "font-size": 4.2 });
    text.textContent = center.text;
    const sub = svg("text", { x: 21, y: 26, "text-anchor": "middle", class: "donut-sub", "font-size": 2.8 });
    sub.textContent = center.sub ?? "";
    chart.append(text, sub);
  }
  const legend = document.createElement("ul");
  legend.className = "alloc-legend";
  slices.forEach((part, i) => {
    const li = document.createElement("li");
    li.dataset.label = part.label;
    const dot = svg("svg", { class: "dot", viewBox: "0 0 10 10", "aria-hidden": "true" });
    dot.append(svg("rect", { width: 10, height: 10, rx: 2, fill: PALETTE[i % PALETTE.length] }));
    const label = document.createElement("span");
    label.textContent = part.label;
    const share = document.createElement("span");
    share.className = "share mono";
    share.textContent = formatShare(part.share);
    li.append(dot, label, share);
    legend.append(li);
  });
  container.append(chart, legend);
}
