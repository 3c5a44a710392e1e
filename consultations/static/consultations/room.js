/* The MDT room: one socket to /ws/mdt/<id>/, a shared viewer, presence, chat and outcome.
 *
 * Every room event carries a sequence number. The page keeps the highest number it holds
 * without a gap; on reconnect it sends it (?last_seq=N) and gets what it missed, then a
 * snapshot. What the page says (chat, hand, viewer) waits in an outbox, each message with an
 * id of its own (cid), until the room's log shows it stored (its own event, live or replayed);
 * after the snapshot of a new socket the rest goes out again, marked "resent" (the server drops a copy it
 * already has). A message typed while the server restarts is sent when it is back, not lost.
 * The presenter's viewer changes go out (at most every 50 ms); a follower applies
 * them, a browser who turned "follow" off keeps their own view until they turn it back on.
 * Frames are rendered by the hub (DICOMweb /rendered), as on the study page. All text from
 * others goes in through textContent, never as HTML.
 */
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("room-data").textContent);
  var strings = JSON.parse(document.getElementById("room-strings").textContent);
  var root = document.getElementById("viewer");
  var stage = document.getElementById("viewer-stage");
  var canvas = document.getElementById("viewer-canvas");
  var ctx = canvas.getContext("2d");
  var slider = document.getElementById("slice-slider");
  var seriesSelect = document.getElementById("series-select");
  var statusText = document.getElementById("room-status");
  var errorText = document.getElementById("room-error");
  var SEND_EVERY_MS = 50;

  var room = {
    lastSeq: 0, pending: {}, gapTimer: 0, me: null, role: null, presenter: null, chair: null,
    people: {}, cases: {}, following: true, closed: false, socket: null, retry: 0,
    hand: false, done: false, ready: false, outbox: [], sent: 0, socketNo: 0, syncing: false,
    page: Math.random().toString(36).slice(2, 10),
  };
  // The ids of live messages: the outbox keeps these until the log shows them stored.
  var OUTBOX_TYPES = { chat: true, hand: true, viewer: true };
  var OUTBOX_MAX = 500;
  var view = {
    caseId: null, series: null, slice: 0, window: null, zoom: 1, pan: { x: 0, y: 0 },
    annotations: [], tool: "scroll", image: null, dims: null, wanted: "",
  };

  function fmt(template, values) {
    return template.replace(/\{(\w+)\}/g, function (m, k) {
      return Object.prototype.hasOwnProperty.call(values, k) ? String(values[k]) : m;
    });
  }
  function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined) { node.textContent = text; }
    if (cls) { node.className = cls; }
    return node;
  }
  function caseData(id) {
    return data.cases.find(function (c) { return c.id === id; }) || null;
  }
  function isPresenter() { return room.me !== null && room.presenter === room.me; }

  // --- The viewer -----------------------------------------------------------------------

  function currentSeries() {
    var c = caseData(view.caseId);
    if (!c) { return null; }
    return c.viewer.series.find(function (s) { return s.uid === view.series; }) || c.viewer.series[0] || null;
  }

  function frameUrl(series, index) {
    var c = caseData(view.caseId);
    var slice = series.slices[index];
    var url = c.viewer.base + "/series/" + encodeURIComponent(series.uid) + "/instances/" +
      encodeURIComponent(slice[0]) + "/frames/" + slice[1] + "/rendered";
    if (view.window) {
      url += "?window=" + encodeURIComponent(Number(view.window.center.toFixed(2)) + "," +
                                             Number(view.window.width.toFixed(2)) + ",linear");
    }
    return url;
  }

  function defaultWindow(series) {
    if (series.windows && series.windows[0]) { return { center: series.windows[0][0], width: series.windows[0][1] }; }
    var top = Math.pow(2, series.bitsStored || 8);
    return { center: top / 2, width: top };
  }

  function transform() {
    var dims = view.dims || [1, 1];
    var fit = Math.min(canvas.width / dims[1], canvas.height / dims[0]);
    var scale = fit * view.zoom;
    return { scale: scale, ox: (canvas.width - dims[1] * scale) / 2 + view.pan.x,
             oy: (canvas.height - dims[0] * scale) / 2 + view.pan.y };
  }

  function draw() {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!view.image) { return; }
    var t = transform();
    ctx.setTransform(t.scale, 0, 0, t.scale, t.ox, t.oy);
    ctx.drawImage(view.image, 0, 0, view.dims[1], view.dims[0]);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.strokeStyle = "#ffd400";
    ctx.lineWidth = 2;
    view.annotations.forEach(function (a) {
      if (a.slice !== null && a.slice !== undefined && a.slice !== view.slice) { return; }
      var p = a.points.map(function (q) { return [t.ox + q[0] * t.scale, t.oy + q[1] * t.scale]; });
      ctx.beginPath();
      if (a.kind === "region") {
        ctx.rect(p[0][0], p[0][1], p[1][0] - p[0][0], p[1][1] - p[0][1]);
      } else {
        ctx.moveTo(p[0][0], p[0][1]);
        ctx.lineTo(p[1][0], p[1][1]);
        if (a.kind === "arrow") {
          var ang = Math.atan2(p[1][1] - p[0][1], p[1][0] - p[0][0]);
          [-0.5, 0.5].forEach(function (d) {
            ctx.moveTo(p[1][0], p[1][1]);
            ctx.lineTo(p[1][0] - 12 * Math.cos(ang + d), p[1][1] - 12 * Math.sin(ang + d));
          });
        }
      }
      ctx.stroke();
    });
    document.getElementById("zoom-info").textContent = fmt(strings.zoom, { percent: Math.round(view.zoom * 100) });
  }

  function resize() {
    canvas.width = Math.max(1, stage.clientWidth);
    canvas.height = Math.max(1, stage.clientHeight);
    draw();
  }

  function render() {
    var series = currentSeries();
    if (!series) {
      view.image = null;
      document.getElementById("viewer-status").textContent = view.caseId ? strings.no_images : "";
      draw();
      return;
    }
    view.series = series.uid;
    view.slice = clamp(view.slice, 0, series.slices.length - 1);
    slider.max = String(series.slices.length);
    slider.value = String(view.slice + 1);
    seriesSelect.value = series.uid;
    var win = view.window || defaultWindow(series);
    document.getElementById("slice-index").textContent = fmt(strings.image, { n: view.slice + 1, total: series.slices.length });
    document.getElementById("window-info").textContent = fmt(strings.window, { width: Math.round(win.width), center: Math.round(win.center) });
    root.dataset.sliceIndex = String(view.slice + 1);
    root.dataset.windowCenter = String(Math.round(win.center));
    root.dataset.windowWidth = String(Math.round(win.width));
    var slice = series.slices[view.slice];
    var url = frameUrl(series, view.slice);
    view.wanted = url;
    root.dataset.imageUrl = url;
    var img = new Image();
    img.onload = function () {
      if (view.wanted !== url) { return; }
      view.image = img;
      view.dims = [slice[2], slice[3]];
      root.dataset.shownUrl = url;
      document.getElementById("viewer-status").textContent = "";
      draw();
    };
    img.onerror = function () { if (view.wanted === url) { document.getElementById("viewer-status").textContent = strings.failed; } };
    img.src = url;
    draw();
  }

  function selectCase(id, keepView) {
    view.caseId = id;
    var c = caseData(id);
    document.querySelectorAll("#cases button").forEach(function (b) {
      b.setAttribute("aria-current", String(Number(b.dataset.case) === id));
    });
    document.getElementById("case-summary").textContent = c ? c.summary : "";
    seriesSelect.textContent = "";
    (c ? c.viewer.series : []).forEach(function (s, i) {
      var option = el("option", (s.number !== null ? "#" + s.number : "#" + (i + 1)) + " " + (s.modality || ""));
      option.value = s.uid;
      seriesSelect.appendChild(option);
    });
    if (!keepView) {
      view.series = c && c.viewer.series[0] ? c.viewer.series[0].uid : null;
      view.slice = 0; view.window = null; view.zoom = 1; view.pan = { x: 0, y: 0 }; view.annotations = [];
    }
    renderOutcome();
    render();
  }

  function stateOut() {
    return { case: view.caseId, series: view.series || "0", slice: view.slice, window: view.window,
             zoom: view.zoom, pan: { x: view.pan.x, y: view.pan.y }, annotations: view.annotations };
  }

  function applyState(s) {
    if (!s || !s.series) { return; }
    if (s.case !== view.caseId) { selectCase(s.case, true); }
    view.series = s.series; view.slice = s.slice; view.window = s.window;
    view.zoom = s.zoom; view.pan = { x: s.pan.x, y: s.pan.y }; view.annotations = s.annotations || [];
    render();
  }

  // The presenter's changes: the last one always goes out, at most one per SEND_EVERY_MS.
  var sendTimer = 0;
  function changed() {
    render();
    if (!isPresenter() || sendTimer) { return; }
    sendTimer = window.setTimeout(function () {
      sendTimer = 0;
      send({ type: "viewer", state: stateOut() });
    }, SEND_EVERY_MS);
  }
  function localChange() {
    // A participant who moves on their own stops following until they jump back.
    if (!isPresenter() && room.following) { setFollowing(false); }
    changed();
  }

  // --- Input ----------------------------------------------------------------------------

  function imagePoint(event) {
    var rect = canvas.getBoundingClientRect();
    var t = transform();
    return [(event.clientX - rect.left - t.ox) / t.scale, (event.clientY - rect.top - t.oy) / t.scale];
  }

  var gesture = null;
  canvas.addEventListener("pointerdown", function (event) {
    canvas.setPointerCapture(event.pointerId);
    gesture = { x: event.clientX, y: event.clientY, moved: 0, tool: view.tool,
                window: view.window || (currentSeries() ? defaultWindow(currentSeries()) : null),
                pan: { x: view.pan.x, y: view.pan.y }, zoom: view.zoom };
    if (["arrow", "length", "region"].indexOf(view.tool) >= 0 && view.image) {
      var p = imagePoint(event);
      gesture.annotation = { kind: view.tool, points: [p, p.slice()], slice: view.slice };
      view.annotations.push(gesture.annotation);
    }
  });
  canvas.addEventListener("pointermove", function (event) {
    if (!gesture) { return; }
    var dx = event.clientX - gesture.x, dy = event.clientY - gesture.y;
    if (gesture.tool === "scroll") {
      var steps = Math.trunc((dy - gesture.moved) / 8);
      if (steps) { gesture.moved += steps * 8; view.slice += steps; localChange(); }
    } else if (gesture.tool === "window" && gesture.window) {
      var k = Math.max(gesture.window.width / 256, 0.5);
      view.window = { center: gesture.window.center - dy * k, width: Math.max(1, gesture.window.width + dx * k * 2) };
      localChange();
    } else if (gesture.tool === "pan") {
      view.pan = { x: gesture.pan.x + dx, y: gesture.pan.y + dy }; localChange();
    } else if (gesture.tool === "zoom") {
      view.zoom = clamp(gesture.zoom * Math.exp(-dy / 200), 0.2, 20); localChange();
    } else if (gesture.annotation) {
      gesture.annotation.points[1] = imagePoint(event); draw();
    }
  });
  function endGesture() {
    if (gesture && gesture.annotation) { localChange(); }
    gesture = null;
  }
  canvas.addEventListener("pointerup", endGesture);
  canvas.addEventListener("pointercancel", endGesture);
  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    view.slice += event.deltaY > 0 ? 1 : -1;
    localChange();
  }, { passive: false });
  stage.addEventListener("keydown", function (event) {
    var steps = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10 }[event.key];
    if (steps) { event.preventDefault(); view.slice += steps; localChange(); }
  });
  slider.addEventListener("input", function () { view.slice = Number(slider.value) - 1; localChange(); });
  seriesSelect.addEventListener("change", function () { view.series = seriesSelect.value; view.slice = 0; localChange(); });
  document.querySelectorAll("#tools [data-tool]").forEach(function (b) {
    b.addEventListener("click", function () {
      view.tool = b.dataset.tool;
      document.querySelectorAll("#tools [data-tool]").forEach(function (o) { o.setAttribute("aria-pressed", String(o === b)); });
    });
  });
  document.querySelectorAll("#presets [data-preset]").forEach(function (b) {
    b.addEventListener("click", function () {
      var preset = data.presets.find(function (p) { return p.key === b.dataset.preset; });
      view.window = preset ? { center: preset.center, width: preset.width } : null;
      localChange();
    });
  });
  document.getElementById("annotations-clear").addEventListener("click", function () { view.annotations = []; localChange(); });

  function setFollowing(on) {
    room.following = on;
    var b = document.getElementById("follow-toggle");
    b.setAttribute("aria-pressed", String(on));
    b.title = on ? strings.following : strings.browsing;
    if (on && room.viewer) { applyState(room.viewer); }
  }
  document.getElementById("follow-toggle").addEventListener("click", function () { setFollowing(!room.following); });

  // --- People, cases, chat, outcome -------------------------------------------------------

  function renderPeople() {
    var list = document.getElementById("participants");
    list.textContent = "";
    Object.keys(room.people).forEach(function (id) {
      var p = room.people[id];
      var li = el("li");
      li.dataset.user = id;
      li.dataset.presence = p.presence;
      li.appendChild(el("strong", p.name));
      li.appendChild(el("span", p.institution, "muted"));
      li.appendChild(el("span", strings[p.presence] || p.presence, "presence-" + p.presence));
      if (Number(id) === room.presenter) { li.appendChild(el("span", strings.presenter, "tag")); }
      if (p.hand) { li.appendChild(el("span", "✋ " + strings.hand, "tag")); }
      if (p.muted) { li.appendChild(el("span", strings.muted, "tag")); }
      if (room.role === "chair" && Number(id) !== room.me) {
        [["presenter", strings.presenter], ["mute", strings.muted], ["remove", "✕"]].forEach(function (pair) {
          var b = el("button", pair[1]);
          b.type = "button";
          b.dataset.action = pair[0];
          b.addEventListener("click", function () {
            if (pair[0] === "mute") { send({ type: "mute", user: Number(id), muted: !p.muted }); }
            else { send({ type: pair[0], user: Number(id) }); }
          });
          li.appendChild(b);
        });
      }
      list.appendChild(li);
    });
  }

  function renderCases() {
    var list = document.getElementById("cases");
    list.textContent = "";
    data.cases.forEach(function (c) {
      var li = el("li");
      var b = el("button", c.position + ". " + c.patient + " · " + c.modalities + (room.cases[c.id] && room.cases[c.id].closed ? " ✓" : ""));
      b.type = "button";
      b.dataset.case = String(c.id);
      b.setAttribute("aria-current", String(c.id === view.caseId));
      b.addEventListener("click", function () { selectCase(c.id, false); localChange(); });
      li.appendChild(b);
      list.appendChild(li);
    });
  }

  function renderOutcome() {
    var c = room.cases[view.caseId] || { votes: [], conclusion: "", recommendations: "" };
    document.getElementById("conclusion-text").value = c.conclusion || "";
    document.getElementById("recommendations-text").value = c.recommendations || "";
    var tally = { agree: 0, disagree: 0, abstain: 0 };
    (c.votes || []).forEach(function (v) { tally[v.choice] += 1; });
    document.getElementById("vote-tally").textContent = "✓ " + tally.agree + " · ✗ " + tally.disagree + " · – " + tally.abstain;
    document.querySelectorAll("#votes [data-vote]").forEach(function (b) {
      var mine = (c.votes || []).find(function (v) { return v.user === room.me; });
      b.setAttribute("aria-pressed", String(!!mine && mine.choice === b.dataset.vote));
    });
  }

  function chatLine(frame) {
    var li = el("li");
    li.dataset.seq = String(frame.seq);
    var who = frame.actor ? frame.actor.name + " (" + frame.actor.institution + ")" : "";
    li.appendChild(el("strong", who + ": "));
    li.appendChild(el("span", frame.data.text));
    var c = caseData(frame.data.case);
    if (c) { li.appendChild(el("span", " #" + c.position, "muted")); }
    var log = document.getElementById("chat-log");
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  }

  function person(actor) {
    if (!actor) { return null; }
    var p = room.people[actor.id];
    if (!p) { p = room.people[actor.id] = { name: actor.name, institution: actor.institution, presence: "absent" }; }
    return p;
  }

  function apply(frame) {
    var d = frame.data, p;
    if (d && d.cid) { outboxDone(d.cid); }
    switch (frame.type) {
      case "presence.join": p = person(frame.actor); p.presence = "online"; break;
      case "presence.leave": p = person(frame.actor); p.presence = "left"; p.hand = false; break;
      case "presence.dropped": p = person(frame.actor); p.presence = "dropped"; p.hand = false; break;
      case "hand": person(frame.actor).hand = d.raised; break;
      case "chat": chatLine(frame); break;
      case "viewer":
        room.viewer = d.state;
        if (room.following && !isPresenter()) { applyState(d.state); }
        break;
      case "presenter": room.presenter = d.user; break;
      case "mute": if (room.people[d.user]) { room.people[d.user].muted = d.muted; } break;
      case "member.removed": delete room.people[d.user]; break;
      case "conclusion":
        room.cases[d.case] = Object.assign(room.cases[d.case] || { votes: [] }, { conclusion: d.conclusion, recommendations: d.recommendations });
        break;
      case "vote":
        var c = room.cases[d.case] = room.cases[d.case] || { votes: [] };
        c.votes = c.votes.filter(function (v) { return v.user !== frame.actor.id; });
        c.votes.push({ user: frame.actor.id, name: frame.actor.name, choice: d.choice });
        break;
      case "case.closed": (room.cases[d.case] = room.cases[d.case] || { votes: [] }).closed = true; renderCases(); break;
      case "session.closed": room.closed = true; statusText.textContent = strings.closed; break;
    }
    renderPeople();
    if (frame.type === "conclusion" || frame.type === "vote") { renderOutcome(); }
  }

  function applySnapshot(s) {
    room.lastSeq = Math.max(room.lastSeq, s.last_seq);
    room.me = s.you.id; room.role = s.you.role;
    room.presenter = s.session.presenter; room.chair = s.session.chair;
    room.closed = s.session.status === "closed";
    room.people = {};
    s.participants.forEach(function (p) { room.people[p.id] = p; });
    room.cases = {};
    s.cases.forEach(function (c) { room.cases[c.id] = c; });
    document.querySelector(".chair-only").hidden = room.role !== "chair";
    document.getElementById("viewer").dataset.role = room.role;
    room.viewer = s.viewer && s.viewer.series ? s.viewer : null;
    renderCases();
    renderPeople();
    if (room.viewer && (room.following || isPresenter()) && (view.caseId === null || !isPresenter())) { applyState(room.viewer); }
    else if (view.caseId === null && data.cases.length) { selectCase(data.cases[0].id, false); }
    renderOutcome();
    if (room.closed) { statusText.textContent = strings.closed; }
    document.getElementById("room").dataset.lastSeq = String(room.lastSeq);
  }

  // --- The socket -------------------------------------------------------------------------

  function received(frame) {
    if (frame.seq <= room.lastSeq) { return; }          // seen already (replay and live)
    room.pending[frame.seq] = frame;
    while (room.pending[room.lastSeq + 1]) {
      var next = room.pending[room.lastSeq + 1];
      delete room.pending[room.lastSeq + 1];
      room.lastSeq = next.seq;
      apply(next);
    }
    document.getElementById("room").dataset.lastSeq = String(room.lastSeq);
    // A gap that does not fill on its own soon is asked for again.
    if (Object.keys(room.pending).length && !room.gapTimer) {
      room.gapTimer = window.setTimeout(function () {
        room.gapTimer = 0;
        // One sync at a time: its replay can take longer than a second on a busy server,
        // and each sync asked meanwhile would replay the same events again.
        if (Object.keys(room.pending).length && !room.syncing) {
          room.syncing = true;
          sendNow({ type: "sync", last_seq: room.lastSeq });
        }
      }, 1000);
    }
  }

  function sendNow(message) {
    if (room.socket && room.socket.readyState === WebSocket.OPEN) { room.socket.send(JSON.stringify(message)); }
  }

  // A live message goes in the outbox first; it is sent now if the room is in sync (a
  // snapshot came on this socket), else after the next snapshot. Only the latest viewer
  // state matters: it replaces one still waiting.
  function send(message) {
    if (!OUTBOX_TYPES[message.type]) { sendNow(message); return; }
    room.sent += 1;
    message.cid = room.page + "-" + room.sent;
    if (message.type === "viewer") {
      room.outbox = room.outbox.filter(function (m) { return m.type !== "viewer"; });
    }
    var entry = { message: message, cid: message.cid, type: message.type, socketNo: 0 };
    room.outbox.push(entry);
    if (room.outbox.length > OUTBOX_MAX) { room.outbox.shift(); }
    document.getElementById("room").dataset.outbox = String(room.outbox.length);
    if (room.ready) { entry.socketNo = room.socketNo; sendNow(message); }
  }

  function outboxDone(cid) {
    room.outbox = room.outbox.filter(function (m) { return m.cid !== cid; });
    document.getElementById("room").dataset.outbox = String(room.outbox.length);
  }

  // After the snapshot of a new socket: what waits and did not go out on this socket goes
  // again (a message sent on this socket is stored or refused by name: it is not repeated).
  function resendOutbox() {
    room.outbox.forEach(function (entry) {
      if (entry.socketNo === room.socketNo) { return; }
      entry.socketNo = room.socketNo;
      sendNow(Object.assign({}, entry.message, { resent: true }));
    });
    document.getElementById("room").dataset.outbox = String(room.outbox.length);
  }

  // Backoff with "equal jitter": the window doubles from 250 ms up to 2 s, and each wait
  // is half the window plus a random part of the other half. After a server restart the
  // room's sockets come back spread over a second or two instead of all in the same
  // instant, and none waits more than 2 s once the server answers again.
  function reconnectDelay(attempt) {
    var window_ = Math.min(2000, 250 * Math.pow(2, attempt - 1));
    return window_ / 2 + Math.random() * window_ / 2;
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + location.host + data.socket + (room.lastSeq ? "?last_seq=" + room.lastSeq : "");
    var socket = new WebSocket(url);
    room.socket = socket;
    room.socketNo += 1;
    socket.onopen = function () { room.retry = 0; statusText.textContent = strings.connected; };
    socket.onmessage = function (message) {
      var frame = JSON.parse(message.data);
      if (frame.event === "room") { received(frame.payload); }
      else if (frame.event === "snapshot") {
        room.pending = {};
        room.syncing = false;
        applySnapshot(frame.payload);
        // The replay before the snapshot showed which waiting messages were stored.
        room.ready = true;
        resendOutbox();
      }
      else if (frame.event === "error") {
        errorText.textContent = frame.payload.detail;
        // Refused (muted, not the presenter, closed): shown, and not sent again.
        if (frame.payload.cid) { outboxDone(frame.payload.cid); }
      }
      else if (frame.event === "revoked") { room.done = true; statusText.textContent = strings.revoked; }
    };
    socket.onclose = function (event) {
      room.ready = false;
      room.syncing = false;
      if (room.done || event.code === 4403 || event.code === 4401 || event.code === 4410) {
        room.done = true;
        // 4410: the session's time window is over (the server closes every socket then).
        if (event.code === 4410) { statusText.textContent = strings.closed; }
        else if (event.code === 4401 || event.code === 4403) { statusText.textContent = strings.revoked; }
        return;
      }
      statusText.textContent = strings.reconnecting;
      room.retry = Math.min(room.retry + 1, 6);
      window.setTimeout(connect, reconnectDelay(room.retry));
    };
  }

  document.getElementById("chat-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var input = document.getElementById("chat-text");
    if (!input.value.trim()) { return; }
    send({ type: "chat", text: input.value, case: view.caseId });
    input.value = "";
  });
  document.getElementById("conclusion-form").addEventListener("submit", function (event) {
    event.preventDefault();
    send({ type: "conclusion", case: view.caseId, conclusion: document.getElementById("conclusion-text").value,
           recommendations: document.getElementById("recommendations-text").value });
  });
  document.querySelectorAll("#votes [data-vote]").forEach(function (b) {
    b.addEventListener("click", function () { send({ type: "vote", case: view.caseId, choice: b.dataset.vote }); });
  });
  document.getElementById("hand").addEventListener("click", function () {
    room.hand = !room.hand;
    this.setAttribute("aria-pressed", String(room.hand));
    send({ type: "hand", raised: room.hand });
  });
  document.getElementById("close-case").addEventListener("click", function () { send({ type: "case.close", case: view.caseId }); });
  // Closing ends the session for every site at once and cannot be undone: ask first.
  document.getElementById("close-session").addEventListener("click", function () {
    if (window.confirm(strings.confirm_close)) { send({ type: "session.close" }); }
  });
  window.addEventListener("beforeunload", function () { room.done = true; sendNow({ type: "leave" }); });

  if (window.ResizeObserver) { new ResizeObserver(resize).observe(stage); } else { window.addEventListener("resize", resize); }
  resize();
  connect();
})();
