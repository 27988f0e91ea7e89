/* mqadmin's one clock: every <time datetime> of a page, and the charts' axes, in one zone.
 *
 * The zone is the browser's unless the operator picks another in the top bar (remembered per browser
 * in localStorage). Times are 24-hour with the zone shown ("3 Dec 14:02:35 IST"), the year only when it
 * is not this year. <time data-when="ago"> reads "3 min ago" with the absolute time as its tooltip;
 * data-when="ms" adds milliseconds. Server-rendered text (UTC) is the fallback without script.
 * An ancestor's data-time-note="…" is added to the tooltip of the times inside it.
 *
 *   window.mqClock.zone()             the zone in use (IANA name)
 *   window.mqClock.format(date, opts) {ms: bool, date: bool (default true), seconds: bool (default true)}
 *   window.mqClock.zoneName(date)     "IST", "UTC", "GMT-5"
 *   window.mqClock.ago(date)          "12 s ago", "in 3 min"
 *   window.mqClock.localize(root)     rewrite the <time> elements under root (new fragments call it)
 * A change of zone dispatches the document event "mq:zone" (charts.js redraws its axes).
 */
(function () {
  "use strict";

  var STORE_KEY = "mqadmin.zone";
  var browserZone = "UTC";
  try { browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { /* old browser */ }
  var chosen = "";
  try { chosen = window.localStorage.getItem(STORE_KEY) || ""; } catch (e) { /* storage disabled */ }
  if (chosen && !valid(chosen)) chosen = "";
  var cache = {};

  function valid(zone) {
    try { new Intl.DateTimeFormat("en-GB", { timeZone: zone }); return true; } catch (e) { return false; }
  }
  function zone() { return chosen || browserZone; }

  function formatter(ms) {
    var key = zone() + (ms ? ".ms" : "");
    if (!cache[key]) {
      var opts = { timeZone: zone(), year: "numeric", month: "short", day: "numeric", hour: "2-digit",
                   minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short" };
      if (ms) opts.fractionalSecondDigits = 3;
      cache[key] = new Intl.DateTimeFormat("en-GB", opts);
    }
    return cache[key];
  }

  function parts(date, ms) {
    var out = {};
    formatter(ms).formatToParts(date).forEach(function (p) { out[p.type] = p.value; });
    return out;
  }

  function zoneName(date) { return parts(date || new Date(), false).timeZoneName || zone(); }

  function format(date, opts) {
    opts = opts || {};
    if (!(date instanceof Date)) date = new Date(date);
    if (isNaN(date.getTime())) return "—";
    var p = parts(date, opts.ms);
    var hour = p.hour === "24" ? "00" : p.hour;
    var time = hour + ":" + p.minute + (opts.seconds === false ? "" : ":" + p.second);
    if (opts.ms && p.fractionalSecond) time += "." + p.fractionalSecond;
    var text = time;
    if (opts.date !== false) {
      var thisYear = parts(new Date(), false).year;
      text = p.day + " " + p.month + (p.year !== thisYear ? " " + p.year : "") + " " + time;
    }
    return opts.zone === false ? text : text + " " + p.timeZoneName;
  }

  function ago(date) {
    var s = Math.round((Date.now() - date.getTime()) / 1000);
    var future = s < 0;
    s = Math.abs(s);
    var text;
    if (s < 60) text = s + " s";
    else if (s < 3600) text = Math.floor(s / 60) + " min";
    else if (s < 86400) text = Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    else text = Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
    return future ? "in " + text : text + " ago";
  }

  function localize(root) {
    var els = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) continue;
      // Templates not using the `when` filter: their text said "… ago" when they meant relative.
      var style = el.dataset.when || (/\bago\b/.test(el.textContent) ? "ago" : "s");
      if (!el.dataset.when) el.dataset.when = style;
      var absolute = format(date, { ms: style === "ms" });
      var text = style === "ago" ? ago(date) : absolute;
      if (el.textContent !== text) el.textContent = text;
      var title = style === "ago" ? absolute : date.toISOString().replace("T", " ").replace("Z", " UTC");
      // A server note about this time (a schedule's next run in the zone its cron reads) stays in the tooltip.
      var note = el.parentElement && el.parentElement.closest("[data-time-note]");
      el.title = note ? title + " · " + note.getAttribute("data-time-note") : title;
    }
  }

  function setZone(z) {
    chosen = z && z !== browserZone && valid(z) ? z : "";
    try {
      if (chosen) window.localStorage.setItem(STORE_KEY, chosen);
      else window.localStorage.removeItem(STORE_KEY);
    } catch (e) { /* not remembered */ }
    localize(document);
    fillZoneFields();
    document.dispatchEvent(new CustomEvent("mq:zone", { detail: zone() }));
  }

  // Forms that read times typed by people (the audit log's range) say which zone they were typed in.
  function fillZoneFields() {
    document.querySelectorAll("input[data-zone-field]").forEach(function (f) { f.value = zone(); });
    document.querySelectorAll("[data-zone-name]").forEach(function (el) { el.textContent = zone(); });
  }

  function picker() {
    var host = document.querySelector(".topbar-right");
    if (!host || document.getElementById("mq-zone")) return;
    var label = document.createElement("label");
    label.className = "zone-picker";
    var select = document.createElement("select");
    select.id = "mq-zone";
    select.setAttribute("aria-label", "Time zone");
    var zones = [];
    try { zones = Intl.supportedValuesOf("timeZone"); } catch (e) { zones = ["UTC"]; }
    var first = document.createElement("option");
    first.value = "";
    first.textContent = "browser (" + browserZone + ")";
    select.appendChild(first);
    ["UTC"].concat(zones.filter(function (z) { return z !== "UTC"; })).forEach(function (z) {
      var o = document.createElement("option");
      o.value = z;
      o.textContent = z;
      select.appendChild(o);
    });
    select.value = chosen;
    select.addEventListener("change", function () { setZone(select.value); });
    label.appendChild(select);
    host.insertBefore(label, host.firstChild);
  }

  window.mqClock = { zone: zone, format: format, zoneName: zoneName, ago: ago, localize: localize, setZone: setZone };

  function init() {
    picker();
    localize(document);
    fillZoneFields();
    // Relative times age while the page stays open.
    setInterval(function () {
      var rel = document.querySelectorAll('time[data-when="ago"]');
      for (var i = 0; i < rel.length; i++) {
        var t = ago(new Date(rel[i].getAttribute("datetime")));
        if (rel[i].textContent !== t) rel[i].textContent = t;
      }
    }, 5000);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
