// The CSV upload form (console/templates/imports/index.html): refuse a file over the size
// limit before sending it, and show how much of the file has been sent (htmx's upload
// progress events). The server checks the size again; this only saves a long wait.
(function () {
  "use strict";

  function formOf(event) {
    var elt = event.detail && event.detail.elt;
    return elt && elt.matches && elt.matches("form[data-upload]") ? elt : null;
  }

  function showError(form, message) {
    var input = form.querySelector("input[type=file]");
    var field = input.closest(".field");
    var error = field.querySelector(".error");
    if (!error) {
      error = document.createElement("p");
      error.className = "error";
      error.id = "file-error";
      input.before(error);
    }
    error.textContent = message;
    field.classList.add("has-error");
    input.setAttribute("aria-invalid", "true");
    var described = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    if (described.indexOf("file-error") < 0) described.push("file-error");
    input.setAttribute("aria-describedby", described.join(" "));
    input.focus();
  }

  document.addEventListener("htmx:confirm", function (event) {
    var form = formOf(event);
    if (!form) return;
    var input = form.querySelector("input[type=file]");
    var limit = Number(form.dataset.maxBytes || 0);
    if (!input.files || input.files.length === 0) {
      event.preventDefault();
      showError(form, "Choose a CSV file to import.");
    } else if (limit && input.files[0].size > limit) {
      event.preventDefault();
      showError(form, "The file is larger than " + Math.floor(limit / 1048576) + " MiB.");
    }
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = formOf(event);
    if (!form) return;
    var box = form.querySelector(".upload-progress");
    if (box) box.hidden = false;
  });

  document.addEventListener("htmx:xhr:progress", function (event) {
    var form = formOf(event);
    if (!form || !event.detail.lengthComputable) return;
    var percent = Math.floor((100 * event.detail.loaded) / event.detail.total);
    var bar = form.querySelector("#upload-bar");
    var figure = form.querySelector(".upload-figure");
    if (bar) {
      bar.value = percent;
      bar.textContent = percent + "%";
    }
    if (figure && (percent % 10 === 0 || percent === 100)) {
      figure.textContent = percent === 100 ? "Sent; storing the file…" : percent + "% sent";
    }
  });
})();
