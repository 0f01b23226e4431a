/* SafeRoll live updates.

   The page opens WS /ws and, when a message concerns it, re-fetches its server-rendered fragment
   and swaps each [data-live-part] element by id: the server renders, this file only moves HTML.
   Reconnects with backoff; while the socket is down the same fragments refresh every 30 s. */
(function () {
  "use strict";

  var SafeRoll = (window.SafeRoll = window.SafeRoll || {});
  var FALLBACK_REFRESH_MS = 30000;
  var HEALTH_MIN_INTERVAL_MS = 5000;
  var DEBOUNCE_MS = 40;
  var PING_MS = 25000;
  var BACKOFF_S = [1, 2, 4, 8, 15, 30];

  var socket = null;
  var attempts = 0;
  var state = "connecting";
  var stopped = false;
  var fallbackTimer = null;
  var pingTimer = null;
  var pending = {}; // part id → element waiting for an open dialog to close
  var sources = [];

  // --- connection indicator ---------------------------------------------------------------------
  var LABELS = {
    connecting: "Connecting…",
    connected: "Live",
    reconnecting: "Reconnecting…",
    offline: "Offline — refreshing every 30 s",
    signedout: "Signed out",
  };

  function setState(next, label) {
    state = next;
    document.body.setAttribute("data-live-state", next === "signedout" ? "offline" : next);
    document.querySelectorAll("[data-live-indicator]").forEach(function (el) {
      el.setAttribute("data-state", next === "signedout" ? "offline" : next);
      var text = el.querySelector(".live-label");
      if (text) text.textContent = label || LABELS[next];
      el.title = "Live updates: " + (label || LABELS[next]);
    });
    if (next === "connected") {
      stopFallback();
    } else {
      startFallback();
    }
  }

  // --- the socket -------------------------------------------------------------------------------
  function connect() {
    if (stopped) return;
    var path = document.body.getAttribute("data-ws-path") || "/ws";
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    try {
      socket = new WebSocket(scheme + location.host + path);
    } catch (err) {
      scheduleReconnect();
      return;
    }
    socket.addEventListener("message", function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      handle(message);
    });
    socket.addEventListener("close", function (event) {
      clearInterval(pingTimer);
      socket = null;
      if (event.code === 4401 || event.code === 4403) {
        // Not signed in (any more), or no role: reconnecting will not help.
        stopped = true;
        setState("signedout", event.code === 4401 ? "Signed out — reload to sign in" : "No access to live updates");
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    var delay = BACKOFF_S[Math.min(attempts, BACKOFF_S.length - 1)];
    attempts += 1;
    setState(attempts > 3 ? "offline" : "reconnecting");
    // Jitter, so that a server restart is not met by every page at the same instant.
    setTimeout(connect, delay * 1000 * (0.75 + Math.random() * 0.5));
  }

  function onConnected() {
    var wasDown = attempts > 0;
    attempts = 0;
    setState("connected");
    clearInterval(pingTimer);
    pingTimer = setInterval(function () {
      if (socket && socket.readyState === 1) socket.send(JSON.stringify({ type: "ping" }));
    }, PING_MS);
    // Catch up with whatever happened while the socket was down.
    if (wasDown) refreshAll();
  }

  // --- messages ---------------------------------------------------------------------------------
  function rolloutOf(message) {
    var data = message.data || {};
    return data.rollout_id || null;
  }

  function handle(message) {
    if (message.type === "connected") {
      onConnected();
      return;
    }
    if (message.type === "pong") return;
    document.dispatchEvent(new CustomEvent("saferoll:message", { detail: message }));
    if (message.type === "alert") showAlert(message.data || {});
    if (message.type === "rollout_created" && message.data) {
      SafeRoll.toast &&
        SafeRoll.toast({
          tone: "active",
          title: "New rollout of " + message.data.version,
          text: message.data.rollout_id,
          href: "/rollouts/" + encodeURIComponent(message.data.rollout_id),
          linkText: "Open",
          timeout: 6000,
        });
    }
    sources.forEach(function (source) {
      if (source.on.indexOf(message.type) === -1) return;
      var rollout = rolloutOf(message);
      if (source.rollout && message.type !== "fleet_update" && message.type !== "health_update" && rollout !== source.rollout) {
        return;
      }
      if (message.type === "health_update") {
        var now = Date.now();
        if (now - source.lastHealth < HEALTH_MIN_INTERVAL_MS) return;
        source.lastHealth = now;
      }
      schedule(source);
    });
  }

  var ALERT_TITLES = {
    AUTO_ROLLBACK: "🚨 Auto-rollback triggered",
    AUTO_PAUSE: "⏸ Rollout paused automatically",
    EMERGENCY_STOP: "🛑 Emergency stop raised",
    DEVICE_FLAGGED: "⚑ Device flagged for investigation",
  };

  function showAlert(data) {
    if (!SafeRoll.toast) return;
    var tone = data.level === "critical" ? "fail" : data.level === "warning" ? "warn" : "active";
    var heading = ALERT_TITLES[data.kind] || data.title || "Alert";
    var text = ALERT_TITLES[data.kind] ? data.title + (data.message ? " — " + data.message : "") : data.message;
    SafeRoll.toast({
      tone: tone,
      kind: data.kind,
      title: heading,
      text: text,
      href: data.rollout_id ? "/rollouts/" + encodeURIComponent(data.rollout_id) : "/alerts",
      linkText: data.rollout_id ? "Open the rollout" : "View alerts",
      sticky: data.level === "critical",
    });
  }

  // --- fragments --------------------------------------------------------------------------------
  function schedule(source) {
    clearTimeout(source.timer);
    source.timer = setTimeout(function () {
      refresh(source);
    }, DEBOUNCE_MS);
  }

  function refresh(source) {
    if (source.inflight) {
      source.again = true;
      return;
    }
    source.inflight = true;
    fetch(source.url || location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (response.redirected && /\/login/.test(response.url)) {
          stopped = true;
          if (socket) socket.close();
          setState("signedout", "Signed out — reload to sign in");
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html) swap(html);
      })
      .catch(function () {
        /* the next message or the fallback timer tries again */
      })
      .then(function () {
        source.inflight = false;
        if (source.again) {
          source.again = false;
          schedule(source);
        }
      });
  }

  function refreshAll() {
    sources.forEach(refresh);
  }

  function busy(el) {
    if (el.querySelector("dialog[open]")) return true;
    var active = document.activeElement;
    return !!(active && el.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName));
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    doc.querySelectorAll("[data-live-part][id]").forEach(function (fresh) {
      var current = document.getElementById(fresh.id);
      if (!current) return;
      if (busy(current)) {
        pending[fresh.id] = fresh;
        return;
      }
      replace(current, fresh);
    });
    if (SafeRoll.tick) SafeRoll.tick();
  }

  function replace(current, fresh) {
    if (current.outerHTML === fresh.outerHTML) return;
    var open = [];
    current.querySelectorAll("details[open][id]").forEach(function (d) {
      open.push(d.id);
    });
    var focusedId = document.activeElement && current.contains(document.activeElement) ? document.activeElement.id : null;
    var before = current.getAttribute("data-rollout-state");
    var node = document.importNode(fresh, true);
    current.replaceWith(node);
    open.forEach(function (id) {
      var d = document.getElementById(id);
      if (d) d.open = true;
    });
    if (focusedId) {
      var again = document.getElementById(focusedId);
      if (again) again.focus();
    }
    var after = node.getAttribute("data-rollout-state");
    if (before && after && before !== after) announce("Rollout state is now " + after.replace(/_/g, " ") + ".");
  }

  function announce(text) {
    var region = document.getElementById("announcer");
    if (region) region.textContent = text;
  }

  document.addEventListener("saferoll:dialog-closed", function () {
    Object.keys(pending).forEach(function (id) {
      var current = document.getElementById(id);
      if (current && !busy(current)) {
        replace(current, pending[id]);
        delete pending[id];
      }
    });
  });

  // --- fallback polling -------------------------------------------------------------------------
  function startFallback() {
    if (fallbackTimer) return;
    fallbackTimer = setInterval(function () {
      if (!document.hidden) refreshAll();
    }, FALLBACK_REFRESH_MS);
  }

  function stopFallback() {
    clearInterval(fallbackTimer);
    fallbackTimer = null;
  }

  function collectSources() {
    var chrome = document.body.getAttribute("data-chrome-url");
    if (chrome) sources.push({ url: chrome, on: ["fleet_update", "alert"], lastHealth: 0 });
    document.querySelectorAll("[data-live-source]").forEach(function (el) {
      sources.push({
        url: el.getAttribute("data-live-source") || null,
        on: (el.getAttribute("data-live-on") || "").split(/\s+/).filter(Boolean),
        rollout: el.getAttribute("data-live-rollout") || null,
        lastHealth: 0,
      });
    });
  }

  SafeRoll.live = {
    state: function () {
      return state;
    },
    refreshAll: refreshAll,
  };

  document.addEventListener("DOMContentLoaded", function () {
    collectSources();
    setState("connecting");
    connect();
  });
})();
