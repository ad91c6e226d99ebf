// perfmark dashboard: charts from embedded JSON, copy buttons, repeatable form rows,
// select-all boxes and confirmations. No inline scripts: the pages' CSP forbids them.
(function () {
  "use strict";

  // Colour-blind-safe palette (Okabe-Ito), dark enough for 3:1 contrast on white.
  var PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#8f7200", "#56B4E9", "#444444"];
  var charts = new WeakMap();

  function readJson(id) {
    var node = document.getElementById(id);
    if (!node) return null;
    try {
      return JSON.parse(node.textContent || "null");
    } catch (error) {
      return null;
    }
  }

  function buildChart(canvas) {
    if (typeof Chart === "undefined") return;
    var spec = readJson(canvas.getAttribute("data-chart"));
    if (!spec) return;
    var previous = charts.get(canvas);
    if (previous) previous.destroy();
    var datasets = spec.series.map(function (series, index) {
      var colour = PALETTE[index % PALETTE.length];
      return {
        label: series.label,
        data: series.values.map(Number),
        borderColor: colour,
        backgroundColor: spec.type === "bar" ? colour : colour + "33",
        yAxisID: series.axis || "y",
        tension: 0,
        pointRadius: spec.labels.length > 45 ? 0 : 3,
        fill: false,
      };
    });
    var scales = { y: { beginAtZero: true, position: "left" } };
    if (spec.series.some(function (s) { return s.axis === "y2"; })) {
      scales.y2 = { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } };
    }
    charts.set(canvas, new Chart(canvas, {
      type: spec.type || "line",
      data: { labels: spec.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        indexAxis: spec.horizontal ? "y" : "x",
        interaction: { mode: "index", intersect: false },
        scales: scales,
        plugins: { legend: { position: "bottom" } },
      },
    }));
  }

  function initCharts(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(buildChart);
  }

  function copyText(button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) return;
    var text = target.value !== undefined ? target.value : target.textContent;
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      button.setAttribute("aria-live", "polite");
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(target); });
    } else {
      selectText(target);
      try { document.execCommand("copy"); done(); } catch (error) { /* text stays selected */ }
    }
  }

  function selectText(node) {
    if (node.select) { node.select(); return; }
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function addRow(button) {
    var template = document.getElementById(button.getAttribute("data-add-row"));
    var body = document.getElementById(button.getAttribute("data-rows"));
    if (!template || !body) return;
    var index = body.querySelectorAll("[data-row]").length;
    while (body.querySelector('[data-row="' + index + '"]')) index += 1;
    var html = template.innerHTML.split("__INDEX__").join(String(index));
    body.insertAdjacentHTML("beforeend", html);
    var first = body.querySelector('[data-row="' + index + '"] input, [data-row="' + index + '"] select');
    if (first) first.focus();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (button) { event.preventDefault(); copyText(button); return; }
    button = event.target.closest("button[data-add-row]");
    if (button) { event.preventDefault(); addRow(button); return; }
    button = event.target.closest("button[data-remove-row]");
    if (button) {
      event.preventDefault();
      var row = button.closest("[data-row]");
      if (row) row.remove();
    }
  });

  document.addEventListener("change", function (event) {
    var box = event.target.closest("input[data-select-all]");
    if (!box) return;
    document.querySelectorAll('input[name="' + box.getAttribute("data-select-all") + '"]')
      .forEach(function (item) { item.checked = box.checked; });
  });

  document.addEventListener("submit", function (event) {
    var submitter = event.submitter;
    var message = (submitter && submitter.getAttribute("data-confirm")) ||
      event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () { initCharts(document); });
  document.addEventListener("htmx:afterSettle", function (event) { initCharts(event.target); });
})();
