/* SafeRoll portal: navigation, confirmation dialogs, relative times and toasts.
   Progressive enhancement: every page works without this file (actions fall back to a
   confirmation page); with it, actions confirm in a native <dialog>. */
(function () {
  "use strict";

  var SafeRoll = (window.SafeRoll = window.SafeRoll || {});

  // --- navigation (collapses behind a button on narrow screens) -------------------------------
  function setupNav() {
    var toggle = document.querySelector("[data-nav-toggle]");
    var nav = document.getElementById("primary-nav");
    if (!toggle || !nav) return;
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      toggle.setAttribute("aria-label", open ? "Close navigation" : "Open navigation");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && nav.classList.contains("open")) {
        nav.classList.remove("open");
        toggle.setAttribute("aria-expanded", "false");
        toggle.focus();
      }
    });
  }

  // --- dialogs ----------------------------------------------------------------------------------
  // A control with data-dialog-open="ID" opens <dialog id="ID"> instead of following its form or
  // link. Dialogs can be replaced by a live refresh, so the lookup happens at click time.
  var lastOpener = null;

  function openDialog(id, opener) {
    var dialog = document.getElementById(id);
    if (!dialog || typeof dialog.showModal !== "function") return false;
    lastOpener = opener || null;
    dialog.showModal();
    var field = dialog.querySelector("textarea, input:not([type=hidden]), select");
    if (field) field.focus();
    return true;
  }

  function setupDialogs() {
    document.addEventListener("click", function (event) {
      var opener = event.target.closest("[data-dialog-open]");
      if (opener) {
        if (opener.disabled || opener.getAttribute("aria-disabled") === "true") {
          event.preventDefault();
          return;
        }
        if (openDialog(opener.getAttribute("data-dialog-open"), opener)) event.preventDefault();
        return;
      }
      var closer = event.target.closest("[data-dialog-close]");
      if (closer) {
        var dialog = closer.closest("dialog");
        if (dialog) dialog.close();
        return;
      }
      // A click on the backdrop (the dialog element itself, outside its content) cancels.
      if (event.target.tagName === "DIALOG" && event.target.open) {
        var rect = event.target.getBoundingClientRect();
        var inside =
          event.clientX >= rect.left && event.clientX <= rect.right && event.clientY >= rect.top && event.clientY <= rect.bottom;
        if (!inside) event.target.close();
      }
    });
    document.addEventListener(
      "close",
      function (event) {
        if (event.target.tagName !== "DIALOG") return;
        var form = event.target.querySelector("form");
        if (form && !event.target.dataset.submitting) form.reset();
        if (lastOpener && document.body.contains(lastOpener)) lastOpener.focus();
        lastOpener = null;
        document.dispatchEvent(new CustomEvent("saferoll:dialog-closed"));
      },
      true
    );
    // Required reasons: say so in the dialog, in words a screen reader announces, instead of the
    // browser's transient bubble ("invalid" does not bubble, so it is caught on the way down).
    document.addEventListener(
      "invalid",
      function (event) {
        var field = event.target;
        if (!field.closest || !field.closest("dialog")) return;
        event.preventDefault();
        showFieldError(field, field.name === "reason" ? "A reason is required." : field.validationMessage);
        field.focus();
      },
      true
    );
    document.addEventListener(
      "submit",
      function (event) {
        var form = event.target;
        var dialog = form.closest("dialog");
        if (!dialog) return;
        var missing = Array.prototype.find.call(form.querySelectorAll("[required]"), function (field) {
          return !field.value.trim();
        });
        if (missing) {
          event.preventDefault();
          showFieldError(missing, "A reason is required.");
          missing.focus();
          return;
        }
        dialog.dataset.submitting = "1";
        var submit = form.querySelector("[type=submit]");
        if (submit) {
          submit.disabled = true;
          submit.setAttribute("aria-busy", "true");
        }
      },
      true
    );
  }

  function showFieldError(field, text) {
    var id = field.id + "-error";
    var note = document.getElementById(id);
    if (!note) {
      note = document.createElement("p");
      note.className = "error-text";
      note.id = id;
      note.setAttribute("role", "alert");
      field.insertAdjacentElement("afterend", note);
    }
    note.textContent = text;
    field.setAttribute("aria-invalid", "true");
    field.setAttribute("aria-describedby", id);
    field.addEventListener(
      "input",
      function () {
        if (field.value.trim()) {
          note.textContent = "";
          field.removeAttribute("aria-invalid");
        }
      },
      { once: true }
    );
  }

  // --- relative times ("12 s ago") and the autopilot heartbeat -------------------------------
  function ago(seconds) {
    if (seconds < 60) return seconds + " s ago";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min ago";
    var hours = Math.floor(minutes / 60);
    if (hours < 48) return hours + " h ago";
    return Math.floor(hours / 24) + " days ago";
  }
  SafeRoll.ago = ago;

  function secondsSince(iso) {
    var t = Date.parse(iso);
    if (isNaN(t)) return null;
    return Math.max(0, Math.round((Date.now() - t) / 1000));
  }

  function tick() {
    document.querySelectorAll("time[data-relative]").forEach(function (el) {
      var s = secondsSince(el.getAttribute("datetime"));
      if (s !== null) el.textContent = ago(s);
    });
    document.querySelectorAll("[data-heartbeat]").forEach(function (el) {
      var s = secondsSince(el.getAttribute("data-since"));
      if (s === null) return;
      var stale = s > parseInt(el.getAttribute("data-stale-after") || "60", 10);
      var text = el.querySelector("[data-heartbeat-text]");
      if (text) text.textContent = ago(s);
      el.setAttribute("data-stale", stale ? "true" : "false");
      var word = el.parentElement && el.parentElement.querySelector("[data-heartbeat-word]");
      if (word) word.textContent = stale ? "— the autopilot looks stopped" : "on schedule";
    });
  }

  // --- toasts -----------------------------------------------------------------------------------
  var ICONS = {
    fail:
      '<svg width="22" height="22" viewBox="0 0 20 20"><path d="M5 15v-4a5 5 0 0 1 10 0v4z" fill="currentColor"/>' +
      '<rect x="3" y="15" width="14" height="2.5" rx="1" fill="currentColor"/><path d="M10 1.5v2M3.2 4.2l1.4 1.4M16.8 4.2l-1.4 1.4" ' +
      'stroke="currentColor" stroke-width="1.6" stroke-linecap="round"/></svg>',
    warn:
      '<svg width="22" height="22" viewBox="0 0 20 20"><rect x="5" y="4.5" width="3.5" height="11" rx="1" fill="currentColor"/>' +
      '<rect x="11.5" y="4.5" width="3.5" height="11" rx="1" fill="currentColor"/></svg>',
  };
  function toast(opts) {
    var region = document.getElementById("toasts");
    if (!region) return;
    var el = document.createElement("div");
    el.className = "toast tone-" + (opts.tone || "active");
    el.setAttribute("role", opts.tone === "fail" ? "alert" : "status");
    el.dataset.kind = opts.kind || "";
    if (opts.tone === "fail" || opts.tone === "warn") {
      var icon = document.createElement("span");
      icon.className = "toast-icon";
      icon.setAttribute("aria-hidden", "true");
      icon.innerHTML = ICONS[opts.tone];
      el.appendChild(icon);
    }
    var body = document.createElement("div");
    body.className = "toast-body";
    var title = document.createElement("div");
    title.className = "toast-title";
    title.textContent = opts.title;
    body.appendChild(title);
    if (opts.text) {
      var text = document.createElement("div");
      text.className = "toast-text";
      text.textContent = opts.text;
      body.appendChild(text);
    }
    if (opts.href) {
      var link = document.createElement("a");
      link.href = opts.href;
      link.className = "small";
      link.textContent = opts.linkText || "View";
      body.appendChild(link);
    }
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss notification");
    close.textContent = "×";
    close.addEventListener("click", function () {
      el.remove();
    });
    el.appendChild(body);
    el.appendChild(close);
    region.appendChild(el);
    // Critical notices stay until dismissed; the rest fade out after a while.
    if (!opts.sticky) {
      setTimeout(function () {
        el.remove();
      }, opts.timeout || 10000);
    }
    return el;
  }
  SafeRoll.toast = toast;

  document.addEventListener("DOMContentLoaded", function () {
    setupNav();
    setupDialogs();
    tick();
    setInterval(tick, 1000);
  });
  SafeRoll.tick = tick;
})();
