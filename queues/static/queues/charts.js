/* mqadmin dashboard charts: uPlot (from npm, served as static/vendor/uplot/) over /api/series/, then
 * kept current by the samples that live.js applies (the "mq:sample" event).
 *
 *   <div class="chart" data-chart="throughput|depth|rates|age" data-queue="NAME or empty" data-window="300">
 *   <span class="sparkline" data-queue="NAME"></span>        (or class="chart sparkline" with data-chart)
 *
 * A chart at 1 s resolution appends each applied sample; a coarser one (long windows) refetches once
 * per resolution step. Text comes from data only through textContent and uPlot's own text nodes.
 *
 * Readability: a history younger than the window fills the chart (the window shrinks to the data, a
 * minute at least); a "log" toggle under each chart (remembered per browser) puts the y axis on an
 * asinh scale, linear near zero and logarithmic above, so one burst no longer flattens the rest;
 * axes have few ticks with formatted values; times are in window.mqClock's zone, 24-hour, and the zone
 * is written under the chart; the legend names the lines without a row of empty values. Sparklines
 * share one y scale, written in their column's header ("0–1,234").
 */
(function () {
  "use strict";

  // The URL is reversed on the server (any mount prefix) and handed over on the script tag.
  var SERIES_URL = document.currentScript.dataset.seriesUrl;
  var MAX_FETCHES = 4;
  var MIN_SPAN = 60;
  var SCALE_KEY = "mqadmin.chart.scale";
  var logScale = false;
  try { logScale = window.localStorage.getItem(SCALE_KEY) === "log"; } catch (e) { /* linear */ }
  var sparkMax = 1;

  var KINDS = {
    throughput: {
      unit: "rate",
      lines: [["rate_in", "sent", "--accent"], ["rate_out", "acked", "--ok"], ["rate_failed", "failed", "--bad"]],
    },
    rates: {
      unit: "rate",
      lines: [["rate_in", "in", "--accent"], ["rate_out", "out", "--ok"], ["rate_failed", "failed", "--bad"]],
    },
    depth: {
      unit: "count",
      lines: [["ready", "ready", "--accent"], ["in_flight", "in flight", "--violet"],
              ["delayed", "delayed", "--warn"], ["dead", "dead", "--bad"]],
    },
    age: { unit: "age", lines: [["oldest_ready_age", "oldest ready", "--warn"]] },
    sparkline: { unit: "count", lines: [["depth", "depth", "--accent"]] },
  };
  var FALLBACK_COLORS = { "--accent": "#2456c7", "--ok": "#1f7a3f", "--bad": "#b42318", "--warn": "#9a5b00",
                          "--violet": "#6b3fb8" };

  function color(name) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || FALLBACK_COLORS[name] || "#555";
  }

  function formats() {
    // live.js defines the wording shared with the server-rendered pages; plain numbers otherwise.
    var f = window.mqFormat;
    var plain = function (v) { return v === null || v === undefined ? "—" : String(v); };
    return { rate: f ? f.rate : plain, age: f ? f.age : plain, count: f ? f.count : plain };
  }

  function say(el, text) {
    var p = el.querySelector(".chart-empty");
    if (!p) {
      p = document.createElement("p");
      p.className = "chart-empty";
      el.appendChild(p);
    }
    p.textContent = text;
    p.hidden = !text;
  }

  // A small queue of fetches: an overview with fifty sparklines must not open fifty requests at once.
  var queued = [];
  var running = 0;
  function fetchJSON(url) {
    return new Promise(function (resolve, reject) {
      queued.push(function () {
        running += 1;
        fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
          .then(function (r) {
            return r.json().catch(function () { return { error: "HTTP " + r.status }; }).then(function (body) {
              if (!r.ok) throw new Error(body.error || "HTTP " + r.status);
              return body;
            });
          })
          .then(resolve, reject)
          .finally(function () { running -= 1; pump(); });
      });
      pump();
    });
  }
  function pump() {
    while (running < MAX_FETCHES && queued.length) queued.shift()();
  }

  function Chart(el) {
    this.el = el;
    this.spark = el.classList.contains("sparkline");
    var kind = this.spark ? "sparkline" : el.dataset.chart;
    this.kind = KINDS[kind] ? kind : null;
    this.queue = el.dataset.queue || "";
    this.window = parseInt(el.dataset.window || "300", 10) || 300;
    this.resolution = 1;
    this.fetchedAt = 0;
    this.plot = null;
    this.data = null;
  }

  Chart.prototype.fields = function () {
    return KINDS[this.kind].lines.map(function (l) { return l[0]; });
  };

  Chart.prototype.load = function () {
    var self = this;
    if (!this.kind) {
      say(this.el, "Unknown chart " + JSON.stringify(this.el.dataset.chart || ""));
      return Promise.resolve();
    }
    var url = SERIES_URL + "?queue=" + encodeURIComponent(this.queue) + "&window=" + this.window;
    this.fetchedAt = Date.now();
    return fetchJSON(url).then(function (body) {
      self.resolution = body.resolution || 1;
      var data = [body.t];
      self.fields().forEach(function (f) { data.push(body.series[f] || body.t.map(function () { return null; })); });
      self.draw(data);
    }, function (err) {
      say(self.el, "History unavailable: " + err.message);
    });
  };

  Chart.prototype.size = function () {
    var w = this.el.clientWidth || (this.spark ? 120 : 400);
    var h = this.el.clientHeight || (this.spark ? 26 : 180);
    if (!this.spark) {
      var legend = this.plot && this.plot.root.querySelector(".u-legend");
      h = Math.max(120, h - (legend ? legend.offsetHeight : 28));
    }
    return { width: Math.max(40, w), height: h };
  };

  Chart.prototype.xRange = function () {
    // The window ending now; a history younger than the window fills the chart instead of sitting in a
    // sliver at its right edge (a minute at least, so the first points are not stretched edge to edge).
    var span = this.window;
    return function (u, min, max) {
      var end = Math.max(Date.now() / 1000, max || 0);
      var t = u.data && u.data[0];
      var start = end - span;
      if (t && t.length && t[0] > start) start = Math.min(t[0], end - MIN_SPAN);
      return [start, end];
    };
  };

  function clock() {
    return window.mqClock || { zone: function () { return "UTC"; }, zoneName: function () { return "UTC"; },
      format: function (d) { return d.toISOString().slice(11, 19); } };
  }

  // Time labels: 24-hour in the page's zone; seconds only on short spans, the date only on long ones.
  function timeValues(u, ticks) {
    var range = u.scales.x.max - u.scales.x.min;
    return ticks.map(function (t) {
      return clock().format(new Date(t * 1000), { zone: false, date: range > 86400, seconds: range <= 600 });
    });
  }

  Chart.prototype.options = function () {
    var unit = KINDS[this.kind].unit;
    var fmt = formats()[unit];
    var series = [{ value: function (u, v) { return v === null ? "" : clock().format(new Date(v * 1000)); } }];
    var zone = clock().zone();
    var tzDate = function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), zone); };
    KINDS[this.kind].lines.forEach(function (l) {
      series.push({ label: l[1], stroke: color(l[2]), width: 1.5, spanGaps: false,
                    value: function (u, v) { return fmt(v); } });
    });
    var size = this.size();
    if (this.spark) {
      // One scale for every sparkline of the page (the largest depth among them), written in the header.
      return { width: size.width, height: size.height, series: series, legend: { show: false },
               cursor: { show: false }, select: { show: false }, tzDate: tzDate,
               axes: [{ show: false }, { show: false }],
               scales: { x: { time: true, range: this.xRange() },
                         y: { range: function () { return [0, Math.max(1, sparkMax)]; } } } };
    }
    var y = logScale
      ? { distr: 4, asinh: 1, range: function (u, min, max) { return [0, max > 0 ? max * 1.5 : 1]; } }
      : { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } };
    // On the log scale: 0 and the powers of ten up to the top, nothing between (uPlot's own log ticks
    // crowd the low decades with unlabeled marks).
    var logSplits = function (u) {
      var out = [0];
      for (var p = 1; p <= u.scales.y.max; p *= 10) out.push(p);
      return out;
    };
    // The page's own key (the overview's throughput) makes uPlot's legend redundant.
    var ownKey = this.el.parentNode && this.el.parentNode.querySelector(".legend");
    return {
      width: size.width, height: size.height, series: series, tzDate: tzDate,
      legend: { show: !ownKey, live: false },
      scales: { x: { time: true, range: this.xRange() }, y: y },
      axes: [
        { space: 90, values: timeValues },
        { size: 64, space: 36, splits: logScale ? logSplits : undefined, values: function (u, ticks) {
          // Whole numbers only for counts; asinh ticks can land on fractions.
          return ticks.map(function (v) { return unit === "count" && v % 1 ? "" : fmt(v); });
        } },
      ],
    };
  };

  Chart.prototype.draw = function (data) {
    this.data = data;
    if (this.spark) sparkScale();
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    say(this.el, data[0].length ? "" : (this.spark ? "" : "No history yet: the sampler records once a second."));
    this.plot = new window.uPlot(this.options(), data, this.el);
    if (!this.spark) this.tools();
    var self = this;
    if (window.ResizeObserver) {
      new ResizeObserver(function () { if (self.plot) self.plot.setSize(self.size()); }).observe(this.el);
    }
  };

  // Under a chart: the zone its times are in, and the linear/log toggle (shared by every chart).
  Chart.prototype.tools = function () {
    var bar = this.bar;
    if (!bar) {
      bar = document.createElement("div");
      bar.className = "chart-tools";
      var z = document.createElement("span");
      z.className = "chart-zone";
      var b = document.createElement("button");
      b.type = "button";
      b.className = "btn btn-small btn-quiet chart-scale";
      b.addEventListener("click", function () { setLog(!logScale); });
      bar.appendChild(z);
      bar.appendChild(b);
      // Beside the chart, not in it: the chart's box sizes the plot.
      this.el.insertAdjacentElement("afterend", bar);
      this.bar = bar;
    }
    var zone = bar.querySelector(".chart-zone");
    zone.textContent = "times in " + clock().zoneName() + " (" + clock().zone() + ")";
    this.el.dataset.zone = clock().zoneName();
    var button = bar.querySelector(".chart-scale");
    button.textContent = logScale ? "log scale: on" : "log scale: off";
    button.setAttribute("aria-pressed", logScale ? "true" : "false");
  };

  // Options that uPlot reads only at creation (scales, time zone): a new plot on the same data.
  Chart.prototype.rebuild = function () {
    if (!this.plot) return;
    this.plot.destroy();
    this.plot = null;
    if (this.data) this.draw(this.data);
  };

  Chart.prototype.onSample = function (sample) {
    if (!this.data || !this.kind) return;
    if (this.resolution > 1) {
      // Coarse history: one new point per step, read back from the server.
      if (Date.now() - this.fetchedAt >= this.resolution * 1000) this.load();
      return;
    }
    var row = this.queue ? (sample.queues || {})[this.queue] : sample.total;
    if (!row) return;
    var t = this.data[0];
    if (t.length && sample.at <= t[t.length - 1]) return;
    t.push(sample.at);
    var self = this;
    this.fields().forEach(function (f, i) {
      var v = row[f];
      self.data[i + 1].push(v === undefined ? null : v);
    });
    var cutoff = sample.at - this.window;
    var drop = 0;
    while (drop < t.length && t[drop] < cutoff) drop += 1;
    if (drop) this.data = this.data.map(function (col) { return col.slice(drop); });
    say(this.el, "");
    this.plot.setData(this.data);
  };

  var charts = [];

  function setLog(on) {
    logScale = on;
    try { window.localStorage.setItem(SCALE_KEY, on ? "log" : "linear"); } catch (e) { /* not remembered */ }
    charts.forEach(function (c) { if (!c.spark) c.rebuild(); });
  }

  // The shared sparkline scale: the largest depth any sparkline of the page shows now (once per sample,
  // not per sparkline); shown in the column's header.
  function sparkScale() {
    var before = sparkMax;
    var top = 1;
    charts.forEach(function (c) {
      if (!c.spark || !c.data) return;
      for (var i = 1; i < c.data.length; i++) {
        c.data[i].forEach(function (v) { if (v !== null && v > top) top = v; });
      }
    });
    sparkMax = top;
    if (sparkMax !== before) {
      charts.forEach(function (c) { if (c.spark && c.plot) c.plot.setData(c.data); });
    }
    var cell = document.querySelector(".spark-cell");
    var table = cell && cell.closest("table");
    var th = table && table.querySelectorAll("thead th")[cell.cellIndex];
    if (!th) return;
    var label = th.querySelector(".spark-scale");
    if (!label) {
      label = document.createElement("span");
      label.className = "spark-scale small muted";
      label.title = "Every sparkline shares this scale: depth from 0 to the largest in the table";
      th.appendChild(document.createTextNode(" "));
      th.appendChild(label);
    }
    var text = "0–" + formats().count(sparkMax);
    if (label.textContent !== text) label.textContent = text;
  }

  function init() {
    if (typeof window.uPlot !== "function") {
      document.querySelectorAll(".chart[data-chart], .sparkline").forEach(function (el) {
        if (!el.classList.contains("sparkline")) say(el, "Charts unavailable: uPlot is not installed (run make).");
      });
      return;
    }
    document.querySelectorAll(".chart[data-chart], .sparkline").forEach(function (el) {
      var c = new Chart(el);
      charts.push(c);
      c.load();
    });
    document.addEventListener("mq:sample", function (ev) {
      charts.forEach(function (c) { c.onSample(ev.detail); });
      if (charts.some(function (c) { return c.spark; })) sparkScale();
    });
    // Back from a hidden tab or from "off": the pushes missed meanwhile are in the history.
    document.addEventListener("mq:resume", function () {
      charts.forEach(function (c) { c.load(); });
    });
    // Another zone picked in the top bar: the axes follow it.
    document.addEventListener("mq:zone", function () {
      charts.forEach(function (c) { c.rebuild(); });
    });
    window.mqCharts = charts;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
