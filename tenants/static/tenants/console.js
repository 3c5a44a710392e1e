// The administration console: a form marked data-confirm asks before it does something that
// is not undone with one click (switching an account off, revoking a gateway's credential).
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });
})();
