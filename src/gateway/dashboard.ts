/**
 * The dashboard: one self-contained page (HTML + CSS + a small inline script, nothing loaded from
 * anywhere else) served by the admin listener at GET /dashboard and /dashboard/{apps,usage,pool,
 * billing,deployments} (the same document; the script shows the page the path names). Apps: the list, and per
 * app requests/errors/p50/p99/CPU charts (GET /v1/apps/:app/stats, drawn here as inline SVG), the
 * deployment and its versions, routes, instances and recent log lines. Usage: per day and app.
 * Pool: instances per deployment and state, the last start failure, spare hosts. Billing:
 * invoices, their lines and a usage chart. Laid out for 390 px (a phone) up. The page itself is
 * public and holds no data; it asks for an API token (or takes `#token=...` from the URL
 * fragment, which never reaches the server), keeps it in sessionStorage and calls the /v1 API on
 * the same origin with `Authorization: Bearer`. Every string from the API is inserted with
 * textContent / createElement, never as markup. The Content-Security-Policy allows exactly the
 * inline script and style below (by SHA-256 hash) and same-origin fetches.
 */
import { createHash } from "node:crypto";

const STYLE = `
:root { color-scheme: light; --fg: #1d2430; --muted: #5b6575; --line: #d9dee7; --bg: #f6f7f9; --accent: #2f6fde; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; justify-content: space-between; padding: 10px 16px; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { font-size: 18px; margin: 0; }
header h1 span { color: var(--muted); font-weight: 400; }
form#token-form { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; flex: 1 1 320px; justify-content: flex-end; min-width: 0; }
form#token-form input { flex: 1 1 140px; min-width: 0; max-width: 300px; padding: 6px 8px; border: 1px solid var(--line); border-radius: 4px; font: inherit; }
button { padding: 6px 12px; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 4px; font: inherit; cursor: pointer; }
button.secondary { background: #fff; color: var(--accent); }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 16px; margin-bottom: 16px; }
section h2 { font-size: 15px; margin: 0 0 12px; }
section h2 button { margin-left: 8px; padding: 2px 10px; font-size: 12px; font-weight: 400; }
#chart { margin-top: 24px; }
.muted { color: var(--muted); }
#error { border: 1px solid var(--bad); background: #fdecea; color: var(--bad); border-radius: 6px; padding: 10px 14px; margin-bottom: 16px; white-space: pre-wrap; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tfoot td { font-weight: 700; border-bottom: 0; }
#invoices tbody tr { cursor: pointer; }
#invoices tbody tr:hover, #invoices tbody tr:focus { background: #eef3fc; outline: none; }
#invoices tbody tr.selected { background: #dfe9fb; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; border: 1px solid var(--line); background: #f1f3f6; }
.badge.open, .badge.synced { background: #e3f4e8; border-color: #a8d5b5; color: #1e6b35; }
.badge.draft, .badge.pending { background: #fff4dc; border-color: #efd08c; color: #7a5300; }
.badge.failed { background: #fdecea; border-color: #f0b4ae; color: var(--bad); }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0 0 12px; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; }
.chart svg { width: 100%; height: auto; display: block; }
.chart .bar { fill: var(--accent); }
.chart .axis { stroke: #9aa3b2; stroke-width: 1; }
.chart .grid { stroke: #e7eaf0; stroke-width: 1; }
.chart text { font: 11px system-ui, sans-serif; fill: var(--muted); }
.chart text.title { font-size: 13px; font-weight: 600; fill: var(--fg); }
.chart text.today { fill: var(--fg); font-weight: 700; }
nav { display: flex; flex-wrap: wrap; gap: 4px; }
nav a { padding: 4px 10px; border-radius: 4px; color: var(--accent); text-decoration: none; }
nav a.active { background: var(--accent); color: #fff; }
a { color: var(--accent); }
.scroll { overflow-x: auto; max-width: 100%; }
.mono, td.log-line { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
td.log-line, dd { overflow-wrap: anywhere; }
td.wrap { overflow-wrap: break-word; }
td.log-line { white-space: pre-wrap; }
td.time { white-space: nowrap; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px; }
.chart { min-width: 0; }
.chart .bar.err { fill: var(--bad); }
.chart .bar.cpu { fill: #6b8e23; }
.chart .line { fill: none; stroke-width: 2; }
.chart .line.p50, .chart .dot.p50 { stroke: var(--accent); fill: var(--accent); }
.chart .line.p50 { fill: none; }
.chart .line.p99, .chart .dot.p99 { stroke: #c77700; fill: #c77700; }
.chart .line.p99 { fill: none; }
.chart text.legend.req { fill: var(--accent); }
.chart text.legend.err { fill: var(--bad); }
.chart text.legend.p50 { fill: var(--accent); }
.chart text.legend.p99 { fill: #c77700; }
.chart text.legend.cpu { fill: #6b8e23; }
.row { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; justify-content: space-between; margin-bottom: 8px; }
.row h2 { margin: 0; }
select { font: inherit; padding: 4px 6px; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
tr.selected { background: #dfe9fb; }
.badge.active { background: #e3f4e8; border-color: #a8d5b5; color: #1e6b35; }
@media (max-width: 600px) {
  header { padding: 8px 10px; }
  main { padding: 10px 8px 32px; }
  section { padding: 12px 10px; }
  th, td { padding: 5px 6px; }
  header h1 span { display: none; }
  table.cards thead { display: none; }
  table.cards tr { display: block; border-bottom: 1px solid var(--line); padding: 6px 0; }
  table.cards td { display: flex; justify-content: space-between; gap: 12px; border: 0; padding: 2px 0; text-align: right; }
  table.cards td::before { content: attr(data-label); color: var(--muted); text-align: left; font: 14px system-ui, sans-serif; }
  table.cards td.num { white-space: normal; }
  table.logs thead { display: none; }
  table.logs tr { display: block; border-bottom: 1px solid var(--line); padding: 4px 0; }
  table.logs td { display: inline-block; border: 0; padding: 1px 6px 1px 0; }
  table.logs td.log-line { display: block; }
}
`;

