// Browser upload: read each DICOM file's header, group the files by study, ask the hub what
// it already holds, send the rest by STOW-RS with a progress bar per study, and after a
// dropped connection continue without sending again what already arrived.
(function () {
  "use strict";

  var root = document.getElementById("upload");
  if (!root) return;
  var config = JSON.parse(document.getElementById("upload-config").textContent);
  var T = JSON.parse(document.getElementById("upload-strings").textContent);

  var HEADER_SLICE = 64 * 1024;       // first read; grows when a header is longer
  var STALL_MS = 60 * 1000;           // an upload that moves no byte this long has dropped
  var RETRY_FIRST_MS = 5 * 1000;
  var RETRY_MAX_MS = 60 * 1000;
  var CREATOR = "ALLIANCE HUB";       // private creator of (0009,1001), referrals/dicomweb/stow.py
  var DICOMDIR_CLASS = "1.2.840.10008.1.3.10";

  var $ = function (id) { return document.getElementById(id); };
  var statusEl = $("upload-status");
  var errorEl = $("upload-error");
  var sendBtn = $("upload-send");
  var continueBtn = $("upload-continue");
  var studiesEl = $("upload-studies");
  var rejectedEl = $("upload-rejected");
  var drop = $("upload-drop");

  var files = [];            // every accepted file: {file, path, size, sop, study, sha256, state, reason}
  var studies = new Map();   // study UID -> {uid, info, files[], el, inflight}
  var fingerprints = new Set();
  var running = false;
  var retryTimer = null;
  var countdownTimer = null;
  var failures = 0;

  function fmt(template, values) {
    return String(template).replace(/%\((\w+)\)s/g, function (_, key) {
      return values && key in values ? String(values[key]) : "";
    });
  }

  function setPhase(phase) { root.dataset.phase = phase; }

  function say(text) { statusEl.textContent = text; }

  function fail(text) {
    errorEl.textContent = text;
    errorEl.hidden = false;
  }

  function megabytes(bytes) {
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(0) + " KB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  // --- What the page needs from the browser and the server ------------------------------

  if (typeof window.dicomParser === "undefined") {
    // The vendored parser is installed by npm on the server; without it nothing works, so
    // say so instead of leaving a drop zone that silently does nothing.
    fail(T.vendorMissing);
    root.dataset.broken = "vendor";
    drop.querySelectorAll("input").forEach(function (input) { input.disabled = true; });
    return;
  }
  if (!window.crypto || !window.crypto.subtle) {
    fail(T.insecure);
    root.dataset.broken = "insecure";
    drop.querySelectorAll("input").forEach(function (input) { input.disabled = true; });
    return;
  }

  // --- Collecting files: drop (folders too), folder picker, file picker -----------------

  function entryFiles(entry) {
    if (entry.isFile) {
      return new Promise(function (resolve) {
        entry.file(function (file) { resolve([{ file: file, path: entry.fullPath.replace(/^\//, "") }]); },
                   function () { resolve([]); });
      });
    }
    if (!entry.isDirectory) return Promise.resolve([]);
    var reader = entry.createReader();
    var found = [];
    return new Promise(function (resolve) {
      // readEntries answers in chunks (100 in Chromium) until it answers with none.
      function next() {
        reader.readEntries(function (entries) {
          if (!entries.length) {
            Promise.all(found).then(function (lists) { resolve([].concat.apply([], lists)); });
            return;
          }
          entries.forEach(function (child) { found.push(entryFiles(child)); });
          next();
        }, function () { Promise.all(found).then(function (lists) { resolve([].concat.apply([], lists)); }); });
      }
      next();
    });
  }

  function fromDrop(dataTransfer) {
    var items = dataTransfer.items ? Array.prototype.slice.call(dataTransfer.items) : [];
    // Entries must be taken while the drop event runs: the list is emptied afterwards.
    var entries = items.map(function (item) {
      return item.kind === "file" && item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
    });
    if (entries.length && entries.every(Boolean)) {
      return Promise.all(entries.map(entryFiles)).then(function (lists) {
        return [].concat.apply([], lists);
      });
    }
    return Promise.resolve(Array.prototype.map.call(dataTransfer.files, function (file) {
      return { file: file, path: file.name };
    }));
  }

  function fromInput(input) {
    return Array.prototype.map.call(input.files, function (file) {
      return { file: file, path: file.webkitRelativePath || file.name };
    });
  }

  // --- Reading headers -----------------------------------------------------------------

  function decoderFor(charset) {
    var label = "utf-8";
    if (/GB18030|GBK|2022 IR 58/.test(charset)) label = "gb18030";
    else if (/ISO_IR 100/.test(charset) && !/192/.test(charset)) label = "windows-1252";
    try { return new TextDecoder(label); } catch (e) { return new TextDecoder("utf-8"); }
  }

  function reader(dataSet) {
    var bytes = dataSet.byteArray;
    var charset = "";
    function raw(tag) {
      var el = dataSet.elements[tag];
      if (!el || el.length === undefined || el.dataOffset + el.length > bytes.length) return null;
      return bytes.subarray(el.dataOffset, el.dataOffset + el.length);
    }
    function ascii(tag) {
      var value = raw(tag);
      if (!value) return "";
      return String.fromCharCode.apply(null, value).replace(/[\0 ]+$/, "").trim();
    }
    charset = ascii("x00080005");
    var decoder = decoderFor(charset);
    return {
      ascii: ascii,
      text: function (tag) {
        var value = raw(tag);
        if (!value) return "";
        // ISO 2022 escape sequences only switch character sets (GB2312 bytes between them
        // read as GB18030): drop them after decoding.
        return decoder.decode(value).replace(/\x1b[\x20-\x2f]*[\x30-\x7e]/g, "").replace(/[\0 ]+$/, "").trim();
      },
    };
  }

  function validUid(uid) {
    return uid.length <= 64 && /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(uid);
  }

  function parseHeader(bytes) {
    try {
      return dicomParser.parseDicom(bytes, { untilTag: "x7fe00010" });
    } catch (error) {
      // A slice ends inside the data set: the elements read so far come with the error.
      if (error && error.dataSet) return error.dataSet;
      throw error;
    }
  }

  function readHeader(item) {
    var file = item.file;
    if (file.size < 132) return Promise.reject(T.tooShort);
    var limit = HEADER_SLICE;
    function attempt() {
      var end = Math.min(limit, file.size);
      return file.slice(0, end).arrayBuffer().then(function (buffer) {
        var bytes = new Uint8Array(buffer);
        if (bytes[128] !== 0x44 || bytes[129] !== 0x49 || bytes[130] !== 0x43 || bytes[131] !== 0x4d) {
          throw T.notDicom;
        }
        var dataSet;
        try {
          dataSet = parseHeader(bytes);
        } catch (error) {
          throw T.unreadable;
        }
        var r = reader(dataSet);
        var info = {
          sop: r.ascii("x00080018"),
          study: r.ascii("x0020000d"),
          mediaClass: r.ascii("x00020002"),
          patientName: r.text("x00100010"),
          patientId: r.text("x00100020"),
          studyDate: r.ascii("x00080020"),
          modality: r.ascii("x00080060"),
          description: r.text("x00081030"),
        };
        if (info.sop && info.study) {
          // The hub refuses malformed UIDs (PS3.5 9.1); say so here instead of sending.
          if (!validUid(info.study)) throw T.badStudyUid;
          if (!validUid(info.sop)) throw T.badSopUid;
          return info;
        }
        if (end < file.size) {
          limit *= 8;  // a long header (big private blocks): read further and try again
          return attempt();
        }
        if (info.mediaClass === DICOMDIR_CLASS) throw T.dicomdir;
        throw info.study ? T.noSopUid : T.noStudyUid;
      }, function (error) {
        // A refusal of ours (a sentence) passes through; the browser's own error does not.
        throw typeof error === "string" ? error : T.readError;
      });
    }
    return attempt();
  }

  // --- The page: studies and files not sent ---------------------------------------------

  function personName(pn) {
    var groups = pn.split("=").map(function (group) {
      return group.split("^").filter(Boolean).join(" ").trim();
    }).filter(Boolean);
    return groups.join(" / ");
  }

  function isoDate(da) {
    return /^\d{8}$/.test(da) ? da.slice(0, 4) + "-" + da.slice(4, 6) + "-" + da.slice(6, 8) : da;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;  // textContent: never HTML from a file
    return node;
  }

  // A file not sent: its path, the reason in a sentence, and the hub's own words (in the
  // page's language: the requests name it) when it gave some.
  function fileRow(path, reason, detail) {
    var li = el("li");
    li.appendChild(el("span", "path", path));
    li.appendChild(el("span", "reason", reason));
    if (detail) li.appendChild(el("span", "detail", fmt(T.hubSaid, { words: detail })));
    return li;
  }

  function rejectLocally(path, reason) {
    rejectedEl.hidden = false;
    rejectedEl.querySelector("ul").appendChild(fileRow(path, reason));
  }

  function studyFor(info) {
    var study = studies.get(info.study);
    if (study) {
      if (info.modality) study.modalities.add(info.modality);
      return study;
    }
    study = { uid: info.study, info: info, files: [], modalities: new Set(), inflight: 0 };
    if (info.modality) study.modalities.add(info.modality);
    var li = el("li");
    li.dataset.studyUid = info.study;
    var head = el("div", "study-head");
    head.appendChild(el("span", "patient", personName(info.patientName) || T.noPatientName));
    var meta = el("span", "study-meta");
    head.appendChild(meta);
    li.appendChild(head);
    var row = el("div", "progress-row");
    var bar = el("progress");
    bar.max = 100;
    bar.value = 0;
    row.appendChild(bar);
    var pct = el("span", "pct", "0 %");
    row.appendChild(pct);
    li.appendChild(row);
    var files = el("p", "counts");
    var counts = el("p", "counts result");
    li.appendChild(files);
    li.appendChild(counts);
    var refused = el("ul", "plain files");
    li.appendChild(refused);
    studiesEl.appendChild(li);
    study.el = { li: li, meta: meta, bar: bar, pct: pct, files: files, counts: counts, refused: refused };
    studies.set(info.study, study);
    return study;
  }

  function drawStudy(study) {
    var total = 0, done = 0, stored = 0, present = 0, refused = 0;
    study.files.forEach(function (f) {
      total += f.size;
      if (f.state === "stored") { stored += 1; done += f.size; }
      else if (f.state === "present") { present += 1; done += f.size; }
      else if (f.state === "refused") { refused += 1; done += f.size; }
    });
    var info = study.info;
    study.el.meta.textContent = [info.patientId, isoDate(info.studyDate),
      Array.from(study.modalities).sort().join("/"), info.description].filter(Boolean).join(" · ");
    var percent = total ? Math.floor(100 * Math.min(done + study.inflight, total) / total) : 100;
    if (done < total && percent === 100) percent = 99;  // 100 % only once every file is answered
    study.el.bar.value = percent;
    study.el.pct.textContent = percent + " %";
    study.el.files.textContent = fmt(T.studyFiles, { files: study.files.length, size: megabytes(total) });
    study.el.counts.textContent = fmt(T.studyCounts, { stored: stored, present: present, refused: refused });
    study.el.li.dataset.state = done < total ? (study.inflight ? "sending" : "waiting")
      : (refused && !stored && !present ? "refused" : "done");
  }

  function refuse(file, reason, detail) {
    file.state = "refused";
    file.reason = reason;
    file.study.el.refused.appendChild(fileRow(file.path, reason, detail));
  }

  // The end of a batch, in words a technician reads at a glance: a batch that stored nothing
  // says so (never a green "Done"), one with refusals points at the reasons.
  function finished(t) {
    if (!t.stored && !t.present && t.refused) {
      setPhase("refused");
      say(fmt(T.nothingStored, t));
    } else {
      setPhase("done");
      say(fmt(t.refused ? T.doneWithRefusals : T.done, t));
    }
  }

  function totals() {
    var t = { files: 0, stored: 0, present: 0, refused: 0, pending: 0 };
    files.forEach(function (f) {
      t.files += 1;
      if (f.state === "stored") t.stored += 1;
      else if (f.state === "present") t.present += 1;
      else if (f.state === "refused") t.refused += 1;
      else t.pending += 1;
    });
    return t;
  }

  // --- Adding a selection ------------------------------------------------------------------

  function busy() {
    var phase = root.dataset.phase;
    return phase === "reading" || running;
  }

  function reset() {
    files = [];
    studies = new Map();
    fingerprints = new Set();
    studiesEl.textContent = "";
    rejectedEl.querySelector("ul").textContent = "";
    rejectedEl.hidden = true;
    failures = 0;
  }

  function add(items) {
    if (busy()) { say(T.busy); return Promise.resolve(); }
    if (root.dataset.phase === "done" || root.dataset.phase === "refused") reset();
    // More files after a dropped connection: they all go with the next Send.
    clearRetry();
    continueBtn.hidden = true;
    errorEl.hidden = true;
    setPhase("reading");
    items.sort(function (a, b) { return a.path.localeCompare(b.path, undefined, { numeric: true }); });
    var index = 0;
    var seen = new Map(files.map(function (f) { return [f.sop, f]; }));
    function next() {
      if (index >= items.length) return Promise.resolve();
      var item = items[index++];
      say(fmt(T.reading, { done: index, total: items.length }));
      return readHeader(item).then(function (info) {
        var key = item.path + "\u0000" + item.file.size + "\u0000" + item.file.lastModified;
        if (fingerprints.has(key)) return;  // the very same file picked again
        fingerprints.add(key);
        var earlier = seen.get(info.sop);
        if (earlier) {
          // Decided once the contents are hashed: the same bytes go once, other bytes
          // under the same UID would be refused by the hub, so they are not sent.
          earlier.twins = (earlier.twins || []).concat([item]);
          return;
        }
        var study = studyFor(info);
        var entry = { file: item.file, path: item.path, size: item.file.size, sop: info.sop,
                      study: study, sha256: null, state: "ready", reason: "" };
        seen.set(info.sop, entry);
        files.push(entry);
        study.files.push(entry);
      }, function (reason) {
        rejectLocally(item.path, String(reason));
      }).then(next);
    }
    return next().then(function () {
      studies.forEach(drawStudy);
      var t = totals();
      if (!t.pending) {
        if (files.length) {
          finished(t);
        } else {
          setPhase("idle");
          say(T.nothingToSend);
        }
        sendBtn.hidden = true;
        return;
      }
      setPhase("ready");
      say(fmt(T.ready, { files: t.pending, studies: studies.size }));
      sendBtn.hidden = false;
      sendBtn.focus();
    });
  }

  // --- Talking to the hub ----------------------------------------------------------------

  function Lost(status) { this.status = status || 0; }
  function Stopped(message) { this.message = message; }

  // The hub's reason from an error answer: its JSON "detail" sentence, never a raw page.
  function answerDetail(text) {
    try {
      var body = JSON.parse(text);
      return body && typeof body.detail === "string" ? body.detail.slice(0, 300) : "";
    } catch (e) {
      return "";
    }
  }

  function refusedBy(status, text) {
    if (status === 401 || status === 403) return new Stopped(fmt(T.stopped, { status: status }));
    var detail = answerDetail(text);
    return new Stopped(fmt(T.requestRefused, { status: status }) +
                       (detail ? " " + fmt(T.hubSaid, { words: detail }) : ""));
  }

  function csrfToken() {
    // The cookie is fresher than the page if the user signed in again in another tab.
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : root.dataset.csrf;
  }

  function headers() {
    // The hub's refusals come back in the page's own language, whatever the browser's is.
    return { "X-CSRFToken": csrfToken(), "X-Institution": String(config.institution),
             "Accept-Language": document.documentElement.lang || "zh-hans" };
  }

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function digestOf(file) {
    // The hub keeps the SHA-256 of each stored file: the same digest means the same bytes.
    return file.arrayBuffer()
      .then(function (buffer) { return crypto.subtle.digest("SHA-256", buffer); })
      .then(hex);
  }

  function datasetStart(buffer) {
    // Where the data set starts: after the file meta group, whose length is its first element.
    if (buffer.byteLength < 144) return -1;
    var view = new DataView(buffer);
    var b = new Uint8Array(buffer, 128, 10);
    if (String.fromCharCode(b[0], b[1], b[2], b[3]) !== "DICM") return -1;
    if (view.getUint16(132, true) !== 2 || view.getUint16(134, true) !== 0) return -1;
    if (String.fromCharCode(b[8], b[9]) !== "UL") return -1;
    return 144 + view.getUint32(140, true);
  }

  function digestsOf(file) {
    // The file's SHA-256 and its data set's: the hub recognises a copy of an instance it holds
    // by its data set, whatever file meta another program wrote around it.
    return file.arrayBuffer().then(function (buffer) {
      var start = datasetStart(buffer);
      return Promise.all([
        crypto.subtle.digest("SHA-256", buffer),
        start > 0 && start <= buffer.byteLength
          ? crypto.subtle.digest("SHA-256", buffer.slice(start)) : Promise.resolve(null)
      ]).then(function (d) { return { file: hex(d[0]), dataset: d[1] ? hex(d[1]) : "" }; });
    });
  }

  function hashAll(list) {
    var index = 0;
    function next() {
      if (index >= list.length) return Promise.resolve();
      var f = list[index++];
      say(fmt(T.hashing, { done: index, total: list.length }));
      var hashed = f.sha256 ? Promise.resolve() : digestsOf(f.file).then(function (digests) {
        f.sha256 = digests.file;
        f.datasetSha256 = digests.dataset;
      });
      return hashed.then(function () { return twinsOf(f); }).then(next);
    }
    return next();
  }

  function twinsOf(f) {
    if (!f.twins) return Promise.resolve();
    var twins = f.twins;
    f.twins = null;
    return Promise.all(twins.map(function (twin) {
      return digestOf(twin.file).then(function (digest) {
        rejectLocally(twin.path, digest === f.sha256 ? T.sameFileTwice : T.sameUidOtherContent);
      });
    }));
  }

  function check(list) {
    var chunks = [];
    for (var i = 0; i < list.length; i += config.checkMax) chunks.push(list.slice(i, i + config.checkMax));
    say(T.checking);
    return chunks.reduce(function (done, chunk) {
      return done.then(function () {
        var body = JSON.stringify({ instances: chunk.map(function (f) {
          var asked = { sop_instance_uid: f.sop, sha256: f.sha256 };
          if (f.datasetSha256) asked.dataset_sha256 = f.datasetSha256;
          return asked;
        }) });
        var init = { method: "POST", credentials: "same-origin", body: body,
                     headers: Object.assign({ "Content-Type": "application/json",
                                              Accept: "application/json" }, headers()) };
        return fetch(config.checkUrl, init).catch(function () { throw new Lost(0); })
          .then(function (response) {
            if (response.status >= 500) throw new Lost(response.status);
            if (!response.ok) {
              return response.text().then(function (text) { throw refusedBy(response.status, text); });
            }
            return response.json();
          })
          .then(function (answer) {
            var bySop = new Map(chunk.map(function (f) { return [f.sop, f]; }));
            answer.instances.forEach(function (a) {
              var f = bySop.get(a.sop_instance_uid);
              if (!f) return;
              if (a.status === "stored") f.state = "present";
              else if (a.status === "conflict") refuse(f, T.conflict);
              else if (a.status === "held") refuse(f, T.held);
            });
          });
      });
    }, Promise.resolve());
  }

  function batches(list) {
    var out = [];
    var current = null;
    list.forEach(function (f) {
      if (!current || current.study !== f.study || current.files.length >= config.batchFiles ||
          (current.bytes + f.size > config.batchBytes && current.files.length)) {
        current = { study: f.study, files: [], bytes: 0 };
        out.push(current);
      }
      current.files.push(f);
      current.bytes += f.size;
    });
    return out;
  }

  function multipart(batch) {
    var boundary = "hub-" + Array.prototype.map.call(crypto.getRandomValues(new Uint8Array(12)),
      function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
    var parts = [];
    batch.files.forEach(function (f) {
      parts.push("--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n", f.file, "\r\n");
    });
    parts.push("--" + boundary + "--\r\n");
    // A Blob of the files themselves: the browser streams them, nothing is copied here.
    return { body: new Blob(parts),
             type: 'multipart/related; type="application/dicom"; boundary=' + boundary };
  }

  function post(url, payload, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      var last = Date.now();
      var uploading = true;
      var watchdog = setInterval(function () {
        // A link that drops silently never errors: an upload that moves nothing has ended.
        if (uploading && Date.now() - last > STALL_MS) xhr.abort();
      }, 1000);
      function finish() { clearInterval(watchdog); }
      xhr.open("POST", url);
      var extra = headers();
      Object.keys(extra).forEach(function (name) { xhr.setRequestHeader(name, extra[name]); });
      xhr.setRequestHeader("Content-Type", payload.type);
      xhr.setRequestHeader("Accept", "application/dicom+json");
      xhr.upload.onprogress = function (event) {
        last = Date.now();
        onProgress(event.loaded, event.total || payload.body.size);
      };
      xhr.upload.onload = function () { uploading = false; };
      xhr.onload = function () {
        finish();
        resolve({ status: xhr.status, text: xhr.responseText,
                  type: xhr.getResponseHeader("Content-Type") || "" });
      };
      xhr.onerror = xhr.onabort = xhr.ontimeout = function () { finish(); reject(new Lost(0)); };
      xhr.send(payload.body);
    });
  }

  function value(item, tag) {
    var element = item && item[tag];
    return element && element.Value ? element.Value[0] : undefined;
  }

  // The failure reason code as a sentence for the technician; the hub's words as the detail.
  function reasonText(item) {
    var code = value(item, "00081197");
    var hexCode = code === undefined ? "" : ("0000" + Number(code).toString(16).toUpperCase()).slice(-4);
    return T.reasons[hexCode] || T.refusedOther;
  }

  function reasonDetail(item) {
    return value(item, "00090010") === CREATOR ? value(item, "00091001") || "" : "";
  }

  function answered(batch, response) {
    var body = null;
    if (/json/.test(response.type)) {
      try { body = JSON.parse(response.text); } catch (e) { body = null; }
    }
    if (!body) {
      batch.files.forEach(function (f) {
        refuse(f, fmt(T.requestRefused, { status: response.status }), answerDetail(response.text));
      });
      return;
    }
    var sending = new Map(batch.files.map(function (f) { return [f.sop, f]; }));
    function take(uid) {
      var f = sending.get(uid);
      if (f) sending.delete(uid);
      return f;
    }
    var referenced = (body["00081199"] && body["00081199"].Value) || [];
    var failed = (body["00081198"] && body["00081198"].Value) || [];
    referenced.forEach(function (item) {
      var f = take(value(item, "00081155"));
      if (f) f.state = "stored";
    });
    failed.forEach(function (item) {
      // A part the hub could not read has no UID in its answer; the answers keep the
      // order of the parts, so it is the first file not yet answered.
      var f = take(value(item, "00081155")) || take(sending.keys().next().value);
      if (f) refuse(f, reasonText(item), reasonDetail(item));
    });
    sending.forEach(function (f) { refuse(f, T.noAnswer); });
  }

  function sendBatch(batch, progress) {
    var payload = multipart(batch);
    var study = batch.study;
    var url = config.stowUrl + "/" + encodeURIComponent(study.uid);
    return post(url, payload, function (loaded, total) {
      study.inflight = total ? batch.bytes * loaded / total : 0;
      drawStudy(study);
    }).then(function (response) {
      study.inflight = 0;
      if (response.status === 0 || response.status >= 500) throw new Lost(response.status);
      if (response.status === 401 || response.status === 403) {
        throw refusedBy(response.status, response.text);
      }
      answered(batch, response);
      drawStudy(study);
      progress();
    }, function (error) {
      study.inflight = 0;
      drawStudy(study);
      throw error;
    });
  }

  // --- One run: hash, check, send; again after a dropped connection -----------------------

  function run() {
    if (running) return Promise.resolve();
    running = true;
    clearRetry();
    errorEl.hidden = true;
    sendBtn.hidden = true;
    continueBtn.hidden = true;
    setPhase("sending");
    var pending = files.filter(function (f) { return f.state === "ready"; });
    return hashAll(pending)
      .then(function () { return check(pending); })
      .then(function () {
        studies.forEach(drawStudy);
        var toSend = files.filter(function (f) { return f.state === "ready"; });
        var sent = 0;
        function progress() {
          sent = toSend.filter(function (f) { return f.state !== "ready"; }).length;
          say(fmt(T.sending, { done: sent, total: toSend.length }));
        }
        progress();
        return batches(toSend).reduce(function (done, batch) {
          return done.then(function () { return sendBatch(batch, progress); });
        }, Promise.resolve());
      })
      .then(function () {
        running = false;
        failures = 0;
        studies.forEach(drawStudy);
        finished(totals());
      }, function (error) {
        running = false;
        studies.forEach(drawStudy);
        if (error instanceof Lost) {
          lost();
        } else if (error instanceof Stopped) {
          setPhase("stopped");
          say(error.message);
          continueBtn.hidden = false;
        } else {
          setPhase("stopped");
          say(String(error && error.message || error));
          continueBtn.hidden = false;
        }
      });
  }

  function clearRetry() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = countdownTimer = null;
  }

  function lost() {
    failures += 1;
    setPhase("lost");
    continueBtn.hidden = false;
    var wait = Math.min(RETRY_FIRST_MS * Math.pow(2, failures - 1), RETRY_MAX_MS);
    var at = Date.now() + wait;
    function show() {
      var seconds = Math.max(0, Math.ceil((at - Date.now()) / 1000));
      say(T.lost + " " + fmt(T.retryIn, { seconds: seconds }));
    }
    show();
    countdownTimer = setInterval(show, 1000);
    retryTimer = setTimeout(run, wait);
  }

  // --- Wiring --------------------------------------------------------------------------

  sendBtn.addEventListener("click", run);
  continueBtn.addEventListener("click", run);
  window.addEventListener("online", function () {
    if (root.dataset.phase === "lost") run();
  });
  window.addEventListener("beforeunload", function (event) {
    var phase = root.dataset.phase;
    if (phase === "sending" || phase === "lost") { event.preventDefault(); event.returnValue = ""; }
  });

  ["upload-folder", "upload-files"].forEach(function (id) {
    var input = $(id);
    input.addEventListener("change", function () {
      var items = fromInput(input);
      input.value = "";
      if (items.length) add(items);
    });
  });

  // Dropping outside the zone must not make the browser open the file instead of the page.
  ["dragover", "drop"].forEach(function (type) {
    window.addEventListener(type, function (event) { event.preventDefault(); });
  });
  drop.addEventListener("dragover", function (event) {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    drop.classList.remove("over");
    fromDrop(event.dataTransfer).then(function (items) { if (items.length) add(items); });
  });
})();
