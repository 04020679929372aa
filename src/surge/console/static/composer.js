// The message composer: keep the sandboxed preview frame current while templates are typed,
// and keep each field's aria-invalid in step with the error the live check (htmx) put next
// to it. Without this file the "Refresh the preview" button does the same on a click.
(function () {
  "use strict";
  var form = document.getElementById("composer");
  var button = document.getElementById("preview-button");
  if (!form || !button) { return; }
  var timer = null;
  var skip = { test_to: true, csrf_token: true };

  function refresh() { timer = null; button.click(); }

  form.addEventListener("input", function (event) {
    if (event.target && skip[event.target.name]) { return; }
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, 600);
  });
  form.addEventListener("change", function (event) {
    if (event.target && event.target.type === "checkbox" && event.target.name === "list_ids") {
      if (timer) { clearTimeout(timer); }
      timer = setTimeout(refresh, 300);
    }
  });

  document.body.addEventListener("htmx:afterSettle", function () {
    var errors = form.querySelectorAll("p.error[id$='-error']");
    for (var i = 0; i < errors.length; i++) {
      var note = errors[i];
      var input = document.getElementById(note.id.slice(0, -"-error".length));
      if (!input) { continue; }
      var bad = !note.hidden && note.textContent.trim() !== "";
      if (bad) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
      var field = note.closest(".field");
      if (field) { field.classList.toggle("has-error", bad); }
    }
  });

  refresh();
})();
