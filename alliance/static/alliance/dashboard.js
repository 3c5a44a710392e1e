// The commission dashboard: reads each figure set from the analytics API, draws it with
// ECharts, fills its table view and points its export links at the API's CSV / Excel.
// The page computes no figure: it shows what the API answers (ratios as percentages).
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root) return;
  var S = JSON.parse(document.getElementById("dashboard-strings").textContent);
  var form = document.getElementById("dashboard-filters");
  var freshness = document.getElementById("dashboard-freshness");
  var errorBox = document.getElementById("dashboard-error");
  var largeButton = document.getElementById("dashboard-large");
  var zh = (root.dataset.lang || "").indexOf("zh") === 0;
  var FILTERS = ["alliance", "region", "institution", "tier", "modality", "date_from", "date_to"];

  function fill(text, values) {
    return text.replace(/%\((\w+)\)s/g, function (_, k) { return values[k]; }).replace("%%", "%");
  }

  // --- The analytics API (docs/analytics.md): the one place that knows its shape ------------
  // A figure set answers {figure_set, meta: {refreshed_at, generated_at, filters, ...},
  // totals, tables: {name: [flat rows]}}; ?format=csv|xlsx&table=name exports one table.
  var api = {
    base: root.dataset.apiBase,
    url: function (set, params, extra) {
      var q = new URLSearchParams(params);
      Object.keys(extra || {}).forEach(function (k) { q.set(k, extra[k]); });
      var s = q.toString();
      return api.base + set + "/" + (s ? "?" + s : "");
    },
    load: function (set, params) {
      return fetch(api.url(set, params), {
        credentials: "same-origin", headers: { "Accept": "application/json" },
      }).then(function (r) {
        if (!r.ok) { var e = new Error("HTTP " + r.status); e.status = r.status; throw e; }
        return r.json();
      });
    },
    refreshedAt: function (body) { return body.meta ? body.meta.refreshed_at : null; },
    rows: function (body, table) { return (body.tables && body.tables[table]) || []; },
  };

  // --- The panels: how each shows its table (the page names the figure set and table) -------
  // `columns`: the table view; `chart`: how to draw it.
  // Keys ending in _rate / _share / _use / utilisation are fractions, shown as percentages.
  var PANELS = {
    "volume-day": {
      columns: ["period", "studies", "remote_read", "remote_share"],
      chart: { type: "bars", category: "period", values: ["studies", "remote_read"], line: true,
               right: ["remote_share"] } },
    "volume-site": {
      columns: ["site_name", "tier", "studies", "remote_read", "remote_share"],
      chart: { type: "bars", category: "site_name", values: ["studies", "remote_read"],
               horizontal: true } },
    "volume-modality": {
      columns: ["modality", "studies", "remote_read", "remote_share"],
      chart: { type: "pie", category: "modality", value: "studies" } },
    "tat-priority": {
      columns: ["priority", "referrals", "reported", "p50_minutes", "p90_minutes", "mean_minutes"],
      chart: { type: "bars", category: "priority", values: ["p50_minutes", "p90_minutes"] } },
    "tat-reader": {
      columns: ["reader_name", "referrals", "reported", "p50_minutes", "p90_minutes",
                "mean_minutes"],
      chart: { type: "bars", category: "reader_name", values: ["p50_minutes", "p90_minutes"],
               horizontal: true } },
    "breaches": {
      columns: ["priority", "referrals", "breached", "breach_rate", "escalations"],
      chart: { type: "bars", category: "priority", values: ["breached", "escalations"],
               right: ["breach_rate"] } },
    "flows": {
      columns: ["source_tier", "target_tier", "kind", "direction", "referrals"],
      chart: { type: "sankey", source: "source_tier", target: "target_tier", value: "referrals" } },
    "workload": {
      columns: ["reader_name", "readers", "reported", "reported_per_day",
                "reported_per_reader_per_day", "open_now", "capacity", "capacity_use"],
      chart: { type: "bars", category: "reader_name", values: ["reported", "open_now", "capacity"],
               right: ["capacity_use"] } },
    "scanners": {
      columns: ["site_name", "modality", "studies", "studies_per_day", "capacity_per_day",
                "utilisation"],
      chart: { type: "bars", category: ["site_name", "modality"], values: [],
               right: ["utilisation"], horizontal: true } },
    "quality-returns": {
      columns: ["site_name", "referrals", "returned", "return_rate"],
      chart: { type: "bars", category: "site_name", values: ["returned"],
               right: ["return_rate"] } },
    "quality-reasons": {
      columns: ["site_name", "reason", "returned"],
      chart: { type: "pivot", category: "site_name", series: "reason", value: "returned" } },
    "quality-second-read": {
      columns: ["reader_name", "second_reads", "agree", "minor", "major", "discrepancy_rate"],
      chart: { type: "bars", category: "reader_name", values: ["agree", "minor", "major"],
               stack: true, right: ["discrepancy_rate"] } },
    "quality-critical": {
      columns: ["site_name", "critical", "critical_acknowledged", "critical_in_time",
                "critical_escalated", "critical_mean_ack_minutes"],
      chart: { type: "bars", category: "site_name",
               values: ["critical", "critical_acknowledged", "critical_in_time"],
               right: ["critical_mean_ack_minutes"] } },
    "recognition": {
      columns: ["site_name", "studies", "referrals", "priors_shared", "priors_shared_rate",
                "repeats_30d", "repeats_cross_site", "repeat_rate"],
      chart: { type: "bars", category: "site_name",
               values: ["priors_shared", "repeats_30d", "repeats_cross_site"] } },
  };

  // --- Words and numbers ----------------------------------------------------------------------
  function isFraction(key) { return /(_rate|_share|_use|^utilisation)$/.test(key); }
  function columnLabel(key) { return S.columns[key] || key; }
  function valueLabel(key, v) {
    if (v === null || v === undefined || v === "") return key === "target_tier" ? S.unrouted : "–";
    var words = S.values[key.replace(/^(source|target)_/, "")] || S.values[key];
    return (words && words[v]) || String(v);
  }
  function display(key, v) {
    if (typeof v !== "number") return valueLabel(key, v);
    if (isFraction(key)) return fill(S.percent, { value: (v * 100).toFixed(1) });
    return v.toLocaleString(zh ? "zh-CN" : "en-GB");
  }
  function plotted(key, v) {
    if (typeof v !== "number") return null;
    return isFraction(key) ? Math.round(v * 1000) / 10 : v;
  }
  function category(spec, row) {
    var keys = [].concat(spec.category);
    return keys.map(function (k) { return valueLabel(k, row[k]); }).join(" · ");
  }

  // --- Chart builders: rows in, an ECharts option out ---------------------------------------
  var fontScale = 1;
  function px(size) { return Math.round(size * fontScale); }
  function base(extra) {
    var option = {
      textStyle: { fontSize: px(12) },
      tooltip: { trigger: "axis", renderMode: "richText", textStyle: { fontSize: px(13) } },
      legend: { top: 0, type: "scroll", textStyle: { fontSize: px(12) } },
      grid: { left: 8, right: 16, top: px(36), bottom: 8, containLabel: true },
      animation: false,
    };
    Object.keys(extra).forEach(function (k) { option[k] = extra[k]; });
    return option;
  }
  function axisLabel(extra) {
    var label = { fontSize: px(12), hideOverlap: true };
    Object.keys(extra || {}).forEach(function (k) { label[k] = extra[k]; });
    return label;
  }
  function bars(spec, rows) {
    var cats = rows.map(function (r) { return category(spec, r); });
    var right = spec.right || [];
    var onlyRight = !spec.values.length;
    var percent = right.length && right.every(isFraction);
    var catAxis = { type: "category", data: cats, axisLabel: axisLabel({ width: px(140), overflow: "truncate" }) };
    var leftAxis = { type: "value", axisLabel: axisLabel() };
    var rightAxis = { type: "value", axisLabel: axisLabel(percent ? { formatter: "{value} %" } : {}),
                      splitLine: { show: onlyRight } };
    var series = spec.values.map(function (key) {
      return { name: columnLabel(key), type: spec.line ? "line" : "bar",
               stack: spec.stack ? "total" : undefined, valueAxis: 0,
               data: rows.map(function (r) { return plotted(key, r[key]); }) };
    }).concat(right.map(function (key) {
      return { name: columnLabel(key), type: onlyRight ? "bar" : "line", valueAxis: onlyRight ? 0 : 1,
               symbolSize: px(8), data: rows.map(function (r) { return plotted(key, r[key]); }) };
    }));
    var valueAxes = onlyRight ? [rightAxis] : (right.length ? [leftAxis, rightAxis] : [leftAxis]);
    series.forEach(function (s) {
      if (spec.horizontal) s.xAxisIndex = s.valueAxis; else s.yAxisIndex = s.valueAxis;
      delete s.valueAxis;
    });
    if (spec.horizontal) {
      catAxis.inverse = true;
      return base({ xAxis: valueAxes, yAxis: catAxis, series: series });
    }
    return base({ xAxis: catAxis, yAxis: valueAxes, series: series });
  }
  function pivot(spec, rows) {
    // Rows of (category, series, value) as one stacked bar per category.
    var cats = [], names = [], cells = {};
    rows.forEach(function (r) {
      var c = category(spec, r), n = valueLabel(spec.series, r[spec.series]);
      if (cats.indexOf(c) < 0) cats.push(c);
      if (names.indexOf(n) < 0) names.push(n);
      cells[c + "\u0000" + n] = r[spec.value];
    });
    return base({
      xAxis: { type: "category", data: cats, axisLabel: axisLabel() },
      yAxis: { type: "value", axisLabel: axisLabel() },
      series: names.map(function (n) {
        return { name: n, type: "bar", stack: "total",
                 data: cats.map(function (c) { return cells[c + "\u0000" + n] || 0; }) };
      }),
    });
  }
  function pie(spec, rows) {
    return base({
      tooltip: { trigger: "item", renderMode: "richText", textStyle: { fontSize: px(13) } },
      series: [{
        type: "pie", radius: ["35%", "65%"], top: px(24), label: { fontSize: px(12) },
        data: rows.map(function (r) { return { name: category(spec, r), value: r[spec.value] }; }),
      }],
    });
  }
  function sankey(spec, rows) {
    // Tiers on the left send, tiers on the right read: "county" is a node on each side, so
    // upward and downward flows both show without a cycle.
    var nodes = {}, links = {};
    rows.forEach(function (r) {
      if (!(r[spec.value] > 0)) return;
      var s = valueLabel(spec.source, r[spec.source]) + " ▸";
      var t = "▸ " + valueLabel(spec.target, r[spec.target]);
      nodes[s] = nodes[t] = true;
      var k = s + "\u0000" + t;
      links[k] = links[k] || { source: s, target: t, value: 0 };
      links[k].value += r[spec.value];
    });
    return base({
      tooltip: { trigger: "item", renderMode: "richText", textStyle: { fontSize: px(13) } },
      series: [{
        type: "sankey", top: px(16), bottom: 8, left: 8, right: px(80),
        emphasis: { focus: "adjacency" }, label: { fontSize: px(13) },
        data: Object.keys(nodes).map(function (n) { return { name: n }; }),
        links: Object.keys(links).map(function (k) { return links[k]; }),
      }],
    });
  }
  var DRAW = { bars: bars, pie: pie, sankey: sankey, pivot: pivot };

  Object.keys(PANELS).forEach(function (key) {
    var el = document.getElementById("panel-" + key);
    PANELS[key].set = el.dataset.set;
    PANELS[key].table = el.dataset.table;
  });

  // --- Table views: the same figures as an accessible <table> --------------------------------
  function renderTable(panel, spec, rows) {
    var el = panel.querySelector("table");
    var head = document.createElement("tr");
    spec.columns.forEach(function (k) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = columnLabel(k);
      if (rows.length && typeof rows[0][k] === "number") th.className = "num";
      head.appendChild(th);
    });
    el.tHead.replaceChildren(head);
    var body = el.tBodies[0];
    body.replaceChildren.apply(body, rows.map(function (r) {
      var tr = document.createElement("tr");
      spec.columns.forEach(function (k, i) {
        var cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) cell.scope = "row";
        if (typeof r[k] === "number") cell.className = "num";
        cell.textContent = display(k, r[k]);
        tr.appendChild(cell);
      });
      return tr;
    }));
  }

  // --- Drawing -------------------------------------------------------------------------------
  var charts = {};
  var lastRows = {};
  function chartFor(panel) {
    var key = panel.dataset.panel;
    if (!charts[key] && window.echarts) {
      charts[key] = window.echarts.init(panel.querySelector(".dashboard-chart"), null,
                                        { locale: zh ? "ZH" : "EN", renderer: "canvas" });
    }
    return charts[key];
  }
  function draw(panel) {
    var key = panel.dataset.panel, spec = PANELS[key], rows = lastRows[key];
    if (!rows) return;
    var empty = !rows.length;
    panel.dataset.state = empty ? "empty" : "ready";
    panel.dataset.rows = String(rows.length);
    var note = panel.querySelector(".dashboard-empty");
    if (empty && !note) {
      note = document.createElement("p");
      note.className = "dashboard-empty";
      note.textContent = S.noData;
      panel.querySelector(".dashboard-chart").after(note);
    } else if (!empty && note) {
      note.remove();
    }
    var chart = chartFor(panel);
    if (!chart) return;
    if (empty) { chart.clear(); return; }
    chart.resize();  // the box may have been hidden (empty) when the chart last drew
    chart.setOption(DRAW[spec.chart.type](spec.chart, rows), true);
    panel.dataset.drawn = String(Number(panel.dataset.drawn || 0) + 1);
  }

  function currentFilters() {
    var params = {};
    FILTERS.forEach(function (name) {
      var v = form.elements[name] && form.elements[name].value;
      if (v) params[name] = v;
    });
    return params;
  }

  function setExports(panel, spec, params) {
    panel.querySelector(".export-csv").href = api.url(spec.set, params, { format: "csv", table: spec.table });
    panel.querySelector(".export-xlsx").href = api.url(spec.set, params, { format: "xlsx", table: spec.table });
  }

  function panelsOf(set) {
    return Object.keys(PANELS).filter(function (key) { return PANELS[key].set === set; });
  }

  var generation = 0;
  function load() {
    var params = currentFilters();
    var mine = ++generation;
    root.dataset.state = "loading";
    errorBox.hidden = true;
    freshness.textContent = S.loading;
    var sets = {};
    Object.keys(PANELS).forEach(function (key) {
      var panel = document.getElementById("panel-" + key);
      panel.dataset.state = "loading";
      setExports(panel, PANELS[key], params);
      sets[PANELS[key].set] = true;
    });
    var refreshed = [], failures = [];
    return Promise.all(Object.keys(sets).map(function (set) {
      return api.load(set, params).then(function (body) {
        if (mine !== generation) return;
        refreshed.push(api.refreshedAt(body));
        panelsOf(set).forEach(function (key) {
          var panel = document.getElementById("panel-" + key);
          lastRows[key] = api.rows(body, PANELS[key].table);
          renderTable(panel, PANELS[key], lastRows[key]);
          draw(panel);
        });
      }, function (err) {
        failures.push(err.status || 0);
        panelsOf(set).forEach(function (key) {
          document.getElementById("panel-" + key).dataset.state = "failed";
        });
      });
    })).then(function () {
      if (mine !== generation) return;
      if (failures.length) {
        errorBox.textContent = fill(S.failed, { status: failures[0] });
        errorBox.hidden = false;
      }
      showFreshness(refreshed);
      root.dataset.filters = new URLSearchParams(params).toString();
      root.dataset.state = failures.length ? "failed" : "ready";
    });
  }

  function showFreshness(refreshed) {
    if (!refreshed.length) { freshness.textContent = ""; return; }
    if (refreshed.some(function (t) { return !t; })) {
      freshness.textContent = S.neverRefreshed;
      freshness.dataset.refreshedAt = "";
      return;
    }
    // The oldest refresh among the sets is what the whole page can promise.
    refreshed.sort();
    var at = new Date(refreshed[0]);
    freshness.dataset.refreshedAt = refreshed[0];
    freshness.textContent = fill(S.asOf, {
      time: at.toLocaleString(zh ? "zh-CN" : "en-GB", { dateStyle: "medium", timeStyle: "short" }),
    }) + " " + S.refreshEvery;
  }

  // --- Filters: narrow the institution list, reload without leaving the page ----------------
  function narrowInstitutions() {
    var alliance = form.elements.alliance.value, region = form.elements.region.value;
    var tier = form.elements.tier.value;
    Array.prototype.forEach.call(form.elements.institution.options, function (opt) {
      if (!opt.value) return;
      var fits = (!alliance || opt.dataset.alliances.split(" ").indexOf(alliance) >= 0) &&
        (!region || opt.dataset.region.indexOf(region) === 0) &&
        (!tier || opt.dataset.tiers.split(" ").indexOf(tier) >= 0);
      opt.hidden = opt.disabled = !fits;
      if (!fits && opt.selected) form.elements.institution.value = "";
    });
  }
  function apply() {
    if (!form.reportValidity()) return;
    var q = new URLSearchParams(currentFilters()).toString();
    history.replaceState(null, "", location.pathname + (q ? "?" + q : ""));
    load();
  }
  form.addEventListener("change", function () { narrowInstitutions(); apply(); });
  form.addEventListener("submit", function (e) { e.preventDefault(); apply(); });

  // --- Projector and phone: large type, and charts that follow their box --------------------
  function setLarge(on) {
    root.classList.toggle("large", on);
    largeButton.setAttribute("aria-pressed", on ? "true" : "false");
    fontScale = on ? 1.6 : 1;
    try { localStorage.setItem("hub.dashboard.large", on ? "1" : ""); } catch (e) { /* private mode */ }
    Object.keys(charts).forEach(function (key) { draw(document.getElementById("panel-" + key)); });
  }
  largeButton.addEventListener("click", function () { setLarge(!root.classList.contains("large")); });
  try { if (localStorage.getItem("hub.dashboard.large")) setLarge(true); } catch (e) { /* ignore */ }
  if (window.ResizeObserver) {
    var observer = new ResizeObserver(function (entries) {
      entries.forEach(function (entry) {
        var key = entry.target.closest(".dashboard-panel").dataset.panel;
        if (charts[key]) charts[key].resize();
      });
    });
    document.querySelectorAll(".dashboard-chart").forEach(function (el) { observer.observe(el); });
  }

  root.dataset.charts = window.echarts ? "echarts" : "missing";  // tables and exports still work
  narrowInstitutions();
  load();
})();
