/* The schedule form (schedule_form.html): a new schedule starts in the browser's time zone, the preview
   follows the cron and zone as they are typed, and its "your zone" column is shown in the browser's zone.
   Kept out of the template for the Content-Security-Policy (script-src 'self'). The form works without
   it: UTC by default, the Preview button, the dashboard's zone. */
(function () {
  "use strict";
  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }

  var form = document.getElementById("schedule-form");
  var zoneField = document.getElementById("id_timezone");
  var cronField = document.getElementById("id_cron");
  var box = document.getElementById("schedule-preview-box");

  // Only an untouched new form: an edit, or a form sent back with errors, keeps what it holds.
  if (zone && form && form.dataset.new && zoneField && !zoneField.disabled && zoneField.value === "UTC"
      && !document.querySelector(".field-invalid, .form-error")) {
    zoneField.value = zone;
  }

  function viewerTimes() {
    if (!zone || !box) return;
    var fmt;
    try {
      fmt = new Intl.DateTimeFormat(undefined, {
        timeZone: zone, weekday: "short", year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZoneName: "short"
      });
    } catch (e) { return; }
    box.querySelectorAll(".viewer-zone").forEach(function (el) { el.textContent = zone; });
    box.querySelectorAll("time.viewer-time").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.textContent = fmt.format(when);
    });
  }

  var timer = null;
  var asked = 0;
  function refresh() {
    if (!box || !cronField || !zoneField) return;
    var n = ++asked;
    var url = box.dataset.url + "?" + new URLSearchParams({cron: cronField.value, timezone: zoneField.value});
    fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null || n !== asked) return;  // a later keystroke's answer wins
        box.innerHTML = html;
        viewerTimes();
      })
      .catch(function () { /* the Preview button still works */ });
  }
  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  }
  if (cronField && zoneField && !cronField.disabled) {
    cronField.addEventListener("input", later);
    zoneField.addEventListener("input", later);
    zoneField.addEventListener("change", later);
    if (form && form.dataset.new && zoneField.value !== "UTC") refresh();  // the zone was just set above
  }
  viewerTimes();
})();
