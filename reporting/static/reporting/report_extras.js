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
      if (response.status === 204) { return { ok: true, data: null }; }
      return response.json().then(function (data) { return { ok: response.ok, data: data }; },
        function () { return { ok: response.ok, data: { detail: String(response.status) } }; });
    });
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
        if (!answer.ok) { showError(answer.data.detail); return; }
        showError("");
        note.value = "";
        addRow(answer.data);
      }, function () { addButton.disabled = false; showError(String("offline")); });
    });
  }

  list.addEventListener("click", function (event) {
    var id = event.target.dataset ? event.target.dataset.keyImageRemove : null;
    if (!id) { return; }
    send(urls.key_images + id + "/", "DELETE").then(function (answer) {
      if (!answer.ok) { showError(answer.data.detail); return; }
      var row = list.querySelector("[data-key-image='" + id + "']");
      if (row) { row.remove(); }
    });
  });

  var criticalForm = document.getElementById("critical-form");
  criticalForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = document.getElementById("critical-text");
    if (!text.value.trim()) { return; }
    send(urls.critical, "POST", { referral: urls.referral, text: text.value }).then(function (answer) {
      if (!answer.ok) { showError(answer.data.detail); return; }
      showError("");
      var li = document.createElement("li");
      li.dataset.critical = String(answer.data.id);
      li.textContent = answer.data.text + " · " + answer.data.level_name;
      document.getElementById("critical-findings").appendChild(li);
      text.value = "";
    }, function () { showError("offline"); });
  });
})();
