// The report template editor's rows: add, remove and reorder fields, and show the settings
// that belong to the chosen type (unit for a measurement, options for a choice). Without this
// file the form still works: position numbers and "Delete" boxes do the same.
(function () {
  "use strict";
  var form = document.getElementById("template-form");
  var list = document.getElementById("field-rows");
  var blank = document.getElementById("field-row-template");
  var addButton = document.getElementById("field-add");
  if (!form || !list || !blank || !addButton) { return; }
  var total = form.querySelector("input[name$='-TOTAL_FORMS']");
  var prefix = total.name.replace(/-TOTAL_FORMS$/, "");
  var fieldWord = list.dataset.fieldWord || "Field";

  function liveRows() {
    return Array.prototype.filter.call(list.children, function (row) { return !row.hidden; });
  }

  function renumber() {
    var rows = liveRows();
    rows.forEach(function (row, index) {
      var order = row.querySelector("input[name$='-ORDER']");
      if (order) { order.value = String(index + 1); }
      row.querySelector(".row-number").textContent = fieldWord + " " + (index + 1);
      row.querySelector("[data-move='up']").disabled = index === 0;
      row.querySelector("[data-move='down']").disabled = index === rows.length - 1;
    });
  }

  function showKind(row) {
    var kind = row.querySelector("select[name$='-kind']");
    if (!kind) { return; }
    row.querySelectorAll("[data-kinds]").forEach(function (part) {
      part.hidden = part.dataset.kinds.split(" ").indexOf(kind.value) === -1;
    });
  }

  function prepare(row) {
    row.querySelector(".row-tools").hidden = false;
    showKind(row);
  }

  list.addEventListener("change", function (event) {
    if (event.target.matches("select[name$='-kind']")) {
      showKind(event.target.closest("[data-row]"));
    }
  });

  list.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button) { return; }
    var row = button.closest("[data-row]");
    var rows = liveRows();
    var index = rows.indexOf(row);
    if (button.dataset.move === "up" && index > 0) {
      list.insertBefore(row, rows[index - 1]);
    } else if (button.dataset.move === "down" && index < rows.length - 1) {
      list.insertBefore(row, rows[index + 1].nextSibling);
    } else if (button.hasAttribute("data-remove")) {
      var remove = row.querySelector("input[name$='-DELETE']");
      if (remove) { remove.checked = true; }
      row.hidden = true;
      var next = liveRows()[Math.min(index, liveRows().length - 1)];
      if (next) { next.querySelector("input, select, textarea").focus(); } else { addButton.focus(); }
    } else {
      return;
    }
    renumber();
    if (button.dataset.move) { button.focus(); }
  });

  addButton.addEventListener("click", function () {
    var number = parseInt(total.value, 10);
    var html = blank.innerHTML.replace(/__prefix__/g, String(number));
    var holder = document.createElement("ol");
    holder.innerHTML = html;
    var row = holder.querySelector("[data-row]");
    list.appendChild(row);
    total.value = String(number + 1);
    prepare(row);
    renumber();
    row.querySelector("input[name='" + prefix + "-" + number + "-label']").focus();
  });

  form.classList.add("js");
  addButton.hidden = false;
  Array.prototype.forEach.call(list.children, function (row) {
    var remove = row.querySelector("input[name$='-DELETE']");
    if (remove && remove.checked) { row.hidden = true; }
    prepare(row);
  });
  renumber();
})();
