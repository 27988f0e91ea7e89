/* The schedule form (schedule_form.html): a new schedule starts in the browser's time zone, and the
   preview's "your zone" column is shown in it. Kept out of the template for the Content-Security-Policy
   (script-src 'self'); the form works without it (UTC and the dashboard's zone). */
(function () {
  "use strict";
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone) return;

  var form = document.getElementById("schedule-form");
  var field = document.getElementById("id_timezone");
  // Only an untouched new form: an edit, or a form sent back with errors, keeps what it holds.
  if (form && form.dataset.new && field && !field.disabled && field.value === "UTC" && field.defaultValue === "UTC"
      && !document.querySelector(".field-invalid, .form-error")) {
    field.value = zone;
  }

  var label = document.getElementById("viewer-zone");
  var cells = document.querySelectorAll("time.viewer-time");
  if (!label || !cells.length) return;
  var fmt = new Intl.DateTimeFormat(undefined, {
    timeZone: zone, weekday: "short", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZoneName: "short"
  });
  label.textContent = zone;
  cells.forEach(function (c) {
    var when = new Date(c.getAttribute("datetime"));
    if (!isNaN(when)) c.textContent = fmt.format(when);
  });
})();
