// Draws the dashboard's trend charts with uPlot (served from the package at /static/vendor/uplot.js).
// Each <div class="chart" data-source="<id>" data-series="size|duration"> takes its points from the
// JSON data block <script type="application/json" id="<id>">; nothing else runs on the pages.
'use strict';
(function () {
  function sizeText(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
  }
  function secondsText(s) {
    if (s < 1) return Math.round(s * 1000) + ' ms';
    if (s < 120) return s.toFixed(s < 10 ? 1 : 0) + ' s';
    return (s / 60).toFixed(1) + ' min';
  }
  function drawOne(el) {
    var source = document.getElementById(el.getAttribute('data-source'));
    if (!source) return;
    var series = JSON.parse(source.textContent)[el.getAttribute('data-series')];
    if (!series) return;
    var fmt = series.unit === 'bytes' ? sizeText : secondsText;
    new uPlot({
      width: Math.max(280, el.clientWidth || 440),
      height: 200,
      legend: { show: false },
      series: [{}, { label: series.label, stroke: series.unit === 'bytes' ? '#0b5cad' : '#9a6700', width: 2, points: { show: true, size: 5 }, value: function (u, v) { return v == null ? '-' : fmt(v); } }],
      axes: [{}, { size: 80, values: function (u, vals) { return vals.map(fmt); } }],
    }, [series.x, series.y], el);
    el.setAttribute('data-drawn', 'true');
  }
  function draw() {
    if (typeof uPlot !== 'function') return;
    var charts = document.querySelectorAll('div.chart[data-source]');
    for (var i = 0; i < charts.length; i++) drawOne(charts[i]);
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', draw);
  else draw();
})();
