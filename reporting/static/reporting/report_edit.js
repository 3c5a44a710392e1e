/* The drafting page: autosave with an optimistic version, and a copy in localStorage.
 *
 * Every keystroke goes to localStorage at once (so closing the tab or losing the network
 * loses nothing), and to the hub after a short pause. The hub refuses a save made against
 * an older version (409): then the local copy stays and the reader is told, never silently
 * overwritten. When the page opens and the browser holds unsaved text for this report at the
 * current version, it is put back and sent.
 */
(function () {
  "use strict";

  var configNode = document.getElementById("report-config");
  if (!configNode) { return; }
  var config = JSON.parse(configNode.textContent);
  var strings = JSON.parse(document.getElementById("report-strings").textContent);
  var form = document.getElementById("report-form");
  // The fields are saved as they are typed; Enter in a field must not post the form.
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  var stateText = document.getElementById("save-state");
  var errorText = document.getElementById("action-error");
  var csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  var storageKey = "hub-report-" + config.report + "-user-" + config.user;
  // A draft for its author; a junior's report for the senior giving its second read.
  var editable = !!config.editable && !!form.querySelector("textarea:not([readonly])");
  var version = config.version;
  var dirty = false;
  var inFlight = null;
  var timer = 0;
  var conflict = false;
  var SAVE_DELAY_MS = 1200;
  var RETRY_MS = 10000;

  function fields() {
    var content = {};
    form.querySelectorAll("[data-key]").forEach(function (el) { content[el.dataset.key] = el.value; });
    return { content: content, free_text: document.getElementById("free-text").value };
  }

  function fill(saved) {
    form.querySelectorAll("[data-key]").forEach(function (el) {
      if (Object.prototype.hasOwnProperty.call(saved.content || {}, el.dataset.key)) {
        el.value = saved.content[el.dataset.key];
      }
    });
    if (typeof saved.free_text === "string") { document.getElementById("free-text").value = saved.free_text; }
  }

  function keepLocal() {
    var copy = fields();
    copy.version = version;
    copy.at = new Date().toISOString();
    try { localStorage.setItem(storageKey, JSON.stringify(copy)); } catch (e) { /* full or private mode */ }
  }

  function dropLocal() {
    try { localStorage.removeItem(storageKey); } catch (e) { /* ignore */ }
  }

  function say(text) { stateText.textContent = text; }

  function showError(text) {
    errorText.textContent = text;
    errorText.hidden = !text;
  }

  // An action (sign, second read, addendum) in flight: its buttons are disabled and the one
  // pressed says it is working, so that a second click sends nothing.
  var working = document.body.dataset.working || "…";
  var unreachable = document.body.dataset.offline || strings.offline;

  function setBusy(buttons, pressed, on) {
    buttons.forEach(function (button) { button.disabled = on; });
    if (!pressed) { return; }
    if (on) {
      pressed.dataset.label = pressed.textContent;
      pressed.textContent = working;
    } else if (pressed.dataset.label !== undefined) {
      pressed.textContent = pressed.dataset.label;
      delete pressed.dataset.label;
    }
  }

  // The hub's answer as {ok, detail}; an answer that is not JSON (a proxy's error page)
  // still gives a sentence.
  function answerOf(response) {
    return response.json().then(function (data) { return data || {}; }, function () { return {}; })
      .then(function (data) {
        return {
          ok: response.ok,
          detail: data.detail || strings.not_accepted.replace("%(status)s", String(response.status)),
        };
      });
  }

  function request(url, method, body, keepalive) {
    return fetch(url, {
      method: method, credentials: "same-origin", keepalive: !!keepalive,
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body),
    });
  }

  function save(keepalive) {
    // A save still on its way comes first, dirty or not: signing right after typing must
    // wait for the version that save brings back, or it goes out stale (a 409).
    if (inFlight) { return inFlight.then(function () { return save(keepalive); }); }
    if (!editable || !dirty || conflict) { return Promise.resolve(); }
    var body = fields();
    body.version = version;
    dirty = false;
    say(strings.saving);
    inFlight = request(config.api, "PATCH", body, keepalive).then(function (response) {
      return response.json().then(function (data) {
        if (response.ok) {
          version = data.version;
          if (!dirty) { dropLocal(); } else { keepLocal(); }
          say(strings.saved + " · " + new Date().toLocaleTimeString());
        } else if (response.status === 409) {
          conflict = true;
          dirty = true;
          say(strings.conflict);
        } else {
          dirty = true;
          say(strings.failed.replace("%(reason)s", data.detail || response.status));
        }
      });
    }, function () {
      dirty = true;
      say(strings.offline);
      setTimeout(function () { save(); }, RETRY_MS);
    }).then(function () { inFlight = null; });
    return inFlight;
  }

  function changed() {
    dirty = true;
    keepLocal();
    clearTimeout(timer);
    timer = setTimeout(save, SAVE_DELAY_MS);
  }

  function restoreLocal() {
    var raw = null;
    try { raw = localStorage.getItem(storageKey); } catch (e) { return; }
    if (!raw) { return; }
    var saved;
    try { saved = JSON.parse(raw); } catch (e) { dropLocal(); return; }
    var now = fields();
    var same = JSON.stringify(saved.content) === JSON.stringify(now.content) && saved.free_text === now.free_text;
    if (same) { dropLocal(); return; }
    if (!editable) { return; }
    if (saved.version === version) {
      fill(saved);
      say(strings.restored);
      dirty = true;
      save();
      return;
    }
    var box = document.getElementById("local-copy");
    box.querySelector("span").textContent = strings.stale_local;
    var button = document.getElementById("restore-local");
    button.textContent = strings.restore;
    box.hidden = false;
    button.addEventListener("click", function () {
      fill(saved);
      box.hidden = true;
      changed();
    });
  }

  if (editable) {
    form.addEventListener("input", changed);
    form.addEventListener("change", changed);
    window.addEventListener("online", function () { save(); });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") { save(true); }
    });
    window.addEventListener("pagehide", function () { save(true); });
  }
  restoreLocal();

  // "Sign and next": once signed, the hub picks the next case (or second read) and opens it.
  function done(next) {
    if (!next) { window.location.reload(); return; }
    var nextForm = document.getElementById("next-form");
    nextForm.querySelector("input[name=queue]").value = next;
    var token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrfmiddlewaretoken";
    token.value = csrf;
    nextForm.appendChild(token);
    nextForm.submit();
  }

  var signButtons = Array.prototype.slice.call(document.querySelectorAll("[data-sign]"));
  signButtons.forEach(function (button) {
    button.addEventListener("click", function () {
      var kind = button.dataset.sign;
      if (button.disabled) { return; }
      if (kind === "final" && !window.confirm(strings.confirm_final)) { return; }
      setBusy(signButtons, button, true);
      showError("");
      clearTimeout(timer);
      save().then(function () {
        return request(config.sign, "POST", { kind: kind, version: version });
      }).then(answerOf).then(function (answer) {
        if (answer.ok) { dropLocal(); done(button.dataset.next); return; }
        showError(answer.detail);
        setBusy(signButtons, button, false);
      }, function () { showError(unreachable); setBusy(signButtons, button, false); });
    });
  });

  function jsonForm(id, body, before) {
    var node = document.getElementById(id);
    if (!node) { return; }
    var buttons = Array.prototype.slice.call(node.querySelectorAll("button[type=submit]"));
    node.addEventListener("submit", function (event) {
      event.preventDefault();
      if (node.dataset.busy === "true") { return; }
      var next = event.submitter ? event.submitter.dataset.next : "";
      if (before && !before(node)) { return; }
      var pressed = event.submitter || buttons[0];
      node.dataset.busy = "true";
      setBusy(buttons, pressed, true);
      showError("");
      clearTimeout(timer);
      function idle() { delete node.dataset.busy; setBusy(buttons, pressed, false); }
      // The second reader's corrections are saved before the read that signs them.
      save().then(function () {
        if (conflict) { throw new Error("conflict"); }
        return request(node.dataset.url, "POST", body(node));
      }).then(answerOf).then(function (answer) {
        if (answer.ok) { dropLocal(); done(next); return; }
        showError(answer.detail);
        idle();
      }, function () { showError(conflict ? strings.conflict : unreachable); idle(); });
    });
  }

  jsonForm("second-read", function (node) {
    var picked = node.querySelector("input[name=outcome]:checked");
    return { outcome: picked ? picked.value : "", comment: node.querySelector("textarea").value, version: version };
  }, function (node) {
    var picked = node.querySelector("input[name=outcome]:checked");
    return (picked && picked.value === "major_discrepancy") || window.confirm(strings.confirm_second_read);
  });
  jsonForm("addendum-form", function (node) {
    return { text: node.querySelector("textarea").value };
  });
})();
