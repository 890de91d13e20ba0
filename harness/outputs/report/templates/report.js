/* report.html's only script: filters and pages the examples, nothing else.
   Data is read from the JSON block and drawn with createElement/textContent only, so no
   model output, reference or name is ever parsed as HTML. The page's CSP allows exactly
   this script (by its hash) and no network access. */
(function () {
  "use strict";
  var PAGE = 50;
  var blob = document.getElementById("report-data");
  var list = document.getElementById("ex-list");
  if (!blob || !list) { return; }
  var D = JSON.parse(blob.textContent);
  var models = D.models, tasks = D.tasks, items = D.items;
  var compare = D.base !== null && D.base !== undefined;
  var S = { adapter: compare ? D.adapters[0] : null, task: "", leak: "", reg: false, sort: "run", q: "", exact: null, page: 0 };
  var hay = null, shown = [];

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) { n.className = cls; }
    if (text !== undefined && text !== null) { n.textContent = String(text); }
    return n;
  }
  function haystack(it) {
    var parts = [it.i, it.s || "", tasks[it.t].name].concat(it.r);
    it.o.forEach(function (o) {
      if (o.p) { parts.push(o.p); }
      if (o.j) { Object.keys(o.j).forEach(function (k) { parts.push(o.j[k]); }); }
    });
    return parts.join("\n").toLowerCase();
  }
  function drop(it) {
    var o = compare ? it.o[S.adapter] : null;
    return o && o.g !== undefined ? o.g : null;
  }

  function filtered() {
    var q = S.q.toLowerCase(), out = [];
    if (q && !S.exact && hay === null) { hay = items.map(haystack); }
    for (var k = 0; k < items.length; k++) {
      var it = items[k];
      if (S.task !== "" && it.t !== +S.task) { continue; }
      if (S.leak && it.l !== S.leak) { continue; }
      if (S.reg && drop(it) === null) { continue; }
      if (S.exact !== null) { if (it.i !== S.exact) { continue; } }
      else if (q && hay[k].indexOf(q) < 0) { continue; }
      out.push(it);
    }
    if (compare && S.sort === "drop") {
      out = out.map(function (it, k) { return [it, k]; });
      out.sort(function (a, b) {
        var da = drop(a[0]), db = drop(b[0]);
        da = da === null ? -Infinity : parseFloat(da);
        db = db === null ? -Infinity : parseFloat(db);
        return db - da || a[1] - b[1];
      });
      out = out.map(function (p) { return p[0]; });
    }
    return out;
  }

  /* text with changed words marked; ranges are UTF-16 offsets [s0, e0, s1, e1, ...] */
  function output(text, ranges, cls) {
    var pre = el("pre", "out");
    if (text === null || text === undefined) { pre.appendChild(el("span", "muted", "(no output)")); return pre; }
    var at = 0;
    for (var k = 0; ranges && k + 1 < ranges.length; k += 2) {
      if (ranges[k] > at) { pre.appendChild(document.createTextNode(text.slice(at, ranges[k]))); }
      pre.appendChild(el("span", cls, text.slice(ranges[k], ranges[k + 1])));
      at = ranges[k + 1];
    }
    if (at < text.length) { pre.appendChild(document.createTextNode(text.slice(at))); }
    if (!text.length) { pre.appendChild(el("span", "muted", "(empty output)")); }
    return pre;
  }

  function column(title, o, ranges, cls) {
    var col = el("div", "col");
    col.appendChild(el("h4", null, title));
    col.appendChild(output(o ? o.p : null, ranges, cls));
    if (o && o.x) { col.appendChild(el("div", "muted small", "cut: " + o.x + " characters in all; items.jsonl has the full text")); }
    return col;
  }

  function card(it) {
    var task = tasks[it.t], g = drop(it);
    var box = el("article", "ex" + (g !== null ? " reg" : ""));
    var head = el("div", "ex-head");
    head.appendChild(el("strong", null, task.name));
    if (it.s) { head.appendChild(el("span", "muted", it.s)); }
    head.appendChild(el("span", "ex-id", it.i));
    if (g !== null) { head.appendChild(el("span", "chip fail", "▼ " + g + " on " + task.primary)); }
    if (it.l) { head.appendChild(el("span", "chip " + (it.l === "clean" || it.l === "suspect" || it.l === "contaminated" ? it.l : "none"), "leak: " + it.l)); }
    box.appendChild(head);

    var cols = el("div", "cols"), idx = [];
    if (compare) {
      var a = it.o[S.adapter];
      idx = [D.base, S.adapter];
      cols.appendChild(column(models[D.base], it.o[D.base], a ? a.b : null, "del"));
      cols.appendChild(column(models[S.adapter], a, a ? a.d : null, "ins"));
    } else {
      for (var m = 0; m < models.length; m++) { if (it.o[m]) { idx.push(m); cols.appendChild(column(models[m], it.o[m], null, "")); } }
    }
    box.appendChild(cols);
    var foot = el("div", "ex-foot");
    box.appendChild(foot);

    if (it.r.length) {
      var refs = el("ul", "refs");
      refs.appendChild(el("li", "muted lbl", it.r.length > 1 ? "references:" : "reference:"));
      it.r.slice(0, 5).forEach(function (r) { refs.appendChild(el("li", null, r)); });
      if (it.r.length > 5) { refs.appendChild(el("li", "muted", "+" + (it.r.length - 5) + " more")); }
      foot.appendChild(refs);
    }

    if (task.metrics.length) {
      var t = el("table"), tr = el("tr");
      tr.appendChild(el("th", null, "metric"));
      idx.forEach(function (m) { tr.appendChild(el("th", "num", models[m])); });
      t.appendChild(tr);
      task.metrics.forEach(function (name, k) {
        var row = el("tr");
        row.appendChild(el("td", null, name));
        var first = null;
        idx.forEach(function (m, j) {
          var v = it.o[m] ? it.o[m].c[k] : null, cls = "num";
          if (j === 0) { first = v; }
          else if (compare && v !== null && first !== null && v !== first) {
            var up = parseFloat(v) > parseFloat(first);
            cls += ((task.hib[k] ? up : !up) ? " better" : " worse");
          }
          row.appendChild(el("td", cls, v === null ? "–" : v));
        });
        t.appendChild(row);
      });
      foot.appendChild(t);
    }

    var dl = el("dl", "rat"), any = false;
    idx.forEach(function (m) {
      var j = it.o[m] && it.o[m].j;
      if (!j) { return; }
      Object.keys(j).forEach(function (k) {
        any = true;
        dl.appendChild(el("dt", null, k + " · " + models[m]));
        dl.appendChild(el("dd", null, j[k]));
      });
    });
    if (any) { foot.appendChild(dl); }
    return box;
  }

  function pager(where, pages) {
    var p = $(where);
    p.replaceChildren();
    var from = shown.length ? S.page * PAGE + 1 : 0, to = Math.min(shown.length, (S.page + 1) * PAGE);
    var prev = el("button", null, "← previous"), next = el("button", null, "next →");
    prev.type = next.type = "button";
    prev.disabled = S.page <= 0;
    next.disabled = S.page >= pages - 1;
    prev.addEventListener("click", function () { S.page--; draw(true); });
    next.addEventListener("click", function () { S.page++; draw(true); });
    p.appendChild(prev);
    p.appendChild(el("span", "count", "items " + from + "–" + to + " of " + shown.length +
      (shown.length !== items.length ? " (filtered from " + items.length + ")" : "") + " · page " + (pages ? S.page + 1 : 0) + " of " + pages));
    p.appendChild(next);
    if (S.exact !== null) {
      var clear = el("button", null, "show all items");
      clear.type = "button";
      clear.addEventListener("click", function () { S.exact = null; S.q = ""; $("f-q").value = ""; refresh(); });
      p.appendChild(clear);
    }
  }

  function draw(scroll) {
    var pages = Math.ceil(shown.length / PAGE);
    S.page = Math.max(0, Math.min(S.page, pages - 1));
    list.replaceChildren();
    var page = shown.slice(S.page * PAGE, (S.page + 1) * PAGE);
    if (!page.length) { list.appendChild(el("p", "empty", "No item matches these filters.")); }
    page.forEach(function (it) { list.appendChild(card(it)); });
    pager("pager-top", pages);
    pager("pager-bottom", pages);
    list.setAttribute("data-count", String(shown.length));
    if (scroll) { $("examples").scrollIntoView(); }
  }

  function refresh() { S.page = 0; shown = filtered(); draw(false); }

  function bind(id, key, event, read) {
    var n = $(id);
    if (!n) { return; }
    n.addEventListener(event, function () { S[key] = read(n); if (key === "q") { S.exact = null; } refresh(); });
  }
  bind("f-adapter", "adapter", "change", function (n) { return D.adapters[+n.value]; });
  bind("f-task", "task", "change", function (n) { return n.value; });
  bind("f-leak", "leak", "change", function (n) { return n.value; });
  bind("f-reg", "reg", "change", function (n) { return n.checked; });
  bind("f-sort", "sort", "change", function (n) { return n.value; });
  bind("f-q", "q", "input", function (n) { return n.value; });
  var expand = $("f-expand");
  if (expand) { expand.addEventListener("change", function () { list.classList.toggle("expanded", expand.checked); }); }

  /* "open in examples" buttons of the flips tables */
  Array.prototype.forEach.call(document.querySelectorAll("button.goto"), function (b) {
    b.addEventListener("click", function () {
      var name = b.getAttribute("data-task"), a = models.indexOf(b.getAttribute("data-adapter"));
      S.task = "";
      for (var k = 0; k < tasks.length; k++) { if (tasks[k].name === name) { S.task = String(k); break; } }
      if (compare && a >= 0) { S.adapter = a; if ($("f-adapter")) { $("f-adapter").value = String(D.adapters.indexOf(a)); } }
      S.exact = b.getAttribute("data-item"); S.q = S.exact; S.reg = false; S.leak = "";
      $("f-q").value = S.exact;
      if ($("f-task")) { $("f-task").value = S.task; }
      if ($("f-reg")) { $("f-reg").checked = false; }
      if ($("f-leak")) { $("f-leak").value = ""; }
      S.page = 0; shown = filtered(); draw(true);
    });
  });

  /* printing shows what is folded away on screen */
  window.addEventListener("beforeprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) { d.open = true; });
  });

  refresh();
})();
