/* The study page's viewer: pages through frames rendered by the hub (WADO-RS /rendered).
 *
 * The server does the pixel work (decode, window, scale); this script only chooses which
 * frame and window to ask for, keeps the neighbours prefetched, and draws the picture on a
 * canvas with zoom, pan and length measurements. A window preset or a window drag is a new
 * request with the `window` query parameter (the server's rendering is the one source of the
 * pixels); inverting is drawn here, on the canvas, since it needs no new picture. Each series
 * brings its own presets (CT: the HU presets; others: the header's windows and the full
 * range); number keys choose them. All text from the study goes in through textContent,
 * never as HTML.
 */
(function () {
  "use strict";

  var dataNode = document.getElementById("viewer-data");
  var root = document.getElementById("viewer");
  if (!dataNode || !root) { return; }
  var data = JSON.parse(dataNode.textContent);
  var strings = JSON.parse(document.getElementById("viewer-strings").textContent);
  if (!data.series.length) {
    root.querySelector(".viewer-stage").hidden = true;
    return;
  }

  var stage = document.getElementById("viewer-stage");
  var canvas = document.getElementById("viewer-canvas");
  var ctx = canvas.getContext("2d");
  var slider = document.getElementById("slice-slider");
  var sliceText = document.getElementById("slice-index");
  var seriesText = document.getElementById("overlay-series");
  var windowText = document.getElementById("window-info");
  var zoomText = document.getElementById("zoom-info");
  var statusText = document.getElementById("viewer-status");
  var measurementText = document.getElementById("measurement");
  var presetGroup = document.getElementById("presets");
  var invertButton = document.getElementById("viewer-invert");
  var fullscreenButton = document.getElementById("viewer-fullscreen");

  var CACHE_LIMIT = 160;
  var PREFETCH_AHEAD = 4;
  var PREFETCH_BEHIND = 2;
  var WHEEL_STEP = 100;       // one mouse-wheel notch in Chrome; trackpads add up to it
  var DRAG_STEP_PX = 8;       // stack-scroll: this many CSS pixels of drag per image
  var MAX_REQUEST_SIDE = 1024;

  var state = {
    series: null,
    index: 0,
    direction: 1,
    window: null,             // {center, width}; null: the image's own window
    preset: "default",
    inverted: false,
    zoom: 1,
    panX: 0,
    panY: 0,
    tool: "scroll",
    image: null,
    imageDims: null,          // [rows, cols] of the slice the image belongs to
    wantedUrl: "",
    measurements: {},         // slice key -> [{a:{x,y}, b:{x,y}}]
    requestTimer: 0,
  };

  function fmt(template, values) {
    return template.replace(/\{(\w+)\}/g, function (match, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : match;
    });
  }

  function clamp(value, low, high) { return Math.max(low, Math.min(high, value)); }

  function tidy(number) { return Number(Number(number).toFixed(2)); }

  // --- URLs and the image cache -----------------------------------------------------------

  function viewportFor(rows, cols) {
    // Big radiographs are asked for at a screen's size; CT/MR slices come whole.
    var side = Math.max(rows, cols);
    if (side <= MAX_REQUEST_SIDE) { return ""; }
    return MAX_REQUEST_SIDE + "," + MAX_REQUEST_SIDE;
  }

  function frameUrl(series, index, win) {
    var slice = series.slices[index];
    var params = [];
    if (win) {
      params.push("window=" + encodeURIComponent(tidy(win.center) + "," + tidy(win.width) + ",linear"));
    }
    var viewport = viewportFor(slice[2], slice[3]);
    if (viewport) { params.push("viewport=" + encodeURIComponent(viewport)); }
    return data.base + "/series/" + encodeURIComponent(series.uid) +
      "/instances/" + encodeURIComponent(slice[0]) + "/frames/" + slice[1] + "/rendered" +
      (params.length ? "?" + params.join("&") : "");
  }

  var cache = new Map();

  function load(url) {
    var entry = cache.get(url);
    if (entry) {
      cache.delete(url);        // most recently used goes last
      cache.set(url, entry);
      return entry.ready;
    }
    var img = new Image();
    img.decoding = "async";
    var ready = new Promise(function (resolve, reject) {
      img.onload = function () { resolve(img); };
      img.onerror = function () {
        cache.delete(url);
        reject(new Error("image failed"));
      };
    });
    img.src = url;
    cache.set(url, { img: img, ready: ready });
    while (cache.size > CACHE_LIMIT) { cache.delete(cache.keys().next().value); }
    return ready;
  }

  function prefetch(index) {
    var total = state.series.slices.length;
    var order = [];
    for (var i = 1; i <= PREFETCH_AHEAD; i++) { order.push(index + i * state.direction); }
    for (var j = 1; j <= PREFETCH_BEHIND; j++) { order.push(index - j * state.direction); }
    order.forEach(function (n) {
      if (n >= 0 && n < total) { load(frameUrl(state.series, n, state.window)).catch(function () {}); }
    });
  }

  // --- Geometry ---------------------------------------------------------------------------

  function aspect() {
    // Rows and columns may be spaced differently (PixelSpacing is row, column).
    var s = state.series.pixelSpacing;
    return s ? s[0] / s[1] : 1;
  }

  function transform() {
    var dims = state.imageDims || [1, 1];
    var rows = dims[0], cols = dims[1];
    var dpr = window.devicePixelRatio || 1;
    var ratio = aspect();
    var fit = Math.min(canvas.width / cols, canvas.height / (rows * ratio));
    var scale = fit * state.zoom;
    return {
      scale: scale,
      sy: scale * ratio,
      ox: (canvas.width - cols * scale) / 2 + state.panX * dpr,
      oy: (canvas.height - rows * scale * ratio) / 2 + state.panY * dpr,
      dpr: dpr,
    };
  }

  function imagePoint(event) {
    var rect = canvas.getBoundingClientRect();
    var t = transform();
    var cx = (event.clientX - rect.left) * t.dpr;
    var cy = (event.clientY - rect.top) * t.dpr;
    return { x: (cx - t.ox) / t.scale, y: (cy - t.oy) / t.sy };
  }

  function zoomAt(clientX, clientY, factor) {
    var rect = canvas.getBoundingClientRect();
    var before = transform();
    var cx = (clientX - rect.left) * before.dpr;
    var cy = (clientY - rect.top) * before.dpr;
    var px = (cx - before.ox) / before.scale;
    var py = (cy - before.oy) / before.sy;
    state.zoom = clamp(state.zoom * factor, 0.2, 20);
    var after = transform();
    // Keep the point under the cursor where it was.
    state.panX += (cx - (after.ox + px * after.scale)) / after.dpr;
    state.panY += (cy - (after.oy + py * after.sy)) / after.dpr;
    draw();
  }

  // --- Drawing ----------------------------------------------------------------------------

  function sliceKey() {
    var slice = state.series.slices[state.index];
    return state.series.uid + "/" + slice[0] + "/" + slice[1];
  }

  function lengthText(m) {
    var dx = m.b.x - m.a.x;
    var dy = m.b.y - m.a.y;
    var spacing = state.series.pixelSpacing;
    if (spacing) {
      var mm = Math.sqrt(Math.pow(dx * spacing[1], 2) + Math.pow(dy * spacing[0], 2));
      return fmt(strings.mm, { length: mm.toFixed(1) });
    }
    return fmt(strings.px, { length: Math.sqrt(dx * dx + dy * dy).toFixed(1) });
  }

  function draw() {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!state.image) { return; }
    var t = transform();
    var dims = state.imageDims;
    ctx.imageSmoothingEnabled = true;
    ctx.setTransform(t.scale, 0, 0, t.sy, t.ox, t.oy);
    ctx.drawImage(state.image, 0, 0, dims[1], dims[0]);
    if (state.inverted) {
      // White "difference" over the picture is its negative, in every browser.
      ctx.globalCompositeOperation = "difference";
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, dims[1], dims[0]);
      ctx.globalCompositeOperation = "source-over";
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    (state.measurements[sliceKey()] || []).forEach(function (m) {
      var ax = t.ox + m.a.x * t.scale, ay = t.oy + m.a.y * t.sy;
      var bx = t.ox + m.b.x * t.scale, by = t.oy + m.b.y * t.sy;
      ctx.lineWidth = 2 * t.dpr;
      ctx.strokeStyle = "#ffd400";
      ctx.fillStyle = "#ffd400";
      ctx.beginPath();
      ctx.moveTo(ax, ay);
      ctx.lineTo(bx, by);
      ctx.stroke();
      [[ax, ay], [bx, by]].forEach(function (p) {
        ctx.beginPath();
        ctx.arc(p[0], p[1], 3 * t.dpr, 0, 2 * Math.PI);
        ctx.fill();
      });
      ctx.font = (13 * t.dpr) + "px sans-serif";
      ctx.lineWidth = 3 * t.dpr;
      ctx.strokeStyle = "#000";
      var label = lengthText(m);
      ctx.strokeText(label, bx + 6 * t.dpr, by - 6 * t.dpr);
      ctx.fillText(label, bx + 6 * t.dpr, by - 6 * t.dpr);
    });
    zoomText.textContent = fmt(strings.zoom, { percent: Math.round(state.zoom * 100) });
  }

  function resize() {
    var dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(stage.clientWidth * dpr));
    canvas.height = Math.max(1, Math.round(stage.clientHeight * dpr));
    draw();
  }

  // --- Showing a slice --------------------------------------------------------------------

  function defaultWindow() {
    var w = state.series.windows[0];
    if (w) { return { center: w[0], width: w[1] }; }
    var top = Math.pow(2, state.series.bitsStored || 8);
    return { center: top / 2, width: top };
  }

  function showWindowInfo(win) {
    var shown = win || defaultWindow();
    windowText.textContent = fmt(strings.window, {
      width: Math.round(shown.width), center: Math.round(shown.center),
    });
  }

  function show(index) {
    var series = state.series;
    var total = series.slices.length;
    index = clamp(Math.round(index), 0, total - 1);
    if (index !== state.index) { state.direction = index > state.index ? 1 : -1; }
    state.index = index;
    slider.value = String(index + 1);
    sliceText.textContent = fmt(strings.image, { n: index + 1, total: total });
    root.dataset.sliceIndex = String(index + 1);
    requestImage();
  }

  function requestImage() {
    var index = state.index;
    var series = state.series;
    var url = frameUrl(series, index, state.window);
    var slice = series.slices[index];
    state.wantedUrl = url;
    root.dataset.imageUrl = url;
    showWindowInfo(state.window);
    load(url).then(function (img) {
      if (state.wantedUrl !== url) { return; }   // the reader has moved on
      state.image = img;
      state.imageDims = [slice[2], slice[3]];
      statusText.textContent = "";
      root.dataset.shownUrl = url;
      draw();
      prefetch(index);
    }, function () {
      if (state.wantedUrl === url) { statusText.textContent = strings.failed; }
    });
  }

  // A window dragged by hand asks the server at most every so often; the last one always.
  function requestImageSoon() {
    showWindowInfo(state.window);
    if (state.requestTimer) { return; }
    state.requestTimer = window.setTimeout(function () {
      state.requestTimer = 0;
      requestImage();
    }, 120);
  }

  function step(delta) { show(state.index + delta); }

  function loadSeries(position) {
    var series = data.series[position];
    state.series = series;
    state.index = 0;
    state.direction = 1;
    state.window = null;
    state.zoom = 1;
    state.panX = state.panY = 0;
    state.image = null;
    buildPresets(series);
    setPreset("default");
    slider.max = String(series.slices.length);
    slider.disabled = series.slices.length < 2;
    var number = series.number === null || series.number === undefined ? position + 1 : series.number;
    var label = fmt(strings.series, { n: number }) + (series.modality ? " · " + series.modality : "");
    seriesText.textContent = label;
    document.querySelectorAll(".series-item[data-series-uid]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.seriesUid === series.uid));
    });
    statusText.textContent = strings.loading;
    draw();
    show(0);
  }

  // --- Tools ------------------------------------------------------------------------------

  function setTool(tool) {
    state.tool = tool;
    stage.dataset.tool = tool;
    document.querySelectorAll("#tools [data-tool]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
    });
  }

  function setPreset(key) {
    state.preset = key;
    root.dataset.preset = key;
    presetGroup.querySelectorAll("[data-preset]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.preset === key));
    });
  }

  function presetButton(key, label, center, width, position) {
    var button = document.createElement("button");
    button.type = "button";
    button.dataset.preset = key;
    if (center !== null) {
      button.dataset.center = String(center);
      button.dataset.width = String(width);
    }
    button.setAttribute("aria-pressed", "false");
    button.textContent = label;
    if (position <= 9) {
      button.setAttribute("aria-keyshortcuts", String(position));
      button.title = fmt(strings.key, { key: position });
    }
    return button;
  }

  // The window buttons of this series: the image's own window first (key 1), then its presets.
  function buildPresets(series) {
    var first = presetGroup.querySelector("[data-preset=default]");
    var label = first ? first.textContent : "1";
    presetGroup.textContent = "";
    presetGroup.appendChild(presetButton("default", label, null, null, 1));
    (series.presets || []).forEach(function (p, n) {
      presetGroup.appendChild(presetButton(p.key, p.label, p.center, p.width, n + 2));
    });
  }

  function choosePreset(button) {
    var key = button.dataset.preset;
    state.window = key === "default" ? null
      : { center: Number(button.dataset.center), width: Number(button.dataset.width) };
    setPreset(key);
    requestImage();
  }

  function setInverted(on) {
    state.inverted = on;
    root.dataset.inverted = String(on);
    invertButton.setAttribute("aria-pressed", String(on));
    draw();
  }

  function resetView() {
    state.zoom = 1;
    state.panX = state.panY = 0;
    state.window = null;
    setPreset("default");
    setInverted(false);
    requestImage();
  }

  function toggleFullscreen() {
    if (document.fullscreenElement) {
      document.exitFullscreen();
    } else if (root.requestFullscreen) {
      root.requestFullscreen().catch(function () { /* refused: the page stays as it is */ });
    }
  }

  function updateMeasurementText(m) {
    measurementText.textContent = m ? lengthText(m) : "";
  }

  var pointers = new Map();
  var gesture = null;

  function pinchInfo() {
    var points = Array.from(pointers.values());
    var a = points[0], b = points[1];
    return {
      distance: Math.max(1, Math.hypot(a.x - b.x, a.y - b.y)),
      midX: (a.x + b.x) / 2,
      midY: (a.y + b.y) / 2,
    };
  }

  canvas.addEventListener("pointerdown", function (event) {
    stage.focus({ preventScroll: true });
    canvas.setPointerCapture(event.pointerId);
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    event.preventDefault();
    if (pointers.size === 2) {
      // A second finger turns whatever the first one did into a pinch (zoom + pan).
      if (gesture && gesture.kind === "measure") { dropDraftMeasurement(); }
      var info = pinchInfo();
      gesture = { kind: "pinch", distance: info.distance, midX: info.midX, midY: info.midY,
                  zoom: state.zoom, panX: state.panX, panY: state.panY };
      return;
    }
    if (pointers.size > 2) { return; }
    var tool = (event.button === 1 || event.button === 2) ? "pan" : state.tool;
    gesture = { kind: tool, x: event.clientX, y: event.clientY, moved: 0,
                // A finger swiping up pages forward, as content scrolls on a phone; a mouse
                // dragging down does, as in reading-room viewers.
                direction: event.pointerType === "touch" ? -1 : 1,
                zoom: state.zoom, panX: state.panX, panY: state.panY,
                window: state.window || defaultWindow() };
    if (tool === "measure" && state.image) {
      var point = imagePoint(event);
      var list = state.measurements[sliceKey()] = state.measurements[sliceKey()] || [];
      gesture.measurement = { a: point, b: { x: point.x, y: point.y } };
      list.push(gesture.measurement);
    }
  });

  function dropDraftMeasurement() {
    var list = state.measurements[sliceKey()] || [];
    var index = list.indexOf(gesture.measurement);
    if (index >= 0) { list.splice(index, 1); }
    draw();
  }

  canvas.addEventListener("pointermove", function (event) {
    if (!pointers.has(event.pointerId) || !gesture) { return; }
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    if (gesture.kind === "pinch") {
      if (pointers.size < 2) { return; }
      var info = pinchInfo();
      state.zoom = clamp(gesture.zoom * info.distance / gesture.distance, 0.2, 20);
      state.panX = gesture.panX + (info.midX - gesture.midX);
      state.panY = gesture.panY + (info.midY - gesture.midY);
      draw();
      return;
    }
    var dx = event.clientX - gesture.x;
    var dy = event.clientY - gesture.y;
    if (gesture.kind === "scroll") {
      // Follow the finger or mouse: every few pixels is one image, either axis.
      var travel = (Math.abs(dy) >= Math.abs(dx) ? dy : dx) * gesture.direction;
      var steps = Math.trunc((travel - gesture.moved) / DRAG_STEP_PX);
      if (steps) {
        gesture.moved += steps * DRAG_STEP_PX;
        step(steps);
      }
    } else if (gesture.kind === "window") {
      var base = gesture.window;
      var sensitivity = Math.max(base.width / 256, 0.5);
      state.window = {
        center: base.center - dy * sensitivity,
        width: Math.max(1, base.width + dx * sensitivity * 2),
      };
      setPreset("");
      requestImageSoon();
    } else if (gesture.kind === "pan") {
      state.panX = gesture.panX + dx;
      state.panY = gesture.panY + dy;
      draw();
    } else if (gesture.kind === "zoom") {
      state.zoom = clamp(gesture.zoom * Math.exp(-dy / 200), 0.2, 20);
      draw();
    } else if (gesture.kind === "measure" && gesture.measurement) {
      gesture.measurement.b = imagePoint(event);
      updateMeasurementText(gesture.measurement);
      draw();
    }
  });

  function endPointer(event) {
    pointers.delete(event.pointerId);
    if (!gesture) { return; }
    if (gesture.kind === "measure" && gesture.measurement) {
      var m = gesture.measurement;
      if (Math.hypot(m.b.x - m.a.x, m.b.y - m.a.y) < 1) {
        dropDraftMeasurement();   // a click is not a measurement
      } else {
        updateMeasurementText(m);
      }
    }
    if (gesture.kind === "window") { requestImage(); }
    if (pointers.size === 0) { gesture = null; }
    else if (gesture.kind === "pinch") { gesture = null; }
  }

  canvas.addEventListener("pointerup", endPointer);
  canvas.addEventListener("pointercancel", endPointer);
  canvas.addEventListener("contextmenu", function (event) { event.preventDefault(); });

  var wheelTravel = 0;
  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    if (event.ctrlKey || event.metaKey) {
      // Trackpad pinches arrive as ctrl+wheel too.
      zoomAt(event.clientX, event.clientY, Math.exp(-event.deltaY / 300));
      return;
    }
    if (event.deltaMode === 1) {            // lines (Firefox): one event is one notch
      step(event.deltaY > 0 ? 1 : -1);
      return;
    }
    wheelTravel += event.deltaY;
    var steps = Math.trunc(wheelTravel / WHEEL_STEP);
    if (steps) {
      wheelTravel -= steps * WHEEL_STEP;
      step(steps);
    }
  }, { passive: false });

  var strip = document.getElementById("series-strip");

  document.addEventListener("keydown", function (event) {
    var target = event.target || document.body;
    if (/^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName) || target.isContentEditable) { return; }
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }   // the browser's own
    // Keys page the images when nothing else on the page has asked for them.
    var ours = target === document.body || target === document.documentElement ||
      root.contains(target) || (strip && strip.contains(target));
    if (!ours) { return; }
    var total = state.series.slices.length;
    var handled = true;
    switch (event.key) {
      case "ArrowDown": case "ArrowRight": step(1); break;
      case "ArrowUp": case "ArrowLeft": step(-1); break;
      case "PageDown": step(10); break;
      case "PageUp": step(-10); break;
      case "Home": show(0); break;
      case "End": show(total - 1); break;
      case "+": case "=": state.zoom = clamp(state.zoom * 1.25, 0.2, 20); draw(); break;
      case "-": state.zoom = clamp(state.zoom / 1.25, 0.2, 20); draw(); break;
      case "0": state.zoom = 1; state.panX = state.panY = 0; draw(); break;
      case "i": case "I": setInverted(!state.inverted); break;
      case "r": case "R": resetView(); break;
      case "f": case "F":
        if (fullscreenButton.hidden) { handled = false; } else { toggleFullscreen(); }
        break;
      default:
        if (/^[1-9]$/.test(event.key)) {
          var button = presetGroup.querySelectorAll("[data-preset]")[Number(event.key) - 1];
          if (button) { choosePreset(button); } else { handled = false; }
        } else {
          handled = false;
        }
    }
    if (handled) { event.preventDefault(); }
  });

  slider.addEventListener("input", function () { show(Number(slider.value) - 1); });

  document.querySelectorAll("#tools [data-tool]").forEach(function (button) {
    button.addEventListener("click", function () { setTool(button.dataset.tool); });
  });

  presetGroup.addEventListener("click", function (event) {
    var button = event.target.closest("[data-preset]");
    if (button) { choosePreset(button); }
  });

  invertButton.addEventListener("click", function () { setInverted(!state.inverted); });

  document.getElementById("viewer-reset").addEventListener("click", resetView);

  if (document.fullscreenEnabled && root.requestFullscreen) {
    fullscreenButton.hidden = false;
    fullscreenButton.addEventListener("click", toggleFullscreen);
    document.addEventListener("fullscreenchange", function () {
      fullscreenButton.setAttribute("aria-pressed", String(document.fullscreenElement === root));
    });
  }

  document.getElementById("measure-clear").addEventListener("click", function () {
    state.measurements = {};
    updateMeasurementText(null);
    draw();
  });

  document.querySelectorAll(".series-item[data-series-uid]").forEach(function (button) {
    button.addEventListener("click", function () {
      var position = data.series.findIndex(function (s) { return s.uid === button.dataset.seriesUid; });
      if (position >= 0) { loadSeries(position); }
    });
  });

  if (window.ResizeObserver) {
    new ResizeObserver(resize).observe(stage);
  } else {
    window.addEventListener("resize", resize);
  }
  setTool("scroll");
  resize();
  loadSeries(0);
})();
