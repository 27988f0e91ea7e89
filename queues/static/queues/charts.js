/* mqadmin dashboard charts: uPlot (from npm, served as static/vendor/uplot/) over /api/series/, then
 * kept current by the samples that live.js applies (the "mq:sample" event).
 *
 *   <div class="chart" data-chart="throughput|depth|rates|age" data-queue="NAME or empty" data-window="300">
 *   <span class="sparkline" data-queue="NAME"></span>        (or class="chart sparkline" with data-chart)
 *
 * A chart at 1 s resolution appends each applied sample; a coarser one (long windows) refetches once
 * per resolution step. Text comes from data only through textContent and uPlot's own text nodes.
 */
(function () {
  "use strict";

  // The URL is reversed on the server (any mount prefix) and handed over on the script tag.
  var SERIES_URL = document.currentScript.dataset.seriesUrl;
  var MAX_FETCHES = 4;

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
    // The whole window, ending now: a young history sits at the right edge instead of filling the chart.
    var span = this.window;
    return function (u, min, max) {
      var end = Math.max(Date.now() / 1000, max || 0);
      return [end - span, end];
    };
  };

  Chart.prototype.options = function () {
    var unit = KINDS[this.kind].unit;
    var fmt = formats()[unit];
    var series = [{ value: function (u, v) { return v === null ? "—" : new Date(v * 1000).toLocaleTimeString(); } }];
    KINDS[this.kind].lines.forEach(function (l) {
      series.push({ label: l[1], stroke: color(l[2]), width: 1.5, spanGaps: false,
                    value: function (u, v) { return fmt(v); } });
    });
    var size = this.size();
    if (this.spark) {
      return { width: size.width, height: size.height, series: series, legend: { show: false },
               cursor: { show: false }, select: { show: false },
               axes: [{ show: false }, { show: false }],
               scales: { x: { time: true, range: this.xRange() },
                         y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } } };
    }
    return {
      width: size.width, height: size.height, series: series,
      scales: { x: { time: true, range: this.xRange() },
                y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      axes: [{}, { size: 64, values: function (u, ticks) { return ticks.map(fmt); } }],
    };
  };

  Chart.prototype.draw = function (data) {
    this.data = data;
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    say(this.el, data[0].length ? "" : (this.spark ? "" : "No history yet: the sampler records once a second."));
    this.plot = new window.uPlot(this.options(), data, this.el);
    var self = this;
    if (window.ResizeObserver) {
      new ResizeObserver(function () { if (self.plot) self.plot.setSize(self.size()); }).observe(this.el);
    }
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

  function init() {
    var charts = [];
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
    });
    // Back from a hidden tab or from "off": the pushes missed meanwhile are in the history.
    document.addEventListener("mq:resume", function () {
      charts.forEach(function (c) { c.load(); });
    });
    window.mqCharts = charts;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
