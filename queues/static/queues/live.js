/* mqadmin live updates: one websocket to #live-status[data-ws-path], samples applied to the page.
 *
 * - Elements with data-live="<queue name or _total>.<field>" get the field's value as text (the queue
 *   name may contain dots: the field is what follows the last one). Fields: ready, in_flight, delayed,
 *   dead, depth, oldest_ready_age, rate_in, rate_out, rate_failed, workers; _total also has
 *   failed_last_hour.
 * - Redrive rows (tr[data-redrive="<id>"]) get their progress, moved/total and state from the
 *   sample's "redrives"; the workers page (#workers-live) its numbers from "workers", and the page's
 *   table again (fetched, server-rendered) when a worker starts or stops.
 * - <section id="…" data-live-fragment="<queue>.<field>" data-live-value="<as rendered>">: fetched
 *   again from the server when that number changes (lists that a number alone cannot update).
 * - #live-status shows the connection state (data-state = connecting | live | waiting | reconnecting |
 *   paused | off | denied) and the refresh choice: off / 1 s / 5 s / 15 s. The choice throttles how
 *   often samples are applied; "off" closes the socket. It is remembered per browser.
 * - The page was rendered with current numbers, so it starts "live" while they are fresh; when no
 *   sample has come for a while (socket down, sampler stopped) it says "updated 12 s ago".
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
    connecting: "live", live: "live", waiting: "updated", reconnecting: "reconnecting",
    paused: "paused (tab hidden)", off: "updates off", denied: "live updates not allowed",
  };
  var PILLS = { connecting: "live", live: "live", waiting: "stale", reconnecting: "stale", paused: "stopped",
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
  // The page's own numbers count as the first sample: they were read when it was rendered.
  var lastMessage = Date.now();
  var lastData = Date.now();
  var interval = 1;
  var everLive = false;
  // When the numbers on the page were read (server clock, epoch seconds): first the page's own, then
  // each sample's "at". A new socket first gets the server's newest sample, which may have been read
  // before this page was rendered; applying it would put older numbers over newer ones (a dead count
  // of 2 turning back to 0 for a second). Only that first message is checked: later pushes are new by
  // construction, and a web server whose clock runs ahead of the database's then costs one skipped
  // sample at most, never a frozen page.
  var newestAt = parseFloat(box.dataset.renderedAt) || 0;
  var firstSinceOpen = false;

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

  function staleAfter() { return Math.max(5, 3 * interval) * 1000; }

  function updatedAgo() {
    return "updated " + Math.max(0, Math.round((Date.now() - lastData) / 1000)) + " s ago";
  }

  function setState(next, detail) {
    state = next;
    box.dataset.state = next;
    pill.className = "pill live-state pill-" + PILLS[next];
    var text = next === "waiting" ? updatedAgo() : LABELS[next] + (detail ? " " + detail : "");
    if (next === "reconnecting" || next === "paused" || next === "off") text += " · " + updatedAgo();
    pill.textContent = text;
    var clock = window.mqClock;
    box.title = "numbers from " + (clock ? clock.format(new Date(lastData)) : new Date(lastData).toISOString());
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
    applyRedrives(sample.redrives || []);
    applyWorkers(sample.workers);
    applyFragments(sample);
    applyHealth(sample);
    lastApplied = Date.now();
    lastData = Date.now();
    document.dispatchEvent(new CustomEvent("mq:sample", { detail: sample }));
  }

  function applyRedrives(redrives) {
    redrives.forEach(function (r) {
      var row = document.querySelector('tr[data-redrive="' + Number(r.id) + '"]');
      if (!row) return;
      var bar = row.querySelector("progress");
      if (bar) { bar.max = Math.max(1, r.total); bar.value = r.moved; }
      var moved = row.querySelector("[data-redrive-moved]");
      if (moved) moved.textContent = formatCount(r.moved) + " / " + formatCount(r.total);
      var st = row.querySelector("[data-redrive-state]");
      if (st && st.textContent !== r.state) {
        st.textContent = r.state;
        st.className = "pill pill-redrive-" + String(r.state).replace(/[^a-z]/g, "");
      }
      var err = row.querySelector("[data-redrive-error]");
      if (err) err.textContent = r.error || "";
      if (r.state !== "running") {
        var stop = row.querySelector("form[data-redrive-stop]");
        if (stop) stop.hidden = true;
      }
    });
  }

  // Server-rendered parts fetched again (the page's own URL, the element of the same id) when what
  // they show has changed: the workers page when a worker starts or stops, and any element marked
  // data-live-fragment="<queue or _total>.<field>" (with data-live-value, the value it was rendered
  // with) when that field of a sample differs. One fetch at a time per element, at most every 2 s;
  // a change meanwhile fetches again once the 2 s are over, so the last state always lands.
  var fragments = {};
  function refetch(id) {
    var f = fragments[id] || (fragments[id] = { busy: false, again: false });
    if (f.busy) { f.again = true; return; }
    f.busy = true;
    f.again = false;
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (html) {
        // The server's own rendering of this page (escaped by its templates), not data from the socket.
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(id);
        var old = document.getElementById(id);
        if (!fresh || !old) return;
        var copy = document.importNode(fresh, true);
        old.replaceWith(copy);
        if (window.mqClock) window.mqClock.localize(copy);
      })
      .catch(function () { f.again = true; })
      .finally(function () {
        setTimeout(function () {
          f.busy = false;
          if (f.again) refetch(id);
        }, 2000);
      });
  }

  var seenValues = {};
  function applyFragments(sample) {
    var els = document.querySelectorAll("[data-live-fragment][id]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var key = el.getAttribute("data-live-fragment");
      var dot = key.lastIndexOf(".");
      if (dot < 1) continue;
      var name = key.slice(0, dot);
      var row = name === "_total" ? sample.total : (sample.queues || {})[name];
      var field = key.slice(dot + 1);
      if (!row || !Object.prototype.hasOwnProperty.call(row, field)) continue;
      var value = String(row[field]);
      if (!Object.prototype.hasOwnProperty.call(seenValues, el.id)) {
        seenValues[el.id] = el.hasAttribute("data-live-value") ? el.getAttribute("data-live-value") : value;
      }
      if (seenValues[el.id] !== value) {
        seenValues[el.id] = value;
        refetch(el.id);
      }
    }
  }

  // The workers page: numbers in place; a started or stopped worker brings the server's table again.
  function applyWorkers(workers) {
    var fleetBox = document.getElementById("workers-live");
    if (!fleetBox || !workers) return;
    var rendered = {};
    fleetBox.querySelectorAll('tr[data-worker-status="live"]').forEach(function (tr) {
      rendered[tr.dataset.worker] = tr;
    });
    var same = Object.keys(rendered).length === workers.length;
    workers.forEach(function (w) {
      var tr = rendered[w.name];
      if (!tr) { same = false; return; }
      ["processed", "failed", "in_flight"].forEach(function (f) {
        var cell = tr.querySelector('[data-worker-field="' + f + '"]');
        var text = formatCount(w[f]);
        if (cell && cell.textContent !== text) cell.textContent = text;
      });
      var beat = tr.querySelector('[data-worker-field="last_beat_at"] time');
      if (beat) {
        beat.setAttribute("datetime", new Date(w.last_beat_at * 1000).toISOString());
        if (window.mqClock) window.mqClock.localize(beat.parentNode);
      }
    });
    if (!same) refetch("workers-live");
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
    var first = firstSinceOpen;
    firstSinceOpen = false;
    if (typeof sample.at === "number") {
      if (first && sample.at < newestAt) return;  // a replay older than what the page shows
      newestAt = Math.max(newestAt, sample.at);
    }
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
      firstSinceOpen = true;
      // Fresh numbers on the page (just rendered, or a sample moments ago): live until they age.
      setState(Date.now() - lastData <= staleAfter() ? "live" : "waiting");
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

  // Open but silent: say since when (the sampler may not be running anywhere); count down a retry.
  setInterval(function () {
    if ((state === "live" || state === "connecting") && Date.now() - lastMessage > staleAfter()) setState("waiting");
    else if (state === "waiting" || state === "paused" || state === "off") setState(state);
    if (state === "reconnecting" && retryTimer) {
      setState("reconnecting", "in " + Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) + " s");
    }
  }, 1000);

  window.addEventListener("pagehide", disconnect);

  if (refresh === "off") setState("off");
  else if (document.hidden) setState("paused");
  else connect();
})();
