/* engage dashboard: reads the metrics and events APIs of the same server and draws them.
 *
 * Every value that comes from an API (campaign ids, link names, recipients, user agents)
 * is attacker-controlled: it reaches the DOM only as text nodes or attribute values,
 * never as markup. No frameworks, nothing from another origin (see the page's CSP).
 * Its data routes (read-only copies of the APIs under dashboard/api/) are called with the
 * browser's own HTTP Basic login for this page.
 */
"use strict";

(function () {
  var TAIL_EVERY_MS = 5000;
  var METRICS_EVERY_MS = 30000;
  var TAIL_SIZE = 50;
  var TOP_LINKS = 10;
  var MINUTE = 60000;
  var HOUR = 3600000;
  var DAY = 86400000;
  var SVG = "http://www.w3.org/2000/svg";
  var TOTALS = ["count_sent", "count_unique_confirmed_opened", "count_unique_clicked",
    "count_nonprefetched_unique_confirmed_opened", "count_nonprefetched_unique_clicked"];
  var LINK_METRICS = ["count_clicked", "count_unique_clicked", "count_nonprefetched_unique_clicked"];
  var SERIES = [
    {metric: "count_rendered", label: "Opens", css: "opens"},
    {metric: "count_nonprefetched_rendered", label: "Opens by humans", css: "opens human"},
    {metric: "count_clicked", label: "Clicks", css: "clicks"},
    {metric: "count_nonprefetched_clicked", label: "Clicks by humans", css: "clicks human"}
  ];
  var VERDICTS = {human: "human", scanner: "scanner", privacy_proxy: "privacy proxy",
    prefetch: "prefetch"};
  var TYPES = {open: "open", initial_open: "initial open", click: "click"};

  // The page is <prefix>/dashboard; its data routes <prefix>/dashboard/api/v1/... (the
  // public /api/ routes take API keys only). Built from origin and path only: a URL with
  // user:password@ in it would make fetch() refuse.
  var base = location.origin + location.pathname;
  var numbers = new Intl.NumberFormat();
  var state = {range: null, seen: {}, firstTail: true, timers: {}, generations: {},
    lastSeries: null};

  function $(selector) { return document.querySelector(selector); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, String(attrs[name])); });
    return node;
  }

  function count(value) {
    var n = Number(value);
    return isFinite(n) ? numbers.format(n) : "\u2013";
  }

  function rate(part, whole) {
    var p = Number(part), w = Number(whole);
    if (!isFinite(p) || !isFinite(w) || w <= 0) { return "\u2013"; }
    return (100 * p / w).toFixed(1) + "%";
  }

  // --- time range ------------------------------------------------------------------

  function minuteText(ms) { return new Date(ms).toISOString().slice(0, 16); }  // YYYY-MM-DDTHH:MM, UTC

  function parseMinute(text) {
    var ms = Date.parse(text + ":00Z");
    return isNaN(ms) ? null : ms;
  }

  function currentRange() {
    var preset = $("#preset").value;
    if (preset !== "custom") {
      var to = Math.floor(Date.now() / MINUTE) * MINUTE + MINUTE;  // includes this minute
      var from = to - Number(preset) * DAY;
      $("#from").value = minuteText(from);
      $("#to").value = minuteText(to);
      return {from: from, to: to};
    }
    var start = parseMinute($("#from").value), end = parseMinute($("#to").value);
    if (start === null || end === null || start >= end) { return null; }
    return {from: start, to: end};
  }

  function precisionOf(range) { return range.to - range.from <= 2 * DAY ? "hour" : "day"; }

  // --- API calls -------------------------------------------------------------------

  function apiUrl(path, params) {
    var url = new URL(path, base);
    Object.keys(params).forEach(function (name) { url.searchParams.set(name, params[name]); });
    return url.toString();
  }

  // A 503 with a short Retry-After: the server's password hashing was busy (it refuses
  // rather than queue); ask again a few times before showing an error.
  var RETRIES = 3;

  function retryDelay(response, attempt) {
    var wait = Number(response.headers.get("Retry-After"));
    if (response.status !== 503 || attempt >= RETRIES || !(wait >= 0 && wait <= 5)) { return null; }
    return (wait || 1) * 1000;
  }

  function getJSON(path, params, attempt) {
    attempt = attempt || 0;
    return fetch(apiUrl(path, params), {credentials: "same-origin", cache: "no-store",
      headers: {Accept: "application/json"}})
      .then(function (response) {
        var delay = retryDelay(response, attempt);
        if (delay !== null) {
          return new Promise(function (resolve) { setTimeout(resolve, delay); })
            .then(function () { return getJSON(path, params, attempt + 1); });
        }
        return response.text().then(function (body) {
          var data = null;
          try { data = JSON.parse(body); } catch (ignored) { data = null; }
          if (!response.ok) {
            var first = data && data.errors && data.errors[0];
            var detail = first ? (first.message || "") + (first.description ? ": " + first.description : "") : "";
            throw new Error(path + " answered " + response.status + (detail ? " (" + detail + ")" : ""));
          }
          if (!data || !Array.isArray(data.results)) { throw new Error(path + ": not a results list"); }
          return data;
        });
      });
  }

  function metricsParams(range, metrics, extra) {
    var params = {from: minuteText(range.from), to: minuteText(range.to), metrics: metrics.join(",")};
    Object.keys(extra || {}).forEach(function (name) { params[name] = extra[name]; });
    return params;
  }

  function showError(name, error) {
    var node = $('[data-error="' + name + '"]');
    if (error) {
      node.textContent = String(error.message || error);
      node.hidden = false;
    } else {
      node.textContent = "";
      node.hidden = true;
    }
  }

  // --- summary and campaigns -------------------------------------------------------

  function renderSummary(totals) {
    TOTALS.forEach(function (metric) {
      var node = document.querySelector('#summary [data-metric="' + metric + '"]');
      if (node) { node.textContent = count(totals[metric] || 0); }
    });
    var sent = totals.count_sent || 0;
    $('[data-rate="open"]').textContent = rate(totals.count_unique_confirmed_opened || 0, sent);
    $('[data-rate="open_human"]').textContent = rate(totals.count_nonprefetched_unique_confirmed_opened || 0, sent);
    $('[data-rate="click"]').textContent = rate(totals.count_unique_clicked || 0, sent);
    $('[data-rate="click_human"]').textContent = rate(totals.count_nonprefetched_unique_clicked || 0, sent);
  }

  function cell(label, text, metric) {
    var td = el("td", metric ? "num" : "");
    td.appendChild(el("span", "value", text));
    td.setAttribute("data-label", label);
    if (metric) { td.setAttribute("data-metric", metric); }
    return td;
  }

  function renderCampaigns(results) {
    var rows = results.slice().sort(function (a, b) {
      return (b.count_sent || 0) - (a.count_sent || 0) ||
        String(a.campaign_id).localeCompare(String(b.campaign_id));
    });
    var body = $("#campaigns tbody");
    var fresh = document.createDocumentFragment();
    rows.forEach(function (row) {
      var tr = el("tr");
      var id = row.campaign_id === undefined || row.campaign_id === null ? "" : String(row.campaign_id);
      tr.setAttribute("data-campaign", id);
      var name = cell("Campaign", id || "(no campaign)", null);
      name.className = id ? "name" : "name none";
      tr.appendChild(name);
      var sent = row.count_sent || 0;
      tr.appendChild(cell("Sent", count(sent), "count_sent"));
      tr.appendChild(cell("Unique opens", count(row.count_unique_confirmed_opened || 0), "count_unique_confirmed_opened"));
      tr.appendChild(cell("Open rate", rate(row.count_unique_confirmed_opened || 0, sent), "open_rate"));
      tr.appendChild(cell("Open rate, humans", rate(row.count_nonprefetched_unique_confirmed_opened || 0, sent), "open_rate_human"));
      tr.appendChild(cell("Unique clicks", count(row.count_unique_clicked || 0), "count_unique_clicked"));
      tr.appendChild(cell("Click rate", rate(row.count_unique_clicked || 0, sent), "click_rate"));
      tr.appendChild(cell("Click rate, humans", rate(row.count_nonprefetched_unique_clicked || 0, sent), "click_rate_human"));
      fresh.appendChild(tr);
    });
    body.replaceChildren(fresh);
    $('[data-empty="campaigns"]').hidden = rows.length > 0;
  }

  function renderLinks(results) {
    var rows = results.slice().sort(function (a, b) {
      return (b.count_clicked || 0) - (a.count_clicked || 0) ||
        String(a.link_name).localeCompare(String(b.link_name));
    }).slice(0, TOP_LINKS);
    var fresh = document.createDocumentFragment();
    rows.forEach(function (row) {
      var tr = el("tr");
      var name = row.link_name === undefined || row.link_name === null ? "" : String(row.link_name);
      tr.setAttribute("data-link", name);
      var first = cell("Link name", name || "(no name)", null);
      first.className = name ? "name" : "name none";
      tr.appendChild(first);
      tr.appendChild(cell("Clicks", count(row.count_clicked || 0), "count_clicked"));
      tr.appendChild(cell("Unique clicks", count(row.count_unique_clicked || 0), "count_unique_clicked"));
      tr.appendChild(cell("Unique clicks, humans", count(row.count_nonprefetched_unique_clicked || 0),
        "count_nonprefetched_unique_clicked"));
      fresh.appendChild(tr);
    });
    $("#links tbody").replaceChildren(fresh);
    $('[data-empty="links"]').hidden = rows.length > 0;
  }

  // --- time series -----------------------------------------------------------------

  function buckets(range, precision, results) {
    var step = precision === "hour" ? HOUR : DAY;
    var byTime = {};
    results.forEach(function (row) {
      var t = Date.parse(row.ts);
      if (!isNaN(t)) { byTime[t] = row; }
    });
    var times = {};
    for (var t = Math.floor(range.from / step) * step; t < range.to; t += step) { times[t] = true; }
    Object.keys(byTime).forEach(function (key) { times[key] = true; });  // never drop an answer
    return Object.keys(times).map(Number).sort(function (a, b) { return a - b; })
      .map(function (time) { return {t: time, row: byTime[time] || {}}; });
  }

  function niceMax(value) {
    if (value <= 4) { return 4; }
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * power >= value) { return steps[i] * power; }
    }
    return 10 * power;
  }

  function tickText(time, precision) {
    var iso = new Date(time).toISOString();
    return precision === "hour" ? iso.slice(5, 10) + " " + iso.slice(11, 16) : iso.slice(5, 10);
  }

  function renderPlot(series) {
    state.lastSeries = series;
    var box = $("#plot");
    var width = Math.max(260, Math.floor(box.clientWidth || 600));
    var height = width < 500 ? 200 : 260;
    var pad = {left: 44, right: 10, top: 10, bottom: 28};
    var points = series.points;
    var top = 0;
    points.forEach(function (p) {
      SERIES.forEach(function (s) { top = Math.max(top, Number(p.row[s.metric]) || 0); });
    });
    top = niceMax(top);
    var plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
    var x = function (i) {
      return pad.left + (points.length > 1 ? i * plotW / (points.length - 1) : plotW / 2);
    };
    var y = function (v) { return pad.top + plotH - (v / top) * plotH; };
    var chart = svg("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height,
      role: "img", "aria-labelledby": "plot-title"});
    for (var g = 0; g <= 4; g++) {
      var value = top * g / 4;
      chart.appendChild(svg("line", {x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value),
        "class": "gridline"}));
      var label = svg("text", {x: pad.left - 6, y: y(value) + 4, "class": "axis", "text-anchor": "end"});
      label.textContent = numbers.format(value);
      chart.appendChild(label);
    }
    // Evenly spaced time labels: every step-th bucket.
    var most = width < 500 ? 3 : 7;
    var step = Math.max(1, Math.ceil((points.length - 1) / (most - 1)));
    var labelled = [];
    for (var index = 0; index < points.length; index += step) { labelled.push(index); }
    var last = points.length - 1, gap = series.precision === "hour" ? 110 : 70;
    if (labelled[labelled.length - 1] !== last && x(last) - x(labelled[labelled.length - 1]) > gap) {
      labelled.push(last);  // the newest bucket too, when its label has room
    }
    labelled.forEach(function (index) {
      var anchor = points.length === 1 ? "middle" : index === 0 ? "start" :
        index === last ? "end" : "middle";
      var tick = svg("text", {x: x(index), y: height - 8, "class": "axis", "text-anchor": anchor});
      tick.textContent = tickText(points[index].t, series.precision);
      chart.appendChild(tick);
    });
    SERIES.forEach(function (s) {
      var total = 0;
      var d = points.map(function (p, i) {
        var v = Number(p.row[s.metric]) || 0;
        total += v;
        return (i ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      }).join(" ");
      if (points.length === 1) { d += " h0.1"; }
      chart.appendChild(svg("path", {d: d, "class": "line " + s.css, "data-series": s.metric,
        "data-total": total}));
    });
    // One invisible column per bucket whose tooltip names its numbers.
    var column = points.length > 1 ? plotW / (points.length - 1) : plotW;
    points.forEach(function (p, i) {
      var hit = svg("rect", {x: Math.max(pad.left, x(i) - column / 2), y: pad.top,
        width: column, height: plotH, "class": "hit"});
      var title = svg("title");
      title.textContent = new Date(p.t).toISOString().slice(0, 16).replace("T", " ") + " UTC\n" +
        SERIES.map(function (s) { return s.label + ": " + count(Number(p.row[s.metric]) || 0); }).join("\n");
      hit.appendChild(title);
      chart.appendChild(hit);
    });
    box.replaceChildren(chart);
    var sums = {};
    SERIES.forEach(function (s) {
      sums[s.metric] = points.reduce(function (sum, p) { return sum + (Number(p.row[s.metric]) || 0); }, 0);
    });
    $("#plot-summary").textContent = "In this range: " + count(sums.count_rendered) + " opens (" +
      count(sums.count_nonprefetched_rendered) + " by humans), " + count(sums.count_clicked) +
      " clicks (" + count(sums.count_nonprefetched_clicked) + " by humans), per " + series.precision + ".";
  }

  // --- live tail -------------------------------------------------------------------

  function timeText(iso) {
    var t = Date.parse(iso);
    if (isNaN(t)) { return String(iso || ""); }
    var text = new Date(t).toISOString();
    return text.slice(5, 10) + " " + text.slice(11, 19);
  }

  function verdictOf(event) {
    var engage = event.engage && typeof event.engage === "object" ? event.engage : {};
    var verdict = typeof engage.verdict === "string" ? engage.verdict : "human";
    var reasons = Array.isArray(engage.reasons) ? engage.reasons.map(String) : [];
    return {verdict: verdict, reasons: reasons};
  }

  function eventItem(event) {
    var item = el("li", "event");
    var id = String(event.event_id || "");
    item.setAttribute("data-event-id", id);
    var judged = verdictOf(event);
    item.setAttribute("data-verdict", judged.verdict);
    var head = el("div", "event-head");
    head.appendChild(el("time", "when", timeText(event.timestamp) + " UTC"));
    var type = TYPES.hasOwnProperty(event.type) ? event.type : "other";
    head.appendChild(el("span", "badge type-" + type, TYPES[type] || String(event.type)));
    var known = VERDICTS.hasOwnProperty(judged.verdict);
    head.appendChild(el("span", "badge verdict verdict-" + (known ? judged.verdict : "other"),
      known ? VERDICTS[judged.verdict] : judged.verdict));
    item.appendChild(head);
    var facts = el("dl", "facts");
    function fact(label, value, css) {
      if (value === undefined || value === null || value === "") { return; }
      facts.appendChild(el("dt", "", label));
      facts.appendChild(el("dd", css || "", value));
    }
    fact("Campaign", event.campaign_id);
    fact("Recipient", event.rcpt_to || (Array.isArray(event.rcpt_to_list) ? event.rcpt_to_list.join(", ") : ""));
    if (event.type === "click") {
      fact("Link", event.target_link_name ? event.target_link_name + " \u2013 " + event.target_link_url : event.target_link_url);
    }
    fact("Reasons", judged.reasons.join("; "), "reasons");
    fact("Client", event.user_agent, "agent");
    item.appendChild(facts);
    if (!state.firstTail && !state.seen[id]) { item.classList.add("fresh"); }
    return item;
  }

  function renderTail(data) {
    var fresh = document.createDocumentFragment();
    var seen = {};
    data.results.forEach(function (event) {
      fresh.appendChild(eventItem(event));
      seen[String(event.event_id)] = true;
    });
    $("#tail").replaceChildren(fresh);
    state.seen = seen;
    state.firstTail = false;
    $('[data-empty="tail"]').hidden = data.results.length > 0;
    $("#tail-summary").textContent = count(data.total_count || 0) + " opens and clicks in the last 24 hours" +
      (data.total_count > data.results.length ? ", the newest " + data.results.length + " below." : ".");
  }

  // --- refresh loops ---------------------------------------------------------------

  function mark(name, value) { document.body.setAttribute("data-" + name, value); }

  function stamp() {
    return new Date().toISOString().slice(11, 19) + " UTC";
  }

  function refreshMetrics() {
    var range = currentRange();
    if (!range) {
      $("#status").textContent = "Choose a range whose start is before its end.";
      return Promise.resolve();
    }
    state.range = range;
    var precision = precisionOf(range);
    mark("metrics", "loading");
    var jobs = [
      getJSON("dashboard/api/v1/metrics/deliverability", metricsParams(range, TOTALS))
        .then(function (data) { renderSummary(data.results[0] || {}); showError("summary", null); },
          function (error) { showError("summary", error); throw error; }),
      getJSON("dashboard/api/v1/metrics/deliverability/campaign", metricsParams(range, TOTALS))
        .then(function (data) { renderCampaigns(data.results); showError("campaigns", null); },
          function (error) { showError("campaigns", error); throw error; }),
      getJSON("dashboard/api/v1/metrics/deliverability/link-name",
        metricsParams(range, LINK_METRICS, {order_by: "count_clicked", limit: String(TOP_LINKS)}))
        .then(function (data) { renderLinks(data.results); showError("links", null); },
          function (error) { showError("links", error); throw error; }),
      getJSON("dashboard/api/v1/metrics/deliverability/time-series",
        metricsParams(range, SERIES.map(function (s) { return s.metric; }), {precision: precision}))
        .then(function (data) {
          renderPlot({precision: precision, points: buckets(range, precision, data.results)});
          showError("plot", null);
        }, function (error) { showError("plot", error); throw error; })
    ];
    return Promise.all(jobs).then(function () {
      $("#status").textContent = minuteText(range.from).replace("T", " ") + " to " +
        minuteText(range.to).replace("T", " ") + " UTC, updated " + stamp();
      mark("from", minuteText(range.from));  // the range the numbers shown are for
      mark("to", minuteText(range.to));
      mark("precision", precision);
      mark("metrics", "ready");
    }, function (error) {
      $("#status").textContent = "Could not load the numbers: " + error.message;
      mark("metrics", "error");
    });
  }

  function refreshTail() {
    return getJSON("dashboard/api/v1/events/message", {events: "click,open,initial_open", per_page: String(TAIL_SIZE)})
      .then(function (data) {
        renderTail(data);
        showError("tail", null);
        $("#live").classList.remove("stale");
        mark("tail", "ready");
      }, function (error) {
        showError("tail", error);
        $("#live").classList.add("stale");
        mark("tail", "error");
      });
  }

  // (Re)starts one polling chain; a chain started earlier stops at its next turn.
  function loop(name, task, every) {
    clearTimeout(state.timers[name]);
    var generation = state.generations[name] = (state.generations[name] || 0) + 1;
    var run = function () {
      task().then(function () {
        if (generation === state.generations[name] && !document.hidden) {
          state.timers[name] = setTimeout(run, every);
        }
      });
    };
    run();
  }

  function start() {
    loop("metrics", refreshMetrics, METRICS_EVERY_MS);
    loop("tail", refreshTail, TAIL_EVERY_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("#range").addEventListener("submit", function (event) {
      event.preventDefault();
      loop("metrics", refreshMetrics, METRICS_EVERY_MS);
    });
    $("#preset").addEventListener("change", function () {
      if ($("#preset").value !== "custom") { loop("metrics", refreshMetrics, METRICS_EVERY_MS); }
    });
    ["#from", "#to"].forEach(function (selector) {
      $(selector).addEventListener("input", function () { $("#preset").value = "custom"; });
    });
    // Polling stops while the tab is hidden and catches up when it is shown again.
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { start(); }
    });
    var resized = null;
    window.addEventListener("resize", function () {
      clearTimeout(resized);
      resized = setTimeout(function () { if (state.lastSeries) { renderPlot(state.lastSeries); } }, 150);
    });
    start();
  });
}());
