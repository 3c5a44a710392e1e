// The case page: tell the hub that the claimer has opened the case (a POST, so that merely
// fetching the page changes nothing), which keeps the claim from being released.
(function () {
  "use strict";
  var form = document.querySelector("form[data-auto-open]");
  if (!form) return;
  var token = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  fetch(form.action, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRFToken": token, "Accept": "application/json" },
  }).then(function (response) {
    if (response.ok) form.remove();
  });
})();
