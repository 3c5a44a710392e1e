/* The drafting page's extras: key images picked from the viewer, and the critical flag.
 *
 * "Attach the image shown" reads the frame the viewer displays (its rendered URL names the
 * series, instance and frame) and attaches it to the draft; the hub checks that it belongs
 * to the report's study. Flagging a critical result alerts the clinic at once.
 */
(function () {
  "use strict";
  var configNode = document.getElementById("report-extras-config");
  if (!configNode) { return; }
  var urls = JSON.parse(configNode.textContent);
  var csrfNode = document.querySelector("input[name=csrfmiddlewaretoken]");
  var csrf = csrfNode ? csrfNode.value : "";
  var errorText = document.getElementById("extras-error");
  var list = document.getElementById("key-images");
  // The page's sentences for a network failure (from <body>, in the page's language).
  var unreachable = document.body.dataset.offline || "";

  function showError(text) {
    errorText.textContent = text || "";
    errorText.hidden = !text;
  }

  function send(url, method, body) {
    return fetch(url, {
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (response) {
      if (response.status === 204) { return { ok: true, status: 204, data: null }; }
      return response.json().then(function (data) {
        return { ok: response.ok, status: response.status, data: data || {} };
      }, function () { return { ok: response.ok, status: response.status, data: {} }; });
    });
  }

  // A refusal without a reason of its own reads as the drafting page's sentence for it.
  var pageStrings = document.getElementById("report-strings");
  var notAccepted = pageStrings ? JSON.parse(pageStrings.textContent).not_accepted || "" : "";

  function refusal(answer) {
    return answer.data.detail || notAccepted.replace("%(status)s", String(answer.status));
  }

  /* ".../series/{s}/instances/{i}/frames/{n}/rendered?..." → {sop_uid, frame} */
  function shownFrame() {
    var viewer = document.getElementById("viewer");
    var url = viewer ? (viewer.dataset.shownUrl || viewer.dataset.imageUrl || "") : "";
    var match = /\/instances\/([^/]+)\/frames\/(\d+)\//.exec(url);
    if (!match) { return null; }
    return { sop_uid: decodeURIComponent(match[1]), frame: Number(match[2]) };
  }

  function addRow(image) {
    var empty = list.querySelector("[data-empty]");
    if (empty) { empty.remove(); }
    if (list.querySelector("[data-key-image='" + image.id + "']")) { return; }
    var li = document.createElement("li");
    li.dataset.keyImage = String(image.id);
    var img = document.createElement("img");
    img.src = image.thumbnail; img.width = 96; img.height = 96; img.alt = "";
    li.appendChild(img);
    if (image.note) {
      var span = document.createElement("span");
      span.textContent = image.note;
      li.appendChild(span);
    }
    var remove = document.createElement("button");
    remove.type = "button";
    remove.dataset.keyImageRemove = String(image.id);
    remove.textContent = "×";
    li.appendChild(remove);
    list.appendChild(li);
  }

  var addButton = document.getElementById("key-image-add");
  if (addButton) {
    addButton.addEventListener("click", function () {
      var frame = shownFrame();
      if (!frame) { return; }
      var note = document.getElementById("key-image-note");
      frame.note = note.value;
      addButton.disabled = true;
      send(urls.key_images, "POST", frame).then(function (answer) {
        addButton.disabled = false;
        if (!answer.ok) { showError(refusal(answer)); return; }
        showError("");
        note.value = "";
        addRow(answer.data);
      }, function () { addButton.disabled = false; showError(unreachable); });
    });
  }

  list.addEventListener("click", function (event) {
    var id = event.target.dataset ? event.target.dataset.keyImageRemove : null;
    if (!id) { return; }
    if (event.target.disabled) { return; }
    event.target.disabled = true;
    var removeButton = event.target;
    send(urls.key_images + id + "/", "DELETE").then(function (answer) {
      if (!answer.ok) { removeButton.disabled = false; showError(refusal(answer)); return; }
      showError("");
      var row = list.querySelector("[data-key-image='" + id + "']");
      if (row) { row.remove(); }
    }, function () { removeButton.disabled = false; showError(unreachable); });
  });

  var criticalForm = document.getElementById("critical-form");
  criticalForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = document.getElementById("critical-text");
    if (!text.value.trim()) { return; }
    var submit = criticalForm.querySelector("button[type=submit], button:not([type])");
    if (submit && submit.disabled) { return; }
    if (submit) { submit.disabled = true; }
    function idle() { if (submit) { submit.disabled = false; } }
    send(urls.critical, "POST", { referral: urls.referral, text: text.value }).then(function (answer) {
      idle();
      if (!answer.ok) { showError(refusal(answer)); return; }
      showError("");
      var li = document.createElement("li");
      li.dataset.critical = String(answer.data.id);
      li.textContent = answer.data.text + " · " + answer.data.level_name;
      document.getElementById("critical-findings").appendChild(li);
      text.value = "";
    }, function () { idle(); showError(unreachable); });
  });
})();
