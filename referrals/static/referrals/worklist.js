// The live worklist: listens on /ws/referrals/ and re-fetches its rows when a case changes.
// The rows' address carries the page's own filters and sort, so a refresh keeps them.
(function () {
  "use strict";
  var box = document.getElementById("worklist-rows");
  if (!box) return;

  // Filters left empty stay out of the address (a short URL to share or reload); the
  // fields are enabled again when the page comes back from the back/forward cache.
  var filters = document.getElementById("worklist-filters");
  if (filters) {
    var emptied = [];
    filters.addEventListener("submit", function () {
      Array.prototype.forEach.call(filters.elements, function (el) {
        if (el.name && (el.tagName === "INPUT" || el.tagName === "SELECT") &&
            el.type !== "checkbox" && el.value === "") {
          el.disabled = true;
          emptied.push(el);
        }
      });
    });
    window.addEventListener("pageshow", function () {
      emptied.forEach(function (el) { el.disabled = false; });
      emptied = [];
    });
  }
  var delay = 1000;
  var pending = null;
  var inFlight = false;
  var again = false;

  function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    fetch(box.dataset.rowsUrl, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var focused = focusPlace();
        box.innerHTML = html;
        refocus(focused);
        box.dataset.refreshed = String(Date.now());
      })
      .catch(function () { /* the next event or reconnect tries again */ })
      .then(function () {
        inFlight = false;
        if (again) { again = false; refresh(); }
      });
  }

  // A keyboard user on a header or a row keeps their place when the rows are redrawn.
  function focusPlace() {
    var el = document.activeElement;
    if (!el || el === box || !box.contains(el)) return null;
    var section = el.closest("section");
    var row = el.closest("[data-referral-id]");
    var cell = el.closest("th, td");
    return {
      section: section ? section.id : "",
      row: row ? row.dataset.referralId : "",
      cell: cell ? cell.className : "",
      tag: el.tagName.toLowerCase()
    };
  }

  function refocus(place) {
    if (!place || !place.section) return;
    var scope = document.getElementById(place.section);
    if (!scope) return;
    if (place.row) {
      scope = scope.querySelector('[data-referral-id="' + place.row.replace(/[^0-9]/g, "") + '"]');
      if (!scope) return;
    }
    var cells = scope.querySelectorAll("th, td");
    for (var i = 0; i < cells.length; i++) {
      if (cells[i].className === place.cell) {
        var target = cells[i].querySelector(place.tag);
        if (target) target.focus();
        return;
      }
    }
  }

  function soon() {
    // Events often come in bursts (route, then notify): one fetch for the lot.
    if (pending) clearTimeout(pending);
    pending = setTimeout(function () { pending = null; refresh(); }, 150);
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/referrals/");
    socket.onmessage = function (e) {
      var message = JSON.parse(e.data);
      if (message.event === "hello") {
        delay = 1000;
        document.body.dataset.worklistLive = "open";
        // Anything that changed while the socket was down is fetched now.
        if (box.dataset.connectedOnce) soon();
        box.dataset.connectedOnce = "1";
      } else if (message.event === "referral") {
        soon();
      }
    };
    socket.onclose = function () {
      document.body.dataset.worklistLive = "closed";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  // Time left moves on its own: redraw once a minute even when nothing happens.
  setInterval(refresh, 60000);
  connect();
})();
