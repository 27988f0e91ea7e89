/* mqadmin live updates: one websocket to #live-status[data-ws-path], samples applied to the page.
 *
 * - Elements with data-live="<queue name or _total>.<field>" get the field's value as text (the queue
 *   name may contain dots: the field is what follows the last one). Fields: ready, in_flight, delayed,
 *   dead, depth, oldest_ready_age, rate_in, rate_out, rate_failed, workers.
 * - #live-status shows the connection state (data-state = connecting | live | waiting | reconnecting |
 *   paused | off | denied) and the refresh choice: off / 1 s / 5 s / 15 s. The choice throttles how
 *   often samples are applied; "off" closes the socket. It is remembered per browser.
 * - Hidden tab: the socket closes; visible again: it reopens and charts reload their history.
 * - Lost connection: reconnects with exponential backoff (1 s doubling to 30 s, with jitter).
 *   Close code 4403 (no permission) is final.
 * - Elements with data-health="<queue name>" (health badges), data-health-reasons="<queue name>" and
 *   data-health-summary get the sample's health (see applyHealth).
 * - Each applied sample is also dispatched as the document event "mq:sample" (charts.js listens).
 * Only textContent is written: data never becomes markup.
 */
(function () {
  "use strict";

  // -- formatting: letter for letter the server's (queues/formatting.py format_age, _rate, _count) --
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function formatAge(s) {
    if (s === null || s === undefined) return "—";
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + pad(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + pad(Math.floor((s % 3600) / 60)) + "m";
    return Math.floor(s / 86400) + "d" + pad(Math.floor((s % 86400) / 3600)) + "h";
  }
  function formatRate(r) {
    if (r === null || r === undefined) return "—";
    return (r < 100 ? r.toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 })
                    : Math.round(r).toLocaleString("en-US")) + "/s";
  }
  function formatCount(n) {
    return n === null || n === undefined ? "—" : Math.round(n).toLocaleString("en-US");
  }
  function format(field, value) {
    if (field === "oldest_ready_age") return formatAge(value);
    if (field.indexOf("rate_") === 0) return formatRate(value);
    return formatCount(value);
  }
  // charts.js formats its axes and legends with these.
  window.mqFormat = { age: formatAge, rate: formatRate, count: formatCount, field: format };

  var box = document.getElementById("live-status");
  if (!box || !box.dataset.wsPath || !window.WebSocket) return;

  var CHOICES = [["off", "off"], ["1", "1 s"], ["5", "5 s"], ["15", "15 s"]];
  var STORE_KEY = "mqadmin.live.refresh";
  var FORBIDDEN = 4403;
  var LABELS = {
    connecting: "connecting…", live: "live", waiting: "live · no samples", reconnecting: "reconnecting",
    paused: "paused (tab hidden)", off: "updates off", denied: "live updates not allowed",
  };
  var PILLS = { connecting: "stale", live: "live", waiting: "stale", reconnecting: "stale", paused: "stopped",
                off: "stopped", denied: "dead" };

  var refresh = loadChoice();
  var ws = null;
  var state = "";
  var attempts = 0;
  var retryTimer = null;
  var retryAt = 0;
  var applyTimer = null;
  var pending = null;
  var lastApplied = 0;
  var lastMessage = 0;
  var interval = 1;
  var everLive = false;

  // -- the status box -------------------------------------------------------------------------------
  var pill = document.createElement("span");
  var select = document.createElement("select");
  var label = document.createElement("label");
  pill.className = "pill live-state";
  pill.setAttribute("role", "status");
  pill.setAttribute("aria-live", "polite");
  label.className = "live-refresh";
  label.appendChild(document.createTextNode("Refresh "));
  CHOICES.forEach(function (c) {
    var o = document.createElement("option");
    o.value = c[0];
    o.textContent = c[1];
    select.appendChild(o);
  });
  select.value = refresh;
  select.setAttribute("aria-label", "Live refresh");
  label.appendChild(select);
  box.textContent = "";
  box.appendChild(pill);
  box.appendChild(document.createTextNode(" "));
  box.appendChild(label);

  function loadChoice() {
    try {
      var v = window.localStorage.getItem(STORE_KEY);
      if (CHOICES.some(function (c) { return c[0] === v; })) return v;
    } catch (e) { /* storage disabled: default */ }
    return "1";
  }
  function saveChoice(v) {
    try { window.localStorage.setItem(STORE_KEY, v); } catch (e) { /* not remembered */ }
  }

  function setState(next, detail) {
    state = next;
    box.dataset.state = next;
    pill.className = "pill live-state pill-" + PILLS[next];
    pill.textContent = LABELS[next] + (detail ? " " + detail : "");
    if (lastMessage) box.title = "last sample " + new Date(lastMessage).toLocaleTimeString();
  }

  // -- applying samples -----------------------------------------------------------------------------
  function apply(sample) {
    var queues = sample.queues || {};
    var els = document.querySelectorAll("[data-live]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var key = el.getAttribute("data-live");
      var dot = key.lastIndexOf(".");
      if (dot < 1) continue;
      var name = key.slice(0, dot);
      var field = key.slice(dot + 1);
      var row = name === "_total" ? sample.total : queues[name];
      if (!row || !Object.prototype.hasOwnProperty.call(row, field)) continue;
      var text = format(field, row[field]);
      if (el.textContent !== text) el.textContent = text;
    }
    applyHealth(sample);
    lastApplied = Date.now();
    document.dispatchEvent(new CustomEvent("mq:sample", { detail: sample }));
  }

  // -- health badges (helper "health": queues/queue_health.py, partials/health_badge.html) -----------
  // Each queue's row in a sample carries health = {state, label, pill, detail, reasons}; the sample's
  // health.summary is the overview's "2 stalled, 1 backing up".
  function applyHealth(sample) {
    var queues = sample.queues || {};
    var i, el, row;
    var badges = document.querySelectorAll("[data-health]");
    for (i = 0; i < badges.length; i++) {
      el = badges[i];
      row = queues[el.getAttribute("data-health")];
      if (!row || !row.health) continue;
      if (el.getAttribute("data-health-state") !== row.health.state) {
        el.setAttribute("data-health-state", row.health.state);
        el.className = "pill pill-" + row.health.pill + " health-badge";
        el.textContent = row.health.label;
      }
      el.title = row.health.detail;
    }
    var lines = document.querySelectorAll("[data-health-reasons]");
    for (i = 0; i < lines.length; i++) {
      el = lines[i];
      row = queues[el.getAttribute("data-health-reasons")];
      if (!row || !row.health) continue;
      el.hidden = !row.health.reasons.length;
      if (el.textContent !== row.health.detail) el.textContent = row.health.detail;
    }
    var summary = document.querySelector("[data-health-summary]");
    if (summary && sample.health) {
      if (summary.textContent !== sample.health.summary) summary.textContent = sample.health.summary;
      var card = summary.closest(".card");
      if (card) card.classList.toggle("card-alert", Object.keys(sample.health.counts || {}).length > 0);
    }
  }

  function applyPending() {
    applyTimer = null;
    if (pending) {
      var s = pending;
      pending = null;
      apply(s);
    }
  }

  function onSample(sample) {
    lastMessage = Date.now();
    interval = sample.interval || 1;
    everLive = true;
    if (state !== "live") setState("live");
    pending = sample;
    var every = parseInt(refresh, 10) * 1000;
    var since = Date.now() - lastApplied;
    // A little slack so a 1 s choice applies every 1 s sample even when ticks arrive a bit early.
    if (since >= every - 150) {
      if (applyTimer) { clearTimeout(applyTimer); applyTimer = null; }
      applyPending();
    } else if (!applyTimer) {
      applyTimer = setTimeout(applyPending, every - since);
    }
  }

  // -- the socket -----------------------------------------------------------------------------------
  function url() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + box.dataset.wsPath;
  }

  function connect() {
    if (ws || refresh === "off" || document.hidden || state === "denied") return;
    clearTimeout(retryTimer);
    retryTimer = null;
    setState(attempts ? "reconnecting" : "connecting");
    var sock = new WebSocket(url());
    ws = sock;
    sock.onopen = function () {
      attempts = 0;
      lastMessage = Date.now();
      setState("waiting");
    };
    sock.onmessage = function (ev) {
      var sample;
      try { sample = JSON.parse(ev.data); } catch (e) { return; }
      if (sample && sample.type === "sample") onSample(sample);
    };
    sock.onclose = function (ev) {
      if (ws !== sock) return;  // closed on purpose and already replaced or paused
      ws = null;
      if (ev.code === FORBIDDEN) {
        setState("denied");
        return;
      }
      scheduleReconnect();
    };
  }

  function disconnect() {
    var sock = ws;
    ws = null;
    if (sock) sock.close(1000, "bye");
    clearTimeout(retryTimer);
    retryTimer = null;
    clearTimeout(applyTimer);
    applyTimer = null;
    pending = null;
  }

  function scheduleReconnect() {
    var base = Math.min(30, Math.pow(2, attempts));
    var delay = base * (0.8 + Math.random() * 0.4);
    attempts += 1;
    retryAt = Date.now() + delay * 1000;
    setState("reconnecting", "in " + Math.ceil(delay) + " s");
    retryTimer = setTimeout(connect, delay * 1000);
  }

  function resume() {
    if (refresh === "off" || document.hidden || state === "denied") return;
    attempts = 0;
    connect();
    if (everLive) document.dispatchEvent(new CustomEvent("mq:resume"));
  }

  select.addEventListener("change", function () {
    refresh = select.value;
    saveChoice(refresh);
    if (refresh === "off") {
      disconnect();
      setState("off");
    } else if (!ws) {
      resume();
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      if (refresh !== "off" && state !== "denied") {
        disconnect();
        setState("paused");
      }
    } else {
      resume();
    }
  });

  // Open but silent: say so (the sampler may not be running anywhere); count down a pending retry.
  setInterval(function () {
    if (state === "live" && Date.now() - lastMessage > Math.max(5, 3 * interval) * 1000) setState("waiting");
    if (state === "reconnecting" && retryTimer) {
      setState("reconnecting", "in " + Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) + " s");
    }
  }, 1000);

  window.addEventListener("pagehide", disconnect);

  if (refresh === "off") setState("off");
  else if (document.hidden) setState("paused");
  else connect();
})();
