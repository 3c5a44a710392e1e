// Live referral pages (the site's list, one referral, the clinic's home): redraw when a
// referral changes.
// The socket at /ws/referrals/ relays {"event": "referral", "payload": referral_payload()}
// for the active institution; the page is re-read from the server so that what it shows is
// always what the server renders (filters, paging, timeline), never assembled from the wire.
(function () {
  "use strict";
  var root = document.querySelector("[data-referrals-live]");
  if (!root) return;
  var mode = root.dataset.referralsLive;
  var onlyId = root.dataset.referralId ? Number(root.dataset.referralId) : null;
  var labelsNode = document.getElementById("referral-status-labels");
  var labels = labelsNode ? JSON.parse(labelsNode.textContent) : {};
  var delay = 1000;
  var pending = null;

  function setStatus(payload) {
    var tags = document.querySelectorAll(
      mode === "detail" ? "#referral-status" : "[data-referral-id='" + payload.id + "'] [data-status]");
    tags.forEach(function (tag) {
      tag.dataset.status = payload.status;
      tag.className = "tag status-" + payload.status;
      tag.textContent = labels[payload.status] || payload.status;  // text, never HTML
    });
  }

  function refresh() {
    pending = null;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live-part]").forEach(function (part) {
          var replacement = fresh.getElementById(part.id);
          if (replacement) part.replaceWith(document.importNode(replacement, true));
        });
        root.dataset.refreshed = String(Number(root.dataset.refreshed || "0") + 1);
      })
      .catch(function () { /* the next event or reconnect tries again */ });
  }

  function later() {
    if (pending === null) pending = setTimeout(refresh, 150);
  }

  function onEvent(message) {
    if (message.event === "hello") {
      // Subscribed: whatever changed between rendering the page and now is fetched once.
      root.dataset.live = "open";
      later();
      return;
    }
    // The clinic's home also lists critical findings and results back: a finding flagged or
    // acknowledged, a report delivered, each re-reads it.
    if (mode === "home" && (message.event === "critical" || message.event === "report")) {
      later();
      return;
    }
    if (message.event !== "referral" || !message.payload) return;
    var payload = message.payload;
    if (mode === "detail" && payload.id !== onlyId) return;
    setStatus(payload);
    later();
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/referrals/");
    socket.onopen = function () { delay = 1000; };
    socket.onmessage = function (e) {
      try { onEvent(JSON.parse(e.data)); } catch (err) { /* not ours */ }
    };
    socket.onclose = function () {
      root.dataset.live = "closed";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
