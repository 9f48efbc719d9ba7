// Metric charts: <div data-chart-src="/charts/metric?run=…&key=…&x=step" data-smooth="0.6" data-log="1">.
// The server sends each run's (downsampled) points; this aligns them on one x
// array (uPlot wants one), smooths (EMA) and draws. Charts whose element left
// the page are destroyed after each swap, so navigating never leaks canvases.
"use strict";
(function () {
  const COLORS = ["#3b82f6", "#ef4444", "#10b981", "#f59e0b", "#8b5cf6", "#ec4899", "#14b8a6", "#f97316", "#6366f1", "#84cc16"];
  const live = new Set();

  // TensorBoard's debiased EMA: early points are not dragged towards zero.
  function smooth(ys, w) {
    if (!(w > 0)) return ys;
    let last = 0, n = 0;
    return ys.map((y) => {
      if (y == null) return null;
      last = last * w + (1 - w) * y;
      n++;
      return last / (1 - Math.pow(w, n));
    });
  }

  // One shared, sorted x array; each series gets null where it has no point.
  function align(series) {
    if (series.length === 1) return [series[0].x, series[0].y];
    const xs = [...new Set(series.flatMap((s) => s.x))].sort((a, b) => a - b);
    const at = new Map(xs.map((x, i) => [x, i]));
    return [xs, ...series.map((s) => {
      const ys = new Array(xs.length).fill(null);
      s.x.forEach((x, i) => { ys[at.get(x)] = s.y[i]; });
      return ys;
    })];
  }

  function message(el, text) {
    el.textContent = "";
    const p = document.createElement("p");
    p.className = "muted chart-message";
    p.textContent = text;
    el.appendChild(p);
  }

  function draw(el, body) {
    const mode = body.x;
    const log = el.dataset.log === "1";
    const w = parseFloat(el.dataset.smooth) || 0;
    const series = body.series.filter((s) => s.x.length);
    if (!series.length) return message(el, "No points for " + body.key + ".");
    const prepared = series.map((s) => ({
      x: mode === "time" ? s.x.map((x) => x / 1000) : s.x,
      y: smooth(s.y, w).map((y) => (log && !(y > 0) ? null : y)),
    }));
    // Mid-grey axes read on both palettes, so a theme switch needs no redraw
    // (the legend is HTML and follows the CSS variables by itself).
    const line = "rgba(128,128,128,.25)";
    const axis = { stroke: "#8a93a3", grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
    const opts = {
      width: el.clientWidth || 400,
      height: parseInt(el.dataset.height, 10) || 220,
      // A metric logged once is one x value: widen the range so its point shows.
      scales: {
        x: { time: mode === "time", range: (u, lo, hi) => (lo === hi ? [lo - 1, hi + 1] : [lo, hi]) },
        y: { distr: log ? 3 : 1 },
      },
      axes: [axis, Object.assign({ size: 60 }, axis)],
      series: [{ label: { step: "step", time: "time", relative: "seconds" }[mode] || "x" }].concat(
        series.map((s, i) => ({
          label: s.run_name || s.run_id.slice(0, 8),
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          spanGaps: true,
          // Dots when there are few points (a single value draws no line).
          points: { show: s.x.length < 60, size: 6 },
        })),
      ),
      legend: { show: true, live: series.length < 20 },
    };
    el.textContent = "";
    const plot = new uPlot(opts, align(prepared), el);
    el.dataset.points = String(series.reduce((n, s) => n + s.total_points, 0));
    const resize = new ResizeObserver(() => {
      if (el.isConnected && el.clientWidth) plot.setSize({ width: el.clientWidth, height: opts.height });
    });
    resize.observe(el);
    live.add({ el, plot, resize });
  }

  function sweep() {
    for (const c of live) {
      if (!c.el.isConnected) {
        c.resize.disconnect();
        c.plot.destroy();
        live.delete(c);
      }
    }
  }
  document.addEventListener("htmx:afterSwap", sweep);

  Keel.widget("[data-chart-src]", (el) => {
    message(el, "Loading…");
    Keel.fetchJSON(el.dataset.chartSrc)
      .then((body) => { if (el.isConnected) draw(el, body); })
      .catch((e) => message(el, "Could not load this chart (" + e.message + ")."));
  });

  // The smoothing slider shows its value while it moves (the URL changes on release).
  Keel.widget(".chart-controls", (form) => {
    form.addEventListener("input", (e) => {
      const out = e.target.name === "smooth" && e.target.parentNode.querySelector("output");
      if (out) out.value = e.target.value;
    });
  });
})();
