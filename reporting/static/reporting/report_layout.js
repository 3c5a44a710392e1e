/* The drafting page's split between the images and the report: dragged with a mouse or a
 * finger, or moved with the arrow keys on the separator; the reader's choice is kept in this
 * browser. The widths are CSS custom properties (no inline style attribute: the
 * Content-Security-Policy allows only the CSS object model).
 */
(function () {
  "use strict";
  var layout = document.getElementById("report-layout");
  var split = document.getElementById("report-split");
  if (!layout || !split) { return; }
  var STORE = "hub-report-split";
  var MIN = Number(split.getAttribute("aria-valuemin"));
  var MAX = Number(split.getAttribute("aria-valuemax"));
  var STEP = 5;

  function apply(share) {
    share = Math.round(Math.max(MIN, Math.min(MAX, share)));
    layout.style.setProperty("--viewer-share", share + "fr");
    layout.style.setProperty("--report-share", (100 - share) + "fr");
    split.setAttribute("aria-valuenow", String(share));
    return share;
  }

  function keep(share) {
    try { localStorage.setItem(STORE, String(share)); } catch (e) { /* private mode */ }
  }

  var saved = null;
  try { saved = Number(localStorage.getItem(STORE)); } catch (e) { saved = null; }
  if (saved) { apply(saved); }
  split.hidden = false;

  var dragging = false;
  split.addEventListener("pointerdown", function (event) {
    dragging = true;
    split.setPointerCapture(event.pointerId);
    event.preventDefault();
  });
  split.addEventListener("pointermove", function (event) {
    if (!dragging) { return; }
    var box = layout.getBoundingClientRect();
    apply((event.clientX - box.left) / box.width * 100);
  });
  function stop() {
    if (!dragging) { return; }
    dragging = false;
    keep(Number(split.getAttribute("aria-valuenow")));
  }
  split.addEventListener("pointerup", stop);
  split.addEventListener("pointercancel", stop);
  split.addEventListener("dblclick", function () { keep(apply(62)); });
  split.addEventListener("keydown", function (event) {
    var now = Number(split.getAttribute("aria-valuenow"));
    var next = { ArrowLeft: now - STEP, ArrowRight: now + STEP, Home: MIN, End: MAX }[event.key];
    if (next === undefined) { return; }
    event.preventDefault();
    keep(apply(next));
  });
})();
