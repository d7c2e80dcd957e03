// A price chart on TradingView Lightweight Charts (vendored): candlesticks, volume, overlay
// indicators on the price pane and oscillators in panes of their own below it.

import {
  CandlestickSeries,
  ColorType,
  HistogramSeries,
  LineSeries,
  LineStyle,
  createChart,
} from "../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";

const UP = "#3fb950";
const DOWN = "#f85149";
const PALETTE = ["#f2cc60", "#a371f7", "#58a6ff", "#ff9bce", "#56d4dd", "#ffa657", "#7ee787"];
const PRICE_PANE_PX = 420;
const OSCILLATOR_PANE_PX = 150;

export const toTime = (iso) => Math.floor(Date.parse(iso) / 1000);

function styleFor(output, index, color) {
  // Band edges (Bollinger, Keltner, Donchian) share the indicator's colour, dashed.
  if (["upper", "lower"].includes(output)) return { color, lineStyle: LineStyle.Dashed, lineWidth: 1 };
  if (["signal", "slowd", "fastd", "aroondown", "kijun"].includes(output)) return { color: PALETTE[(index + 3) % PALETTE.length], lineWidth: 1 };
  return { color, lineWidth: output === "middle" ? 1 : 2 };
}

export function createPriceChart(container) {
  const chart = createChart(container, {
    autoSize: true,
    layout: {
      background: { type: ColorType.Solid, color: "#16212e" },
      textColor: "#8b98a5",
      fontFamily: 'system-ui, -apple-system, "Segoe UI", sans-serif',
      attributionLogo: false, // it injects an inline <style> (CSP); the page links TradingView instead
      panes: { separatorColor: "#2a3644", separatorHoverColor: "#2f81f7" },
    },
    grid: { vertLines: { color: "#1e2b3a" }, horzLines: { color: "#1e2b3a" } },
    rightPriceScale: { borderColor: "#2a3644" },
    timeScale: { borderColor: "#2a3644", timeVisible: true, secondsVisible: false, rightOffset: 4 },
    crosshair: { mode: 0 },
  });
  const candles = chart.addSeries(CandlestickSeries, {
    upColor: UP, downColor: DOWN, borderUpColor: UP, borderDownColor: DOWN, wickUpColor: UP, wickDownColor: DOWN,
  });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
  const volume = chart.addSeries(HistogramSeries, {
    priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false,
  });
  chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });

  const indicators = new Map(); // id -> {overlay, series: [ISeriesApi]}
  let lastTime = null;
  let colorIndex = 0;

  const volumePoint = (b) => ({ time: b.time, value: b.volume, color: b.close >= b.open ? "rgba(63,185,80,.45)" : "rgba(248,81,73,.45)" });

  function resize() {
    const oscillators = [...indicators.values()].filter((i) => !i.overlay).length;
    container.style.height = `${PRICE_PANE_PX + oscillators * OSCILLATOR_PANE_PX}px`;
    const panes = chart.panes();
    panes.forEach((pane, i) => pane.setStretchFactor(i === 0 ? PRICE_PANE_PX / OSCILLATOR_PANE_PX : 1));
  }

  return {
    chart,
    get lastTime() {
      return lastTime;
    },
    get barCount() {
      return candles.data().length;
    },
    // bars: [{time (epoch s), open, high, low, close, volume}], oldest first
    setBars(bars) {
      // Another symbol or timeframe: the indicators' old points would stretch the time scale
      // until their refetch lands, so drop them now.
      for (const entry of indicators.values()) entry.series.forEach((s) => s.setData([]));
      candles.setData(bars.map(({ time, open, high, low, close }) => ({ time, open, high, low, close })));
      volume.setData(bars.map(volumePoint));
      lastTime = bars.length ? bars[bars.length - 1].time : null;
      this.fit();
    },
    // The last 150 bars (or all of fewer).
    fit() {
      const n = candles.data().length;
      if (n > 150) chart.timeScale().setVisibleLogicalRange({ from: n - 150, to: n + 4 });
      else chart.timeScale().fitContent();
    },
    // A live bar: replaces the last candle (same time) or appends one; older bars are ignored.
    updateBar(bar) {
      if (lastTime !== null && bar.time < lastTime) return false;
      candles.update({ time: bar.time, open: bar.open, high: bar.high, low: bar.low, close: bar.close });
      volume.update(volumePoint(bar));
      const isNew = lastTime === null || bar.time > lastTime;
      lastTime = bar.time;
      return isNew;
    },
    lastBar() {
      const data = candles.data();
      return data.length ? data[data.length - 1] : null;
    },
    // result: the /api/v1/indicators/ answer ({ts: [...], outputs: {name: [values]}}).
    setIndicator(id, { overlay, result, label }) {
      let entry = indicators.get(id);
      const names = Object.keys(result.outputs);
      if (!entry) {
        const color = PALETTE[colorIndex++ % PALETTE.length];
        const pane = overlay ? 0 : chart.panes().length;
        const series = names.map((name, i) => {
          const common = { title: i === 0 ? label : "", lastValueVisible: i === 0 || name === "signal", priceLineVisible: false };
          if (name === "hist") return chart.addSeries(HistogramSeries, { ...common, color: "#58a6ff88", title: "" }, pane);
          return chart.addSeries(LineSeries, { ...common, ...styleFor(name, colorIndex, color), crosshairMarkerVisible: false }, pane);
        });
        entry = { overlay, series, names };
        indicators.set(id, entry);
        resize();
      }
      const times = result.ts.map(toTime);
      entry.names.forEach((name, i) => {
        const values = result.outputs[name] || [];
        const points = [];
        values.forEach((value, k) => {
          if (value === null) return;
          if (name === "hist") points.push({ time: times[k], value, color: value >= 0 ? "rgba(63,185,80,.6)" : "rgba(248,81,73,.6)" });
          else points.push({ time: times[k], value });
        });
        entry.series[i].setData(points);
      });
    },
    removeIndicator(id) {
      const entry = indicators.get(id);
      if (!entry) return;
      entry.series.forEach((s) => chart.removeSeries(s)); // an emptied pane goes with its last series
      indicators.delete(id);
      resize();
    },
    clearIndicators() {
      for (const id of [...indicators.keys()]) this.removeIndicator(id);
    },
    indicatorIds() {
      return [...indicators.keys()];
    },
    paneCount() {
      return chart.panes().length;
    },
  };
}
