/**
 * The billing dashboard: one self-contained page (HTML + CSS + a small inline script, nothing
 * loaded from anywhere else) served by the admin listener at GET /dashboard. The page itself is
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
header { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; justify-content: space-between; padding: 12px 24px; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { font-size: 18px; margin: 0; }
header h1 span { color: var(--muted); font-weight: 400; }
form#token-form { display: flex; gap: 8px; align-items: center; }
form#token-form input { width: 300px; padding: 6px 8px; border: 1px solid var(--line); border-radius: 4px; font: inherit; }
button { padding: 6px 12px; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 4px; font: inherit; cursor: pointer; }
button.secondary { background: #fff; color: var(--accent); }
main { max-width: 1100px; margin: 0 auto; padding: 16px 24px 48px; }
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
#chart svg { width: 100%; height: auto; display: block; }
#chart .bar { fill: var(--accent); }
#chart .axis { stroke: #9aa3b2; stroke-width: 1; }
#chart .grid { stroke: #e7eaf0; stroke-width: 1; }
#chart text { font: 10px system-ui, sans-serif; fill: var(--muted); }
#chart text.title { font-size: 13px; font-weight: 600; fill: var(--fg); }
#chart text.today { fill: var(--fg); font-weight: 700; }
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

  /** GET on the admin API; resolves to the JSON body or throws an Error with a readable message. */
  function api(path) {
    var t = token();
    if (!t) return Promise.reject(new Error("Enter an API token first."));
    return fetch(path, { headers: { authorization: "Bearer " + t, accept: "application/json" }, credentials: "omit", cache: "no-store" })
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

  function start() {
    var t = token();
    $("token").value = t;
    $("forget").hidden = !t;
    if (t) loadInvoices();
    else { clear($("invoice-rows")); $("invoices-status").textContent = "Enter an API token to see invoices."; }
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
<title>Zerocell — billing dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>Zerocell <span>billing dashboard</span></h1>
  <form id="token-form" autocomplete="off">
    <label for="token" class="muted">API token</label>
    <input id="token" name="token" type="password" placeholder="zc_…" spellcheck="false">
    <button type="submit" id="use-token">Use token</button>
    <button type="button" id="forget" class="secondary" hidden>Forget</button>
  </form>
</header>
<main>
  <div id="error" role="alert" hidden></div>
  <section id="invoices">
    <h2>Invoices <button type="button" id="refresh" class="secondary">Refresh</button></h2>
    <p id="invoices-status" class="muted"></p>
    <table>
      <thead><tr><th>Period</th><th>Account</th><th>Status</th><th class="num">Total</th><th>Sync</th><th class="num">Lines</th></tr></thead>
      <tbody id="invoice-rows"></tbody>
    </table>
  </section>
  <section id="detail" hidden>
    <h2 id="detail-title"></h2>
    <p id="detail-status" class="muted"></p>
    <dl class="meta" id="detail-meta"></dl>
    <table id="lines">
      <thead><tr><th>Metric</th><th>Description</th><th class="num">Quantity</th><th class="num">Unit price</th><th class="num">Amount</th></tr></thead>
      <tbody id="line-rows"></tbody>
      <tfoot id="line-foot"></tfoot>
    </table>
    <div id="chart">
      <h2>Usage</h2>
      <div id="chart-svg-holder"></div>
      <p id="chart-status" class="muted"></p>
    </div>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;

/** The response for GET /dashboard. */
export function dashboardResponse(): Response {
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
