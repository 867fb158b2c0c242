// Marks the page as laid out (data-rendered on <html>, data-marks/data-width on every chart) for the
// headless browser test; the page needs no script to be read.
(function () {
  function mark() {
    var charts = document.querySelectorAll('svg.chart'), visible = 0, marks = 0;
    for (var i = 0; i < charts.length; i++) {
      var s = charts[i], b = s.getBoundingClientRect();
      var n = s.querySelectorAll('rect.bar, rect.cell, circle, path.series').length;
      s.setAttribute('data-marks', String(n));
      s.setAttribute('data-width', String(Math.round(b.width)));
      s.setAttribute('data-height', String(Math.round(b.height)));
      if (b.width > 0 && b.height > 0) visible++;
      marks += n;
    }
    var root = document.documentElement;
    root.setAttribute('data-charts', String(charts.length));
    root.setAttribute('data-charts-visible', String(visible));
    root.setAttribute('data-marks', String(marks));
    root.setAttribute('data-rendered', charts.length > 0 && visible === charts.length ? 'true' : 'false');
  }
  mark();
  window.addEventListener('load', mark);
})();
