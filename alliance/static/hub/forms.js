// Small behaviours of the hub's forms, without inline handlers (the Content-Security-Policy
// runs no inline code): a select marked data-submit-on-change submits its form when changed.
(function () {
  "use strict";
  document.querySelectorAll("select[data-submit-on-change]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
})();
