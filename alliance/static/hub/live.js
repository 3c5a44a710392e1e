// Live updates for signed-in pages: one socket per page, reconnecting with backoff.
(function () {
  "use strict";
  var badge = document.getElementById("unread-badge");
  var unread = 0;
  var delay = 1000;

  function show() {
    if (!badge) return;
    badge.textContent = String(unread);
    badge.hidden = unread === 0;
  }

  function onEvent(message) {
    if (message.event === "hello") {
      unread = message.payload.unread;
    } else if (message.event === "notification") {
      unread += 1;
      var list = document.getElementById("recent-notifications") ||
                 document.getElementById("notification-list");
      if (list) {
        var item = document.createElement("li");
        item.className = "unread";
        item.textContent = message.payload.title;  // textContent: never HTML from the wire
        list.insertBefore(item, list.firstChild);
      }
    }
    document.dispatchEvent(new CustomEvent("hub:live", { detail: message }));
    show();
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    // The page's language: notifications pushed to it are said in that language.
    var lang = encodeURIComponent(document.documentElement.lang || "");
    var socket = new WebSocket(scheme + location.host + "/ws/notifications/?lang=" + lang);
    socket.onopen = function () { delay = 1000; document.body.dataset.live = "open"; };
    socket.onmessage = function (e) { onEvent(JSON.parse(e.data)); };
    socket.onclose = function () {
      document.body.dataset.live = "closed";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
