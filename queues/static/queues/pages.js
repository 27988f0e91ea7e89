/* Small conveniences of single pages, kept out of the templates so that the Content-Security-Policy
   can forbid inline script (script-src 'self'). Every page works without them. */
(function () {
  "use strict";

  // Message browser: a "select all on this page" box, shown only when script runs.
  var all = document.getElementById("select-all");
  if (all) {
    var boxes = document.querySelectorAll('#bulk-form input[name="id"]');
    all.hidden = false;
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
    });
  }

  // Message browser: send the ticked ids as one comma-separated field. A field per box would hit
  // Django's limit of 1,000 form fields long before the 10,000 a "Selected…" action may take.
  var bulk = document.getElementById("bulk-form");
  if (bulk) {
    bulk.addEventListener("submit", function () {
      var stale = bulk.querySelector('input[name="ids"]');
      if (stale) stale.remove();
      var ticked = bulk.querySelectorAll('input[name="id"]:checked');
      if (!ticked.length) return;
      var field = document.createElement("input");
      field.type = "hidden";
      field.name = "ids";
      field.value = Array.prototype.map.call(ticked, function (b) { return b.value; }).join(",");
      bulk.appendChild(field);
      // Disabled boxes are not sent; re-enabled when the page comes back from the history cache.
      ticked.forEach(function (b) { b.disabled = true; });
    });
    window.addEventListener("pageshow", function () {
      bulk.querySelectorAll('input[name="id"]').forEach(function (b) { b.disabled = false; });
    });
  }

  // Message detail: copy the revealed body to the clipboard.
  var copy = document.getElementById("copy-body");
  if (copy) {
    if (!navigator.clipboard) {
      copy.hidden = true;
    } else {
      copy.addEventListener("click", function () {
        var text = document.getElementById(copy.dataset.copyTarget).textContent;
        navigator.clipboard.writeText(text).then(function () {
          copy.textContent = "Copied";
          setTimeout(function () { copy.textContent = "Copy"; }, 1500);
        });
      });
    }
  }

  // Error pages: "Go back" to the page the operator came from (the link's href is the fallback).
  document.querySelectorAll("[data-history-back]").forEach(function (link) {
    if (window.history.length < 2) return;
    link.hidden = false;
    link.addEventListener("click", function (event) {
      event.preventDefault();
      window.history.back();
    });
  });
})();
