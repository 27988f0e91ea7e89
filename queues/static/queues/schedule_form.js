/* The schedule form (schedule_form.html): a new schedule starts in the viewer's time zone (clock.js's:
   the browser's unless another is picked in the top bar), and the preview of the next occurrences
   follows the cron and zone as they are typed, its "your zone" column in that zone. Kept out of the
   template for the Content-Security-Policy (script-src 'self'). The form works without it: UTC by
   default, the Preview button, times in the dashboard's zone. */
(function () {
  "use strict";
  var form = document.getElementById("schedule-form");
  var zoneField = document.getElementById("id_timezone");
  var cronField = document.getElementById("id_cron");
  var box = document.getElementById("schedule-preview-box");
  if (!form || !zoneField || !cronField || !box || cronField.disabled) return;

  function viewerZone() {
    if (window.mqClock) return window.mqClock.zone();
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return ""; }
  }

  var asked = 0;
  function refresh() {
    var n = ++asked;
    var url = box.dataset.url + "?" + new URLSearchParams({cron: cronField.value, timezone: zoneField.value});
    fetch(url, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null || n !== asked) return;  // a later keystroke's answer wins
        box.innerHTML = html;
        var zone = viewerZone();
        box.querySelectorAll("[data-zone-name]").forEach(function (el) { el.textContent = zone; });
        if (window.mqClock) window.mqClock.localize(box);
      })
      .catch(function () { /* the Preview button still works */ });
  }
  var timer = null;
  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  }
  cronField.addEventListener("input", later);
  zoneField.addEventListener("input", later);
  zoneField.addEventListener("change", later);

  // After clock.js (loaded after this file) has set up: only an untouched new form takes the viewer's
  // zone; an edit, or a form sent back with errors, keeps what it holds.
  document.addEventListener("DOMContentLoaded", function () {
    var zone = viewerZone();
    if (zone && form.dataset.new && zoneField.value === "UTC" && zone !== "UTC"
        && !document.querySelector(".field-invalid, .form-error")) {
      zoneField.value = zone;
      if (cronField.value) refresh();
    }
  });
})();
