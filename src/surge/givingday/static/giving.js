// Giving-day pages: live totals over Server-Sent Events and the donation form.
// No framework, no build step. The page works without this file (it shows the totals of
// its last render); the form needs it, as card details are tokenised in the browser.
"use strict";

(function () {
  function liveTotals(root) {
    var url = root.getAttribute("data-live-url");
    if (!url || !window.EventSource) return;
    var source = new EventSource(url);
    source.addEventListener("totals", function (event) {
      var figures;
      try { figures = JSON.parse(event.data); } catch (e) { return; }
      document.querySelectorAll("[data-live]").forEach(function (el) {
        var name = el.getAttribute("data-live");
        if (figures[name] !== undefined && figures[name] !== null) el.textContent = String(figures[name]);
      });
      var meter = document.getElementById("goal-meter");
      if (meter && typeof figures.percent === "number") {
        meter.value = figures.percent;
        meter.setAttribute("aria-valuetext", figures.percent_text || figures.percent + "%");
      }
      document.dispatchEvent(new CustomEvent("surge:totals", { detail: figures }));
    });
  }

  // Amount typed in major units ("25", "25.50") → integer minor units, or null.
  function toMinor(text, digits) {
    var clean = String(text).trim().replace(/[,\s]/g, "");
    var pattern = digits > 0 ? new RegExp("^\\d{1,9}(\\.\\d{1," + digits + "})?$") : /^\d{1,12}$/;
    if (!pattern.test(clean)) return null;
    var parts = clean.split(".");
    var minor = parts[1] || "";
    while (minor.length < digits) minor += "0";
    return parseInt(parts[0], 10) * Math.pow(10, digits) + (minor ? parseInt(minor, 10) : 0);
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40; bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }

  function donationForm(form) {
    var body = form.querySelector(".form-body");
    var status = document.getElementById("form-status");
    var button = form.querySelector("button[type=submit]");
    var digits = parseInt(form.getAttribute("data-minor-units"), 10) || 0;
    var storageKey = "surge:donation:" + form.getAttribute("data-campaign");
    var custom = document.getElementById("amount");
    body.disabled = false;

    custom.addEventListener("input", function () {
      if (custom.value.trim()) form.querySelectorAll("input[name=preset]").forEach(function (r) { r.checked = false; });
    });
    form.querySelectorAll("input[name=preset]").forEach(function (radio) {
      radio.addEventListener("change", function () { custom.value = ""; clearError("amount"); });
    });

    function fieldInput(field) {
      if (field === "amount" || field === "currency" && !document.getElementById("currency")) return custom;
      if (field === "recurring") return document.getElementById("monthly");
      return document.getElementById(field);
    }
    function showError(field, message) {
      var input = fieldInput(field);
      var box = input && document.getElementById(input.id + "-error");
      if (!box) { status.textContent = message; return null; }
      box.textContent = message; box.hidden = false;
      input.setAttribute("aria-invalid", "true");
      return input;
    }
    function clearError(field) {
      var input = fieldInput(field);
      var box = input && document.getElementById(input.id + "-error");
      if (box) { box.textContent = ""; box.hidden = true; }
      if (input) input.removeAttribute("aria-invalid");
    }
    function clearErrors() {
      form.querySelectorAll(".error[id]").forEach(function (box) { box.textContent = ""; box.hidden = true; });
      form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
      status.textContent = "";
    }

    // What the donor asked for, or an error naming the field.
    function request() {
      var amount;
      if (custom.value.trim()) {
        amount = toMinor(custom.value, digits);
        if (amount === null || amount <= 0) return { field: "amount", message: "Enter an amount like 25" + (digits ? " or 25.50" : "") + "." };
      } else {
        var checked = form.querySelector("input[name=preset]:checked");
        if (!checked) return { field: "amount", message: "Choose or enter an amount." };
        amount = parseInt(checked.value, 10);
      }
      var email = document.getElementById("email").value.trim();
      if (!/^[^\s@]+@[^\s@]+$/.test(email)) return { field: "email", message: "Enter the email address your receipt should go to." };
      var currencyInput = document.getElementById("currency");
      var data = {
        amount: amount,
        currency: (form.getAttribute("data-currency") || (currencyInput ? currencyInput.value : "USD")).trim().toUpperCase(),
        email: email,
        token: document.getElementById("token").value.trim()
      };
      var name = document.getElementById("name").value.trim();
      if (name) data.name = name;
      var optional = JSON.parse(form.getAttribute("data-extra") || "{}");
      Object.keys(optional).forEach(function (k) { data[k] = optional[k]; });
      ["cover_fee", "public_name"].forEach(function (id) {
        var box = document.getElementById(id);
        if (box && box.checked) data[id] = true;
      });
      var monthly = document.getElementById("monthly");
      if (monthly && monthly.checked) data.recurring = "monthly";
      var kind = form.getAttribute("data-target-kind");
      if (kind) data[kind + "_id"] = parseInt(form.getAttribute("data-target-id"), 10);
      return { data: data };
    }

    // One Idempotency-Key per donation attempt, kept until the API answers, so that a retry
    // after a network error or a reload reuses it and cannot donate twice.
    function keyFor(payload) {
      var stored = null;
      try { stored = JSON.parse(sessionStorage.getItem(storageKey) || "null"); } catch (e) { stored = null; }
      if (stored && stored.body === payload) return stored.key;
      var key = uuid();
      try { sessionStorage.setItem(storageKey, JSON.stringify({ key: key, body: payload })); } catch (e) { /* private mode */ }
      return key;
    }
    function forgetKey() { try { sessionStorage.removeItem(storageKey); } catch (e) { /* ignore */ } }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      clearErrors();
      var built = request();
      if (built.field) { var bad = showError(built.field, built.message); if (bad) bad.focus(); return; }
      var payload = JSON.stringify(built.data);
      var key = keyFor(payload);
      button.disabled = true;
      status.textContent = "Sending your donation…";
      fetch(form.getAttribute("data-endpoint"), {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          "Authorization": "Bearer " + form.getAttribute("data-key"),
          "Idempotency-Key": key
        },
        body: payload
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (answer) {
          if (response.status === 202 || response.status === 201) {
            forgetKey();
            try { sessionStorage.setItem("surge:gift", JSON.stringify({ amount: built.data.amount, currency: built.data.currency, digits: digits, monthly: built.data.recurring === "monthly" })); } catch (e) { /* ignore */ }
            status.textContent = "Thank you! Taking you on…";
            window.location.assign(form.getAttribute("data-thanks"));
            return;
          }
          button.disabled = false;
          if (response.status === 503 || response.status === 429) {
            // Busy: the key is kept, so pressing Donate again cannot give twice.
            status.textContent = "We are very busy right now. Please press Donate again in a few seconds.";
            return;
          }
          forgetKey();
          var error = answer && answer.error ? answer.error : { message: "Something went wrong (" + response.status + ")." };
          var input = error.field ? showError(error.field, error.message) : null;
          if (input) { input.focus(); status.textContent = "Please check the highlighted field."; }
          else status.textContent = error.message;
        });
      }, function () {
        button.disabled = false;
        status.textContent = "We could not reach the server. Check your connection and press Donate again: you will not be charged twice.";
      });
    });
  }

  function giftSummary() {
    var box = document.getElementById("gift-summary");
    if (!box) return;
    var gift = null;
    try { gift = JSON.parse(sessionStorage.getItem("surge:gift") || "null"); } catch (e) { gift = null; }
    if (!gift) return;
    var major = (gift.amount / Math.pow(10, gift.digits)).toLocaleString(undefined, { minimumFractionDigits: gift.amount % Math.pow(10, gift.digits) ? gift.digits : 0 });
    box.textContent = "Your " + (gift.monthly ? "monthly " : "") + "gift of " + major + " " + gift.currency + " is being processed.";
    box.hidden = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-live-url]");
    if (root) liveTotals(root);
    var form = document.getElementById("donate");
    if (form) donationForm(form);
    giftSummary();
  });
})();