const SCRIPT = `
"use strict";
(function () {
  var KEY = "zerocell.dashboard.token";
  var METRICS = { requests: "Requests", compute: "Compute", instructions: "Instructions" };
  var SVGNS = "http://www.w3.org/2000/svg";
  var $ = function (id) { return document.getElementById(id); };
  var selectSeq = 0;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function cell(row, text, cls) { var td = el("td", text, cls); row.appendChild(td); return td; }
  function badge(text) { var b = el("span", text, "badge"); if (/^[a-z]+$/.test(String(text))) b.classList.add(String(text)); return b; }

  /** Money from integer minor units (cents): Intl with the upper-cased ISO code. */
  function money(minor, currency) {
    var code = String(currency || "").toUpperCase();
    try {
      return new Intl.NumberFormat("en-US", { style: "currency", currency: code }).format(Number(minor) / 100);
    } catch (e) {
      return (Number(minor) / 100).toFixed(2) + " " + code;
    }
  }
  /** A unit price given in millionths of a minor unit, shown exactly (up to 10 decimals). */
  function unitPrice(micros, currency) {
    var code = String(currency || "").toUpperCase();
    var major = Number(micros) / 1e8;
    try {
      return new Intl.NumberFormat("en-US", { style: "currency", currency: code, minimumFractionDigits: 2, maximumFractionDigits: 10 }).format(major);
    } catch (e) {
      return String(major) + " " + code;
    }
  }
  function fmtInt(n) { return new Intl.NumberFormat("en-US").format(Number(n)); }

  function showError(message) {
    var box = $("error");
    box.textContent = message;
    box.hidden = false;
  }
  function clearError() { var box = $("error"); box.textContent = ""; box.hidden = true; }

  function token() { try { return sessionStorage.getItem(KEY) || ""; } catch (e) { return ""; } }
  function setToken(t) { try { if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY); } catch (e) { /* storage disabled */ } }

  /**
   * GET on the admin API; resolves to the JSON body or throws an Error with a readable message. A
   * paginated list (an answer with next_cursor) is followed to its end (at most 100 pages), its
   * items joined.
   */
  function api(path) {
    return apiPage(path).then(function (first) { return morePages(path, first, first, 1); });
  }
  function morePages(path, acc, page, n) {
    if (!page || typeof page.next_cursor !== "string" || n >= 100) return acc;
    return apiPage(path + (path.indexOf("?") >= 0 ? "&" : "?") + "cursor=" + encodeURIComponent(page.next_cursor)).then(function (next) {
      Object.keys(next).forEach(function (k) { if (Array.isArray(next[k]) && Array.isArray(acc[k])) acc[k] = acc[k].concat(next[k]); });
      acc.next_cursor = null;
      return morePages(path, acc, next, n + 1);
    });
  }
  /** POST of a JSON body to the admin API (the rollback button). */
  function apiPost(path, body) {
    return apiPage(path, { method: "POST", body: JSON.stringify(body) });
  }
  function apiPage(path, init) {
    var t = token();
    if (!t) return Promise.reject(new Error("Enter an API token first."));
    var headers = { authorization: "Bearer " + t, accept: "application/json" };
    if (init && init.body !== undefined) headers["content-type"] = "application/json";
    return fetch(path, { method: init && init.method ? init.method : "GET", body: init ? init.body : undefined, headers: headers, credentials: "omit", cache: "no-store" })
      .then(function (res) {
        return res.text().then(function (text) {
          var body = null;
          try { body = JSON.parse(text); } catch (e) { body = null; }
          if (!res.ok) {
            var err = body && body.error ? body.error : null;
            var msg = "HTTP " + res.status + (err && err.code ? " " + err.code : "") + ": " + (err && err.message ? err.message : (text.slice(0, 200) || res.statusText));
            throw new Error(msg);
          }
          if (body === null) throw new Error("HTTP " + res.status + ": the response is not JSON");
          return body;
        });
      }, function (e) { throw new Error("Network error: " + (e && e.message ? e.message : String(e))); });
  }

  function loadInvoices() {
    clearError();
    var tbody = $("invoice-rows");
    $("invoices-status").textContent = "Loading…";
    return api("/v1/invoices?drafts=1").then(function (body) {
      clear(tbody);
      var list = Array.isArray(body.invoices) ? body.invoices : [];
      $("invoices-status").textContent = list.length === 0 ? "No invoices yet: invoices appear once an account has usage." : list.length + (list.length === 1 ? " invoice" : " invoices") + " — click one for its lines and usage.";
      list.forEach(function (inv) {
        var tr = el("tr");
        tr.tabIndex = 0;
        tr.dataset.invoiceId = String(inv.id);
        cell(tr, inv.period);
        cell(tr, inv.account);
        cell(tr, "").appendChild(badge(inv.status));
        cell(tr, money(inv.total, inv.currency), "num total");
        var sync = cell(tr, "");
        sync.appendChild(badge(inv.syncStatus));
        if (inv.syncError) { sync.title = String(inv.syncError); sync.appendChild(el("div", inv.syncError, "muted")); }
        cell(tr, inv.lineCount, "num");
        tr.addEventListener("click", function () { selectInvoice(inv.id, tr); });
        tr.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); selectInvoice(inv.id, tr); } });
        tbody.appendChild(tr);
      });
      labelCells(tbody);
    }, function (e) {
      clear(tbody);
      $("invoices-status").textContent = "";
      showError(e.message);
    });
  }

  function selectInvoice(id, row) {
    var seq = ++selectSeq;
    clearError();
    Array.prototype.forEach.call(document.querySelectorAll("#invoice-rows tr"), function (r) { r.classList.remove("selected"); });
    if (row) row.classList.add("selected");
    $("detail").hidden = false;
    $("detail-title").textContent = "Invoice " + id;
    $("detail-status").textContent = "Loading…";
    clear($("detail-meta"));
    clear($("line-rows"));
    clear($("line-foot"));
    clear($("chart-svg-holder"));
    $("chart-status").textContent = "";
    api("/v1/invoices/" + encodeURIComponent(id)).then(function (body) {
      if (seq !== selectSeq) return;
      var inv = body.invoice;
      renderInvoice(inv);
      $("chart-status").textContent = "Loading usage…";
      var q = "account=" + encodeURIComponent(inv.account) + "&from=" + encodeURIComponent(inv.period + "-01") + "&to=" + encodeURIComponent(inv.period + "-31");
      return api("/v1/usage?" + q).then(function (u) {
        if (seq !== selectSeq) return;
        renderChart(inv, Array.isArray(u.usage) ? u.usage : []);
      });
    }).catch(function (e) {
      if (seq !== selectSeq) return;
      $("detail-status").textContent = "";
      $("chart-status").textContent = "";
      showError(e.message);
    });
  }

  function renderInvoice(inv) {
    $("detail-status").textContent = "";
    var meta = $("detail-meta");
    var add = function (k, v) { meta.appendChild(el("dt", k)); var dd = el("dd"); if (v instanceof Node) dd.appendChild(v); else dd.textContent = v === null || v === undefined || v === "" ? "—" : String(v); meta.appendChild(dd); };
    add("Account", inv.account);
    add("Period", inv.period);
    add("Status", badge(inv.status));
    add("Plan", inv.plan);
    add("Created", inv.createdAt);
    add("Stripe sync", badge(inv.syncStatus));
    if (inv.syncError) add("Sync error", inv.syncError);
    if (inv.stripeInvoiceId) add("Stripe invoice", inv.stripeInvoiceId);
    var tbody = $("line-rows");
    var lines = Array.isArray(inv.lines) ? inv.lines : [];
    lines.forEach(function (l) {
      var tr = el("tr");
      tr.dataset.metric = String(l.metric);
      cell(tr, METRICS[l.metric] || l.metric, "metric");
      cell(tr, l.description, "description");
      cell(tr, l.quantity, "num quantity");
      cell(tr, unitPrice(l.unitPriceMicros, inv.currency), "num unit-price");
      var amount = cell(tr, money(l.amount, inv.currency), "num amount");
      amount.dataset.minor = String(l.amount);
      tbody.appendChild(tr);
    });
    if (lines.length === 0) { var none = el("tr"); var td = cell(none, "No lines.", "muted"); td.colSpan = 5; tbody.appendChild(none); }
    var foot = el("tr");
    var label = cell(foot, "Total");
    label.colSpan = 4;
    var total = cell(foot, money(inv.total, inv.currency), "num invoice-total");
    total.id = "invoice-total";
    total.dataset.minor = String(inv.total);
    $("line-foot").appendChild(foot);
  }

  function daysOf(period) {
    var m = /^(\\d{4})-(\\d{2})$/.exec(String(period));
    if (!m) return [];
    var last = new Date(Date.UTC(Number(m[1]), Number(m[2]), 0)).getUTCDate();
    var out = [];
    for (var d = 1; d <= last; d++) out.push(period + "-" + (d < 10 ? "0" : "") + d);
    return out;
  }

  function renderChart(inv, usage) {
    var perDay = {};
    var totals = { requests: 0, errors: 0, gbSeconds: 0 };
    usage.forEach(function (u) {
      var d = String(u.day);
      perDay[d] = (perDay[d] || 0) + Number(u.requests || 0);
      totals.requests += Number(u.requests || 0);
      totals.errors += Number(u.errors || 0);
      totals.gbSeconds += Number(u.gbSeconds || 0);
    });
    var days = daysOf(inv.period);
    Object.keys(perDay).forEach(function (d) { if (days.indexOf(d) < 0) days.push(d); });
    days.sort();
    var max = 0;
    days.forEach(function (d) { if ((perDay[d] || 0) > max) max = perDay[d]; });
    var today = new Date().toISOString().slice(0, 10);
    var W = 1000, H = 260, left = 48, right = 12, top = 34, bottom = 34;
    var plotW = W - left - right, plotH = H - top - bottom;
    var step = days.length > 0 ? plotW / days.length : plotW;
    var barW = Math.max(2, step * 0.7);
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "chart-title", id: "usage-chart" });
    var titleText = "Requests per day — " + inv.account + ", " + inv.period;
    s.appendChild(svg("title", { id: "chart-title" }, titleText));
    s.appendChild(svg("text", { x: left, y: 18, "class": "title" }, titleText));
    var ticks = max > 0 ? [0, 0.5, 1] : [0];
    ticks.forEach(function (f) {
      var y = top + plotH - f * plotH;
      s.appendChild(svg("line", { x1: left, x2: W - right, y1: y, y2: y, "class": f === 0 ? "axis" : "grid" }));
      s.appendChild(svg("text", { x: left - 6, y: y + 3, "text-anchor": "end" }, fmtInt(Math.round(max * f))));
    });
    days.forEach(function (d, i) {
      var x = left + i * step + (step - barW) / 2;
      var n = perDay[d] || 0;
      if (n > 0) {
        var h = Math.max(1, (n / max) * plotH);
        var r = svg("rect", { x: x.toFixed(1), y: (top + plotH - h).toFixed(1), width: barW.toFixed(1), height: h.toFixed(1), "class": "bar", "data-day": d, "data-requests": n });
        r.appendChild(svg("title", {}, d + ": " + fmtInt(n) + (n === 1 ? " request" : " requests")));
        s.appendChild(r);
      }
      var label = svg("text", { x: (x + barW / 2).toFixed(1), y: H - bottom + 14, "text-anchor": "middle", "class": "day" + (d === today ? " today" : ""), "data-day": d }, String(Number(d.slice(8, 10))));
      s.appendChild(label);
    });
    s.appendChild(svg("text", { x: left + plotW / 2, y: H - 4, "text-anchor": "middle" }, "day of " + inv.period + " (UTC)"));
    var holder = $("chart-svg-holder");
    clear(holder);
    holder.appendChild(s);
    $("chart-status").textContent = usage.length === 0
      ? "No usage recorded for " + inv.account + " in " + inv.period + "."
      : fmtInt(totals.requests) + " requests, " + fmtInt(totals.errors) + " errors, " + totals.gbSeconds.toFixed(6) + " GB-s in " + inv.period + ".";
  }

  // --- pages: /dashboard[/apps] (default), /dashboard/usage, /dashboard/pool, /dashboard/billing ---
  var PAGES = ["apps", "deployments", "usage", "pool", "billing"];
  function currentPage() {
    var parts = location.pathname.split("/").filter(function (p) { return p !== ""; });
    var p = parts[1] || "apps";
    return PAGES.indexOf(p) >= 0 ? p : "apps";
  }
  var PAGE = currentPage();
  function queryParam(name) { return new URLSearchParams(location.search).get(name); }
  function shortId(id) { var s = String(id || ""); return s.length > 14 ? s.slice(0, 14) + "…" : s; }
  function fmtMs(us) { if (us === null || us === undefined) return "—"; var ms = Number(us) / 1000; return (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2)) + " ms"; }
  function fmtTime(ms) { var d = new Date(Number(ms)); return isNaN(d.getTime()) ? "—" : d.toISOString().replace("T", " ").slice(0, 19); }
  function fmtDate(iso) { return String(iso || "").replace("T", " ").slice(0, 16); }
  function idCell(tr, id) { var td = cell(tr, shortId(id), "mono"); td.title = String(id || ""); return td; }
  function pad2(n) { return (n < 10 ? "0" : "") + n; }
  function bucketLabel(ms, bucketMs, span) {
    var d = new Date(ms);
    var hm = pad2(d.getUTCHours()) + ":" + pad2(d.getUTCMinutes());
    if (bucketMs >= 86400000) return d.toISOString().slice(5, 10);
    return span > 86400000 ? d.toISOString().slice(5, 10) + " " + hm : hm;
  }
  /** Names each cell after its column (shown before it where a narrow screen stacks rows as cards). */
  function labelCells(tbody) {
    var heads = Array.prototype.map.call(tbody.parentNode.querySelectorAll("thead th"), function (th) { return th.textContent; });
    Array.prototype.forEach.call(tbody.rows, function (tr) { Array.prototype.forEach.call(tr.cells, function (td, i) { if (td.colSpan === 1 && heads[i]) td.dataset.label = heads[i]; }); });
  }
  function emptyRow(tbody, cols, text) { var tr = el("tr"); var td = cell(tr, text, "muted"); td.colSpan = cols; tbody.appendChild(tr); }
  function setStatus(id, text) { $(id).textContent = text; }

  /**
   * An SVG chart drawn here: points [{ t: ms, label }], series [{ key, label, cls, type: "bar" | "line" }]
   * reading point[key] (null: no value). Bars of one point overlap (errors drawn over requests).
   */
  var redraws = {};
  function drawChart(holder, id, title, points, series, fmt) {
    // Drawn at the holder's width in pixels (text stays readable on a phone); redrawn on resize.
    redraws[holder.id] = function () { drawChart(holder, id, title, points, series, fmt); };
    var W = Math.max(260, Math.floor(holder.clientWidth || 600)), H = 200, left = 48, right = 8, top = 30, bottom = 24;
    var plotW = W - left - right, plotH = H - top - bottom;
    var max = 0;
    points.forEach(function (p) { series.forEach(function (s) { var v = p[s.key]; if (v !== null && v !== undefined && Number(v) > max) max = Number(v); }); });
    var n = Math.max(1, points.length);
    var step = plotW / n;
    var barW = Math.max(1, step * 0.75);
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title, id: id, "class": "chart-svg" });
    s.appendChild(svg("title", {}, title));
    s.appendChild(svg("text", { x: 0, y: 16, "class": "title" }, title));
    if (W < 420) top += 14;
    plotH = H - top - bottom;
    var lx = W - right;
    series.slice().reverse().forEach(function (sr) {
      var t = svg("text", { x: lx, y: W < 420 ? 32 : 16, "text-anchor": "end", "class": "legend " + sr.cls }, "■ " + sr.label);
      s.appendChild(t);
      lx -= 16 + 6.5 * String(sr.label).length;
    });
    [0, 0.5, 1].forEach(function (f) {
      var y = top + plotH - f * plotH;
      s.appendChild(svg("line", { x1: left, x2: W - right, y1: y, y2: y, "class": f === 0 ? "axis" : "grid" }));
      if (max > 0 || f === 0) s.appendChild(svg("text", { x: left - 6, y: y + 3, "text-anchor": "end" }, fmt(max * f)));
    });
    var y = function (v) { return max > 0 ? top + plotH - (Number(v) / max) * plotH : top + plotH; };
    series.forEach(function (sr) {
      if (sr.type === "bar") {
        points.forEach(function (p, i) {
          var v = p[sr.key];
          if (!(Number(v) > 0)) return;
          var h = Math.max(1, top + plotH - y(v));
          var r = svg("rect", { x: (left + i * step + (step - barW) / 2).toFixed(1), y: (top + plotH - h).toFixed(1), width: barW.toFixed(1), height: h.toFixed(1), "class": "bar " + sr.cls, "data-t": p.t, "data-value": v });
          r.appendChild(svg("title", {}, p.label + " — " + sr.label + ": " + fmt(v)));
          s.appendChild(r);
        });
      } else {
        var d = "";
        var pen = false;
        points.forEach(function (p, i) {
          var v = p[sr.key];
          if (v === null || v === undefined) { pen = false; return; }
          var x = (left + i * step + step / 2).toFixed(1);
          d += (pen ? " L" : " M") + x + " " + y(v).toFixed(1);
          pen = true;
          var c = svg("circle", { cx: x, cy: y(v).toFixed(1), r: 2.5, "class": "dot " + sr.cls, "data-t": p.t, "data-value": v });
          c.appendChild(svg("title", {}, p.label + " — " + sr.label + ": " + fmt(v)));
          s.appendChild(c);
        });
        if (d !== "") s.insertBefore(svg("path", { d: d.trim(), "class": "line " + sr.cls }), s.querySelector("circle"));
      }
    });
    if (points.length > 0) {
      var marks = points.length === 1 ? [0] : [0, Math.floor((points.length - 1) / 2), points.length - 1];
      marks.forEach(function (i, k) {
        var anchor = k === 0 ? "start" : k === marks.length - 1 ? "end" : "middle";
        var x = k === 0 ? left : k === marks.length - 1 ? W - right : left + i * step + step / 2;
        s.appendChild(svg("text", { x: x, y: H - 8, "text-anchor": anchor, "class": "tick" }, points[i].label));
      });
    }
    clear(holder);
    holder.appendChild(s);
    return s;
  }

  // --- apps ---
  function loadApps() {
    setStatus("apps-status", "Loading…");
    var tbody = $("app-rows");
    var chosen = queryParam("app");
    var list = api("/v1/apps").then(function (body) {
      clear(tbody);
      var apps = Array.isArray(body.apps) ? body.apps : [];
      setStatus("apps-status", apps.length === 0 ? "No apps yet: deploy one with zerocell deploy." : apps.length + (apps.length === 1 ? " app" : " apps") + " — open one for its charts, deployment, routes and logs.");
      apps.forEach(function (a) {
        var tr = el("tr");
        tr.dataset.app = String(a.name);
        if (chosen === a.name) tr.classList.add("selected");
        var link = el("a", a.name);
        link.href = "/dashboard/apps?app=" + encodeURIComponent(a.name);
        cell(tr, "").appendChild(link);
        cell(tr, a.activeVersion === null ? "—" : "v" + a.activeVersion, "num");
        idCell(tr, a.activeDeploymentId);
        cell(tr, fmtDate(a.createdAt), "time");
        tbody.appendChild(tr);
      });
      labelCells(tbody);
    }, function (e) { clear(tbody); setStatus("apps-status", ""); showError(e.message); });
    if (chosen) loadApp(chosen);
    return list;
  }

  var WINDOWS = { "60m": { bucket: "minute", text: "the last hour" }, "24h": { bucket: "hour", text: "the last 24 hours" }, "7d": { bucket: "hour", text: "the last 7 days" } };

  function loadApp(name) {
    $("app-detail").hidden = false;
    $("app-title").textContent = name;
    loadStats(name);
    var base = "/v1/apps/" + encodeURIComponent(name);
    api(base + "/deployments").then(renderDeployments, function (e) { showError(e.message); });
    api("/v1/pool").then(function (body) { renderInstances(name, body); }, function (e) { showError(e.message); });
    loadLogs(name);
  }

  function loadStats(name) {
    var w = $("window").value;
    var spec = WINDOWS[w] || WINDOWS["60m"];
    setStatus("stats-status", "Loading…");
    return api("/v1/apps/" + encodeURIComponent(name) + "/stats?bucket=" + spec.bucket + "&window=" + encodeURIComponent(w)).then(function (body) {
      var buckets = Array.isArray(body.buckets) ? body.buckets : [];
      var span = Number(body.to) - Number(body.from);
      var points = buckets.map(function (b) {
        return { t: new Date(b.start).toISOString(), label: bucketLabel(b.start, body.bucketMs, span), requests: b.requests, errors: b.errors, p50: b.p50WallUs === null ? null : b.p50WallUs / 1000, p99: b.p99WallUs === null ? null : b.p99WallUs / 1000, cpu: b.cpuUs / 1000 };
      });
      var per = body.bucket === "hour" ? "hour" : "minute";
      drawChart($("chart-requests"), "requests-chart", "Requests and errors per " + per + " (UTC)", points, [{ key: "requests", label: "requests", cls: "req", type: "bar" }, { key: "errors", label: "5xx", cls: "err", type: "bar" }], function (v) { return fmtInt(Math.round(v)); });
      drawChart($("chart-latency"), "latency-chart", "Wall time p50 / p99 (ms)", points, [{ key: "p50", label: "p50", cls: "p50", type: "line" }, { key: "p99", label: "p99", cls: "p99", type: "line" }], function (v) { return v >= 10 ? fmtInt(Math.round(v)) : Number(v).toFixed(1); });
      drawChart($("chart-cpu"), "cpu-chart", "CPU time per " + per + " (ms)", points, [{ key: "cpu", label: "CPU", cls: "cpu", type: "bar" }], function (v) { return v >= 10 ? fmtInt(Math.round(v)) : Number(v).toFixed(1); });
      var req = 0, err = 0;
      buckets.forEach(function (b) { req += b.requests; err += b.errors; });
      setStatus("stats-status", fmtInt(req) + (req === 1 ? " request, " : " requests, ") + fmtInt(err) + (err === 1 ? " error" : " errors") + " in " + spec.text + (body.truncated ? " (only the newest records were read)" : "") + ".");
    }, function (e) { setStatus("stats-status", ""); showError(e.message); });
  }

  function renderDeployments(body) {
    var list = Array.isArray(body.deployments) ? body.deployments : [];
    var active = list.filter(function (d) { return d.active; })[0];
    var meta = $("deployment-meta");
    clear(meta);
    var add = function (k, v) { meta.appendChild(el("dt", k)); meta.appendChild(el("dd", v === null || v === undefined || v === "" ? "—" : v)); };
    if (active) {
      add("Version", "v" + active.version);
      add("Deployment", active.id);
      add("Runtime", active.runtime);
      add("Deployed", active.createdAt);
      add("Bundle", fmtInt(active.bundleBytes) + " bytes, sha256 " + String(active.bundleSha256).slice(0, 12) + "…");
    } else add("Deployment", "none active");
    var tbody = $("version-rows");
    clear(tbody);
    list.slice().sort(function (a, b) { return b.version - a.version; }).forEach(function (d) {
      var tr = el("tr");
      tr.dataset.version = String(d.version);
      cell(tr, "v" + d.version, "num");
      cell(tr, fmtDate(d.createdAt), "time");
      cell(tr, d.runtime);
      cell(tr, "").appendChild(badge(d.active ? "active" : "inactive"));
      tbody.appendChild(tr);
    });
    if (list.length === 0) emptyRow(tbody, 4, "No deployments.");
    var routes = $("route-rows");
    clear(routes);
    var rs = active && Array.isArray(active.routes) ? active.routes : [];
    rs.forEach(function (r) {
      var tr = el("tr");
      cell(tr, r.host, "wrap");
      cell(tr, r.path, "wrap mono");
      cell(tr, r.mode);
      cell(tr, r.key ? r.key : "—");
      routes.appendChild(tr);
    });
    if (rs.length === 0) emptyRow(routes, 4, "No routes.");
  }

  function startFailure(f) { return f ? f.code + ": " + f.message + " (" + f.at + ")" : "—"; }

  function renderInstances(name, body) {
    var tbody = $("instance-rows");
    clear(tbody);
    var ds = (Array.isArray(body.deployments) ? body.deployments : []).filter(function (d) { return d.app === name; });
    ds.forEach(function (d) {
      var tr = el("tr");
      idCell(tr, d.deploymentId);
      cell(tr, d.mode + (d.key ? " [" + d.key + "]" : ""));
      cell(tr, d.instances, "num");
      cell(tr, d.idle + " / " + d.busy + " / " + d.starting, "num");
      cell(tr, d.queued, "num");
      cell(tr, startFailure(d.lastStartError), "wrap");
      tbody.appendChild(tr);
    });
    if (ds.length === 0) emptyRow(tbody, 6, "No instances running (they start with the first request).");
    labelCells(tbody);
  }

  var lastLogId = 0;
  var follow = null;
  function addLogRow(l, atTop) {
    var tbody = $("log-rows");
    var tr = el("tr");
    tr.dataset.requestId = String(l.requestId || "");
    tr.dataset.logId = String(l.id);
    cell(tr, fmtTime(l.at), "time");
    var rid = cell(tr, l.requestId ? String(l.requestId).slice(0, 8) : "—", "mono rid");
    rid.title = String(l.requestId || "");
    cell(tr, l.line, "log-line");
    if (atTop && tbody.firstChild) tbody.insertBefore(tr, tbody.firstChild); else tbody.appendChild(tr);
    if (Number(l.id) > lastLogId) lastLogId = Number(l.id);
    // A followed page keeps at most 1,000 lines.
    while (tbody.rows.length > 1000) tbody.removeChild(tbody.lastChild);
  }

  function loadLogs(name) {
    setStatus("logs-status", "Loading…");
    return api("/v1/apps/" + encodeURIComponent(name) + "/logs?limit=200").then(function (body) {
      clear($("log-rows"));
      var lines = Array.isArray(body.logs) ? body.logs.slice().reverse() : [];
      lines.forEach(function (l) { addLogRow(l, false); });
      if (!follow) setStatus("logs-status", lines.length === 0 ? "No log lines in the last 7 days." : lines.length + (lines.length === 1 ? " line" : " lines") + ", newest first.");
    }, function (e) { setStatus("logs-status", ""); showError(e.message); });
  }

  function stopFollowing(text) {
    follow = null;
    $("logs-follow").textContent = "Follow";
    if (text) setStatus("logs-status", text);
  }

  /** Live tail: the server-sent events of GET .../logs?follow=1 read from a fetch (a header carries the token). */
  function followLogs(name) {
    if (follow) { var old = follow; stopFollowing("Stopped following."); old.abort(); return; }
    var ctrl = new AbortController();
    follow = ctrl;
    $("logs-follow").textContent = "Stop";
    setStatus("logs-status", "Following: new lines appear at the top.");
    fetch("/v1/apps/" + encodeURIComponent(name) + "/logs?follow=1&limit=0&after=" + lastLogId, { headers: { authorization: "Bearer " + token(), accept: "text/event-stream" }, credentials: "omit", cache: "no-store", signal: ctrl.signal })
      .then(function (res) {
        if (!res.ok || !res.body) throw new Error("HTTP " + res.status + ": cannot follow the logs");
        var reader = res.body.getReader();
        var dec = new TextDecoder();
        var buf = "";
        function pump() {
          return reader.read().then(function (r) {
            if (r.done) return;
            buf += dec.decode(r.value, { stream: true });
            if (buf.length > 1048576) throw new Error("logs: an event larger than 1 MB");
            var i;
            while ((i = buf.indexOf("\\n\\n")) >= 0) {
              var block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              var ev = "message", data = "";
              block.split("\\n").forEach(function (line) {
                if (line.indexOf("event:") === 0) ev = line.slice(6).trim();
                else if (line.indexOf("data:") === 0) data += line.slice(line.charAt(5) === " " ? 6 : 5);
              });
              if (ev === "log" && data !== "") {
                var l = null;
                try { l = JSON.parse(data); } catch (e) { l = null; }
                if (l && Number(l.id) > lastLogId) addLogRow(l, true);
              } else if (ev === "overflow") throw new Error("logs: the follower fell behind; press Follow again");
            }
            return pump();
          });
        }
        return pump();
      })
      .then(function () { if (follow === ctrl) stopFollowing("The server ended the stream; press Follow again."); },
        function (e) { if (follow === ctrl) { stopFollowing(""); ctrl.abort(); showError(e && e.message ? e.message : String(e)); } });
  }

  // --- usage ---
  function loadUsage() {
    setStatus("usage-status", "Loading…");
    var to = new Date();
    var from = new Date(to.getTime() - 29 * 86400000);
    var q = "from=" + from.toISOString().slice(0, 10) + "&to=" + to.toISOString().slice(0, 10);
    return api("/v1/usage?" + q).then(function (body) {
      var rows = Array.isArray(body.usage) ? body.usage : [];
      var tbody = $("usage-rows");
      clear(tbody);
      var perDay = {};
      var total = 0;
      rows.slice().reverse().forEach(function (u) {
        var tr = el("tr");
        tr.dataset.app = String(u.app);
        tr.dataset.day = String(u.day);
        cell(tr, u.day);
        cell(tr, u.account);
        cell(tr, u.app, "wrap");
        cell(tr, fmtInt(u.requests), "num requests");
        cell(tr, fmtInt(u.errors), "num");
        cell(tr, Number(u.gbSeconds).toFixed(4), "num");
        tbody.appendChild(tr);
        perDay[u.day] = (perDay[u.day] || 0) + Number(u.requests);
        total += Number(u.requests);
      });
      if (rows.length === 0) emptyRow(tbody, 6, "No usage in the last 30 days.");
      labelCells(tbody);
      var points = [];
      for (var i = 0; i < 30; i++) {
        var d = new Date(from.getTime() + i * 86400000).toISOString().slice(0, 10);
        points.push({ t: d, label: d.slice(5), requests: perDay[d] || 0 });
      }
      drawChart($("chart-usage"), "usage-days-chart", "Requests per day, last 30 days (UTC)", points, [{ key: "requests", label: "requests", cls: "req", type: "bar" }], function (v) { return fmtInt(Math.round(v)); });
      setStatus("usage-status", fmtInt(total) + " requests in the last 30 days.");
    }, function (e) { setStatus("usage-status", ""); showError(e.message); });
  }

  // --- pool ---
  function loadPool() {
    setStatus("pool-status", "Loading…");
    return api("/v1/pool").then(function (body) {
      var ds = Array.isArray(body.deployments) ? body.deployments : [];
      var tbody = $("pool-rows");
      clear(tbody);
      var total = 0;
      ds.forEach(function (d) {
        var tr = el("tr");
        tr.dataset.app = String(d.app);
        cell(tr, d.app, "wrap");
        idCell(tr, d.deploymentId);
        cell(tr, d.mode + (d.key ? " [" + d.key + "]" : ""));
        cell(tr, d.instances, "num instances");
        cell(tr, d.idle, "num");
        cell(tr, d.busy, "num");
        cell(tr, d.starting, "num");
        cell(tr, d.queued, "num");
        cell(tr, startFailure(d.lastStartError), "wrap failure");
        tbody.appendChild(tr);
        total += Number(d.instances) || 0;
      });
      if (ds.length === 0) emptyRow(tbody, 9, "No deployment has instances.");
      labelCells(tbody);
      setStatus("pool-status", fmtInt(total) + (total === 1 ? " instance in " : " instances in ") + ds.length + (ds.length === 1 ? " pool." : " pools."));
      var spares = $("spares");
      clear(spares);
      if (body.spares && Array.isArray(body.spares.ready)) {
        var byRuntime = {};
        body.spares.ready.forEach(function (s) { byRuntime[s.runtime] = (byRuntime[s.runtime] || 0) + 1; });
        var keys = Object.keys(byRuntime).sort();
        spares.appendChild(el("p", keys.length === 0 ? "No spare host ready." : keys.map(function (k) { return k + ": " + byRuntime[k]; }).join(", ") + " ready.", "spare-ready"));
        spares.appendChild(el("p", fmtInt(body.spares.taken) + " spare hosts taken since start.", "muted"));
      } else spares.appendChild(el("p", "Spare hosts are shown to admin tokens.", "muted"));
    }, function (e) { setStatus("pool-status", ""); showError(e.message); });
  }

  // --- deployments: an app's history, and a rollback button on each ready version not active ---
  function loadDeploymentsPage() {
    setStatus("deployments-status", "Loading…");
    return api("/v1/apps").then(function (body) {
      var apps = Array.isArray(body.apps) ? body.apps : [];
      var sel = $("deploy-app");
      clear(sel);
      apps.forEach(function (a) { var o = el("option", a.name); o.value = String(a.name); sel.appendChild(o); });
      var chosen = queryParam("app");
      if (!chosen || !apps.some(function (a) { return a.name === chosen; })) chosen = apps.length > 0 ? apps[0].name : null;
      if (chosen === null) { clear($("deployment-rows")); setStatus("deployments-status", "No apps yet: deploy one with zerocell deploy."); return; }
      sel.value = chosen;
      return loadHistory(chosen);
    }, function (e) { setStatus("deployments-status", ""); showError(e.message); });
  }

  function loadHistory(name) {
    setStatus("deployments-status", "Loading…");
    return api("/v1/apps/" + encodeURIComponent(name) + "/deployments").then(function (body) {
      var list = (Array.isArray(body.deployments) ? body.deployments : []).slice().sort(function (a, b) { return b.version - a.version; });
      var tbody = $("deployment-rows");
      clear(tbody);
      list.forEach(function (d) {
        var tr = el("tr");
        tr.dataset.version = String(d.version);
        tr.dataset.active = d.active ? "true" : "false";
        cell(tr, "v" + d.version, "num");
        idCell(tr, d.id);
        var st = cell(tr, "");
        st.appendChild(badge(d.active ? "active" : String(d.status || "ready")));
        cell(tr, fmtDate(d.createdAt), "time");
        cell(tr, fmtInt(d.bundleBytes) + " B, " + String(d.bundleSha256).slice(0, 12), "mono");
        cell(tr, d.error ? String(d.error).slice(0, 300) : "—", "wrap");
        var act = cell(tr, "");
        if (!d.active && (d.status || "ready") === "ready") {
          var b = el("button", "Roll back to v" + d.version, "secondary rollback");
          b.type = "button";
          b.addEventListener("click", function () { rollback(name, d.version, b); });
          act.appendChild(b);
        }
        tbody.appendChild(tr);
      });
      if (list.length === 0) emptyRow(tbody, 7, "No deployments.");
      labelCells(tbody);
      var active = list.filter(function (d) { return d.active; })[0];
      setStatus("deployments-status", list.length + (list.length === 1 ? " deployment" : " deployments") + " of " + name + (active ? "; v" + active.version + " is active." : "; none active."));
    }, function (e) { setStatus("deployments-status", ""); showError(e.message); });
  }

  function rollback(name, version, button) {
    button.disabled = true;
    clearError();
    return apiPost("/v1/apps/" + encodeURIComponent(name) + "/rollback", { version: version }).then(function (body) {
      return loadHistory(name).then(function () { setStatus("deployments-status", "Rolled back " + name + " to v" + body.deployment.version + "."); });
    }, function (e) { button.disabled = false; showError(e.message); });
  }

  var LOADERS = { apps: loadApps, deployments: loadDeploymentsPage, usage: loadUsage, pool: loadPool, billing: loadInvoices };
  var NEEDS_TOKEN = { apps: "apps-status", deployments: "deployments-status", usage: "usage-status", pool: "pool-status", billing: "invoices-status" };

  function start() {
    var t = token();
    $("token").value = t;
    $("forget").hidden = !t;
    clearError();
    if (t) LOADERS[PAGE]();
    else {
      clear($("invoice-rows"));
      $(NEEDS_TOKEN[PAGE]).textContent = "Enter an API token to see " + (PAGE === "billing" ? "invoices" : PAGE) + ".";
    }
  }

  function takeFragmentToken() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    var t = params.get("token");
    if (t !== null) {
      setToken(t.trim());
      // Drop the token from the address bar and history.
      history.replaceState(null, "", location.pathname + location.search);
      return true;
    }
    return false;
  }

  Array.prototype.forEach.call(document.querySelectorAll("nav a[data-page]"), function (a) {
    if (a.dataset.page === PAGE) { a.classList.add("active"); a.setAttribute("aria-current", "page"); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("main .page"), function (p) { p.hidden = p.dataset.page !== PAGE; });
  $("token-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    setToken($("token").value.trim());
    $("detail").hidden = true;
    start();
  });
  $("forget").addEventListener("click", function () {
    setToken("");
    $("detail").hidden = true;
    clearError();
    start();
  });
  $("refresh").addEventListener("click", function () { $("detail").hidden = true; start(); });
  $("deploy-app").addEventListener("change", function () {
    var name = $("deploy-app").value;
    history.replaceState(null, "", location.pathname + "?app=" + encodeURIComponent(name));
    loadHistory(name);
  });
  $("window").addEventListener("change", function () { var a = queryParam("app"); if (a) loadStats(a); });
  $("logs-refresh").addEventListener("click", function () { var a = queryParam("app"); if (a) loadLogs(a); });
  $("logs-follow").addEventListener("click", function () { var a = queryParam("app"); if (a) followLogs(a); });
  var resizeTimer = 0;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { Object.keys(redraws).forEach(function (k) { if ($(k) && $(k).firstChild) redraws[k](); }); }, 150);
  });
  window.addEventListener("hashchange", function () { if (takeFragmentToken()) { $("detail").hidden = true; start(); } });
  takeFragmentToken();
  start();
})();
`;

