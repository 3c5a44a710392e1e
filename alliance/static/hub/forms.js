// Small behaviours of the hub's forms, without inline handlers (the Content-Security-Policy
// runs no inline code):
// - a select marked data-submit-on-change submits its form when changed;
// - a form being sent says so and cannot be sent twice: its submit buttons are disabled and
//   the one pressed reads "Working…" (the words come from <body data-working>, in the page's
//   language) until the next page arrives, or until the page is shown again from the
//   back/forward cache. A form whose script sends it itself (it cancels the submit event) is
//   left to that script; a form marked data-no-busy (a download that leaves the page in
//   place) or sent to another window is left alone.
(function () {
  "use strict";

  document.querySelectorAll("select[data-submit-on-change]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form.dataset.busy === "true") { return; }
      // requestSubmit fires the submit event, so the form shows its progress like any other.
      if (select.form.requestSubmit) { select.form.requestSubmit(); } else { select.form.submit(); }
    });
  });

  var working = document.body.dataset.working || "…";

  function submitButtons(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return (el.tagName === "BUTTON" || el.tagName === "INPUT") && el.type === "submit";
    });
  }

  function markBusy(form, submitter) {
    form.dataset.busy = "true";
    form.setAttribute("aria-busy", "true");
    // A disabled button's name and value are not sent: the pressed one's go in a hidden
    // field (the language switch and "claim" buttons carry their choice this way).
    if (submitter && submitter.name && !submitter.hasAttribute("formaction")) {
      var copy = document.createElement("input");
      copy.type = "hidden";
      copy.name = submitter.name;
      copy.value = submitter.value;
      copy.dataset.busyCopy = "";
      form.appendChild(copy);
    }
    var buttons = submitButtons(form);
    var labelled = submitter || buttons[0];
    buttons.forEach(function (button) {
      if (button.disabled) { return; }
      button.disabled = true;
      button.dataset.busyDisabled = "";
    });
    if (labelled && labelled.tagName === "BUTTON") {
      labelled.busyLabel = Array.prototype.slice.call(labelled.childNodes);
      labelled.replaceChildren(document.createTextNode(working));
    } else if (labelled && labelled.tagName === "INPUT") {
      labelled.dataset.busyValue = labelled.value;
      labelled.value = working;
    }
  }

  function markIdle(form) {
    delete form.dataset.busy;
    form.removeAttribute("aria-busy");
    form.querySelectorAll("[data-busy-copy]").forEach(function (copy) { copy.remove(); });
    submitButtons(form).forEach(function (button) {
      if (button.busyLabel) {
        button.replaceChildren.apply(button, button.busyLabel);
        button.busyLabel = null;
      }
      if (button.dataset.busyValue !== undefined) {
        button.value = button.dataset.busyValue;
        delete button.dataset.busyValue;
      }
      if (button.dataset.busyDisabled !== undefined) {
        button.disabled = false;
        delete button.dataset.busyDisabled;
      }
    });
  }

  // Bubbling to the document, this runs after the form's own handlers: a form a script sends
  // by fetch has cancelled the event by then.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) { return; }
    if (form.dataset.busy === "true") {
      event.preventDefault();   // Enter pressed again while the first one is on its way
      return;
    }
    if (event.defaultPrevented || form.hasAttribute("data-no-busy")) { return; }
    var target = (event.submitter && event.submitter.getAttribute("formtarget")) || form.target;
    if (target && target !== "_self") { return; }
    markBusy(form, event.submitter);
  });

  // Back to a page kept in the browser's cache: its forms are ready to be sent again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-busy]").forEach(markIdle);
  });
})();
