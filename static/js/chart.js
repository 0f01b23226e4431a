/* The rollout detail's health chart: per-minute crash-free rate, boot success and median latency
   of the current ring, with the SLO goals as dashed lines; or, picked in [data-chart-kpi], one
   custom KPI of the plan's gates with its goal. Drawn with uPlot (vendored, MIT). */
(function () {
  "use strict";

  var REFRESH_MS = 10000;
  var COLORS = { crash: "#2563EB", boot: "#7C3AED", latency: "#0D9488", kpi: "#B45309" };

  function pct(v) {
    return v == null ? "—" : v.toFixed(1) + " %";
  }
  function msText(v) {
    return v == null ? "—" : Math.round(v) + " ms";
  }
  function kpiText(v) {
    if (v == null) return "—";
    return Math.abs(v) < 0.01 && v !== 0 ? v.toPrecision(2) : String(Math.round(v * 100) / 100);
  }

  function setup() {
    var el = document.getElementById("health-chart");
    if (!el || typeof window.uPlot !== "function") return;
    var minutes = parseInt(el.getAttribute("data-minutes") || "30", 10);
    var picker = document.querySelector("[data-chart-kpi]");
    var kpi = picker ? picker.value : "";
    var plot = null;
    var lastLoad = 0;
    var empty = el.querySelector("[data-chart-empty]");
    var summary = document.querySelector("[data-chart-summary]");

    function height() {
      return window.innerWidth < 640 ? 220 : 280;
    }

    function build(data, thresholds) {
      var pctValues = data[1].concat(data[2]).filter(function (v) {
        return v != null;
      });
      var low = Math.min.apply(null, pctValues.concat([thresholds.crash_free_rate * 100, thresholds.boot_success_rate * 100]));
      var latMax = Math.max.apply(
        null,
        data[3]
          .filter(function (v) {
            return v != null;
          })
          .concat([thresholds.median_latency_ms])
      );
      var opts = {
        width: Math.max(280, el.clientWidth),
        height: height(),
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
        scales: {
          x: { time: true },
          pct: { range: [Math.max(0, Math.floor(low - 1)), 100] },
          ms: { range: [0, Math.ceil(Math.max(latMax * 1.25, thresholds.median_latency_ms * 1.6) / 50) * 50] },
        },
        axes: [
          { stroke: "#6B7280", grid: { stroke: "#F3F4F6" }, ticks: { stroke: "#E5E7EB" } },
          {
            scale: "pct",
            stroke: "#6B7280",
            grid: { stroke: "#F3F4F6" },
            ticks: { stroke: "#E5E7EB" },
            values: function (u, vals) {
              return vals.map(function (v) {
                return v + "%";
              });
            },
            size: 52,
          },
          {
            scale: "ms",
            side: 1,
            stroke: "#6B7280",
            grid: { show: false },
            ticks: { stroke: "#E5E7EB" },
            values: function (u, vals) {
              return vals.map(function (v) {
                return v + " ms";
              });
            },
            size: 62,
          },
        ],
        series: [
          {},
          { label: "Crash-free", scale: "pct", stroke: COLORS.crash, width: 2, points: { size: 4, fill: COLORS.crash }, value: function (u, v) { return pct(v); } },
          { label: "Boot success", scale: "pct", stroke: COLORS.boot, width: 2, points: { size: 4, fill: COLORS.boot }, value: function (u, v) { return pct(v); } },
          { label: "Median latency", scale: "ms", stroke: COLORS.latency, width: 2, points: { size: 4, fill: COLORS.latency }, value: function (u, v) { return msText(v); } },
          { label: "Crash-free goal", scale: "pct", stroke: COLORS.crash, width: 1, dash: [6, 4], points: { show: false }, value: function (u, v) { return pct(v); } },
          { label: "Boot goal", scale: "pct", stroke: COLORS.boot, width: 1, dash: [6, 4], points: { show: false }, value: function (u, v) { return pct(v); } },
          { label: "Latency goal", scale: "ms", stroke: COLORS.latency, width: 1, dash: [6, 4], points: { show: false }, value: function (u, v) { return msText(v); } },
        ],
      };
      if (plot) plot.destroy();
      plot = new window.uPlot(opts, data, el);
    }

    function buildKpi(data, meta) {
      var values = data[1].filter(function (v) {
        return v != null;
      }).concat([meta.threshold]);
      var low = Math.min.apply(null, values);
      var high = Math.max.apply(null, values);
      var pad = (high - low) * 0.2 || Math.abs(high) * 0.2 || 1;
      var opts = {
        width: Math.max(280, el.clientWidth),
        height: height(),
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
        scales: { x: { time: true }, kpi: { range: [low - pad, high + pad] } },
        axes: [
          { stroke: "#6B7280", grid: { stroke: "#F3F4F6" }, ticks: { stroke: "#E5E7EB" } },
          { scale: "kpi", stroke: "#6B7280", grid: { stroke: "#F3F4F6" }, ticks: { stroke: "#E5E7EB" }, size: 60 },
        ],
        series: [
          {},
          { label: meta.label, scale: "kpi", stroke: COLORS.kpi, width: 2, points: { size: 4, fill: COLORS.kpi }, value: function (u, v) { return kpiText(v); } },
          { label: meta.label + " goal", scale: "kpi", stroke: COLORS.kpi, width: 1, dash: [6, 4], points: { show: false }, value: function (u, v) { return kpiText(v); } },
        ],
      };
      if (plot) plot.destroy();
      plot = new window.uPlot(opts, data, el);
      el.setAttribute("aria-label", "Line chart of " + meta.label + " per minute, with its goal as a dashed line");
    }

    function showKpi(points, meta) {
      var data = [[], [], []];
      var last = null;
      points.forEach(function (p) {
        var value = p.metrics && p.metrics[meta.metric] != null ? p.metrics[meta.metric] : null;
        data[0].push(p.t);
        data[1].push(value);
        data[2].push(meta.threshold);
        if (value != null) last = { t: p.t, value: value, devices: p.total_devices };
      });
      buildKpi(data, meta);
      if (empty) {
        empty.textContent = last ? "" : "No device reported " + meta.label + " in the last " + minutes + " minutes.";
        empty.hidden = !!last;
      }
      if (summary && last) {
        var when = new Date(last.t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        summary.textContent =
          "Latest minute (" + when + "): " + meta.label + " " + kpiText(last.value) + " (goal " +
          (meta.operator === ">=" ? "≥ " : "≤ ") + kpiText(meta.threshold) + "). The dashed line is the goal.";
      }
    }

    function load() {
      lastLoad = Date.now();
      var url = el.getAttribute("data-series-url") + "?minutes=" + minutes;
      fetch(url, { credentials: "same-origin" })
        .then(function (r) {
          return r.ok ? r.json() : null;
        })
        .then(function (body) {
          if (!body) return;
          var points = body.points || [];
          var t = body.thresholds;
          var data = [[], [], [], [], [], [], []];
          var any = false;
          points.forEach(function (p) {
            data[0].push(p.t);
            data[1].push(p.crash_free_rate == null ? null : p.crash_free_rate * 100);
            data[2].push(p.boot_success_rate == null ? null : p.boot_success_rate * 100);
            data[3].push(p.median_latency_ms);
            data[4].push(t.crash_free_rate * 100);
            data[5].push(t.boot_success_rate * 100);
            data[6].push(t.median_latency_ms);
            if (p.total_devices) any = true;
          });
          if (!points.length) {
            if (empty) empty.textContent = "The chart starts when the rollout does.";
            return;
          }
          var meta = (body.kpis || []).filter(function (k) {
            return k.metric === kpi;
          })[0];
          if (meta) {
            showKpi(points, meta);
            return;
          }
          el.setAttribute("aria-label", "Line chart of crash-free rate, boot success rate and median latency per minute, with their SLO goals as dashed lines");
          build(data, t);
          if (empty) {
            empty.textContent = any ? "" : "No health check from this ring in the last " + minutes + " minutes.";
            empty.hidden = any;
          }
          var last = null;
          for (var i = points.length - 1; i >= 0; i--) {
            if (points[i].total_devices) {
              last = points[i];
              break;
            }
          }
          if (summary && last) {
            var when = new Date(last.t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
            summary.textContent =
              "Latest minute (" + when + "): crash-free " + pct(last.crash_free_rate * 100) + ", boot success " +
              pct(last.boot_success_rate * 100) + ", median latency " + msText(last.median_latency_ms) + ", from " +
              last.total_devices + (last.total_devices === 1 ? " device" : " devices") + ". Dashed lines are the goals.";
          }
        })
        .catch(function () {});
    }

    document.querySelectorAll("[data-chart-range]").forEach(function (button) {
      button.addEventListener("click", function () {
        minutes = parseInt(button.getAttribute("data-chart-range"), 10);
        document.querySelectorAll("[data-chart-range]").forEach(function (b) {
          b.setAttribute("aria-pressed", b === button ? "true" : "false");
        });
        load();
      });
    });

    if (picker) {
      picker.addEventListener("change", function () {
        kpi = picker.value;
        load();
      });
    }

    if ("ResizeObserver" in window) {
      new ResizeObserver(function () {
        if (plot) plot.setSize({ width: Math.max(280, el.clientWidth), height: height() });
      }).observe(el);
    }

    document.addEventListener("saferoll:message", function (event) {
      var type = event.detail && event.detail.type;
      // After the page's own fragment refresh, which the same message triggers, so as not to slow it down.
      if ((type === "health_update" || type === "evaluation" || type === "rollout_update") && Date.now() - lastLoad > 3000) {
        setTimeout(load, 700);
      }
    });
    setInterval(function () {
      if (!document.hidden && Date.now() - lastLoad >= REFRESH_MS) load();
    }, REFRESH_MS);
    load();
  }

  document.addEventListener("DOMContentLoaded", setup);
})();