const sha256 = (s: string) => `'sha256-${createHash("sha256").update(s, "utf8").digest("base64")}'`;

/** The page's Content-Security-Policy: only its own inline script and style (by hash), same-origin fetches. */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Zerocell — dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>Zerocell <span>dashboard</span></h1>
  <nav aria-label="Pages">
    <a href="/dashboard/apps" data-page="apps">Apps</a>
    <a href="/dashboard/deployments" data-page="deployments">Deployments</a>
    <a href="/dashboard/usage" data-page="usage">Usage</a>
    <a href="/dashboard/pool" data-page="pool">Pool</a>
    <a href="/dashboard/billing" data-page="billing">Billing</a>
  </nav>
  <form id="token-form" autocomplete="off">
    <label for="token" class="muted">API token</label>
    <input id="token" name="token" type="password" placeholder="zc_…" spellcheck="false">
    <button type="submit" id="use-token">Use token</button>
    <button type="button" id="forget" class="secondary" hidden>Forget</button>
  </form>
</header>
<main>
  <div id="error" role="alert" hidden></div>
  <div class="page" data-page="apps" id="page-apps" hidden>
    <section id="apps">
      <h2>Apps</h2>
      <p id="apps-status" class="muted"></p>
      <div class="scroll"><table class="cards">
        <thead><tr><th>App</th><th class="num">Version</th><th>Deployment</th><th>Created</th></tr></thead>
        <tbody id="app-rows"></tbody>
      </table></div>
    </section>
    <div id="app-detail" hidden>
      <section id="app-stats">
        <div class="row"><h2 id="app-title"></h2>
          <label class="muted">Window <select id="window"><option value="60m">last hour, per minute</option><option value="24h">last 24 h, per hour</option><option value="7d">last 7 days, per hour</option></select></label>
        </div>
        <p id="stats-status" class="muted"></p>
        <div class="charts">
          <div class="chart" id="chart-requests"></div>
          <div class="chart" id="chart-latency"></div>
          <div class="chart" id="chart-cpu"></div>
        </div>
      </section>
      <section id="app-deployment">
        <h2>Current deployment</h2>
        <dl class="meta" id="deployment-meta"></dl>
        <h2>Versions</h2>
        <div class="scroll"><table>
          <thead><tr><th class="num">Version</th><th>Deployed</th><th>Runtime</th><th>State</th></tr></thead>
          <tbody id="version-rows"></tbody>
        </table></div>
      </section>
      <section id="app-routes">
        <h2>Routes</h2>
        <div class="scroll"><table>
          <thead><tr><th>Host</th><th>Path</th><th>Mode</th><th>Key</th></tr></thead>
          <tbody id="route-rows"></tbody>
        </table></div>
      </section>
      <section id="app-instances">
        <h2>Instances</h2>
        <div class="scroll"><table class="cards">
          <thead><tr><th>Deployment</th><th>Mode</th><th class="num">Instances</th><th class="num">Idle / busy / starting</th><th class="num">Queued</th><th>Last start failure</th></tr></thead>
          <tbody id="instance-rows"></tbody>
        </table></div>
      </section>
      <section id="app-logs">
        <div class="row"><h2>Recent log lines</h2><span><button type="button" id="logs-follow" class="secondary">Follow</button> <button type="button" id="logs-refresh" class="secondary">Refresh</button></span></div>
        <p id="logs-status" class="muted"></p>
        <div class="scroll"><table class="logs">
          <thead><tr><th>Time (UTC)</th><th>Request</th><th>Line</th></tr></thead>
          <tbody id="log-rows"></tbody>
        </table></div>
      </section>
    </div>
  </div>
  <div class="page" data-page="deployments" id="page-deployments" hidden>
    <section id="deployments">
      <h2>Deployments</h2>
      <label class="muted">App <select id="deploy-app"></select></label>
      <p id="deployments-status" class="muted"></p>
      <div class="scroll"><table class="cards">
        <thead><tr><th class="num">Version</th><th>Deployment</th><th>State</th><th>Deployed</th><th>Bundle</th><th>Error</th><th>Action</th></tr></thead>
        <tbody id="deployment-rows"></tbody>
      </table></div>
    </section>
  </div>
  <div class="page" data-page="usage" id="page-usage" hidden>
    <section id="usage">
      <h2>Usage</h2>
      <p id="usage-status" class="muted"></p>
      <div class="chart" id="chart-usage"></div>
      <div class="scroll"><table class="cards">
        <thead><tr><th>Day</th><th>Account</th><th>App</th><th class="num">Requests</th><th class="num">Errors</th><th class="num">GB-s</th></tr></thead>
        <tbody id="usage-rows"></tbody>
      </table></div>
    </section>
  </div>
  <div class="page" data-page="pool" id="page-pool" hidden>
    <section id="pool">
      <h2>Pool</h2>
      <p id="pool-status" class="muted"></p>
      <div class="scroll"><table class="cards">
        <thead><tr><th>App</th><th>Deployment</th><th>Mode</th><th class="num">Instances</th><th class="num">Idle</th><th class="num">Busy</th><th class="num">Starting</th><th class="num">Queued</th><th>Last start failure</th></tr></thead>
        <tbody id="pool-rows"></tbody>
      </table></div>
    </section>
    <section id="spare-hosts">
      <h2>Spare hosts</h2>
      <div id="spares"></div>
    </section>
  </div>
  <div class="page" data-page="billing" id="page-billing" hidden>
  <section id="invoices">
    <h2>Invoices <button type="button" id="refresh" class="secondary">Refresh</button></h2>
    <p id="invoices-status" class="muted"></p>
    <div class="scroll"><table class="cards">
      <thead><tr><th>Period</th><th>Account</th><th>Status</th><th class="num">Total</th><th>Sync</th><th class="num">Lines</th></tr></thead>
      <tbody id="invoice-rows"></tbody>
    </table></div>
  </section>
  <section id="detail" hidden>
    <h2 id="detail-title"></h2>
    <p id="detail-status" class="muted"></p>
    <dl class="meta" id="detail-meta"></dl>
    <div class="scroll"><table id="lines">
      <thead><tr><th>Metric</th><th>Description</th><th class="num">Quantity</th><th class="num">Unit price</th><th class="num">Amount</th></tr></thead>
      <tbody id="line-rows"></tbody>
      <tfoot id="line-foot"></tfoot>
    </table></div>
    <div id="chart" class="chart">
      <h2>Usage</h2>
      <div id="chart-svg-holder"></div>
      <p id="chart-status" class="muted"></p>
    </div>
  </section>
  </div>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;

/** The pages of the dashboard: /dashboard alone shows the first. */
export const DASHBOARD_PAGES = ["apps", "deployments", "usage", "pool", "billing"] as const;

/** The response for GET /dashboard and /dashboard/:page (one document; an unknown page is a 404). */
export function dashboardResponse(page?: string): Response {
  if (page !== undefined && !(DASHBOARD_PAGES as readonly string[]).includes(page)) {
    return new Response("no such dashboard page\n", { status: 404, headers: { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" } });
  }
  return new Response(DASHBOARD_HTML, {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": DASHBOARD_CSP,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "x-frame-options": "DENY",
      "cache-control": "no-store",
    },
  });
}
