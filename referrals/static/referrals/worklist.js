// The live worklist: listens on /ws/referrals/ and re-fetches its rows when a case changes.
(function () {
  "use strict";
  var box = document.getElementById("worklist-rows");
  if (!box) return;
  var delay = 1000;
  var pending = null;
  var inFlight = false;
  var again = false;

  function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    fetch(box.dataset.rowsUrl, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { box.innerHTML = html; box.dataset.refreshed = String(Date.now()); })
      .catch(function () { /* the next event or reconnect tries again */ })
      .then(function () {
        inFlight = false;
        if (again) { again = false; refresh(); }
      });
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
