// The console works without this script; it only reads a chart's column out in words as the
// pointer moves over it (the tables below each chart hold the same numbers).
document.addEventListener("DOMContentLoaded", () => {
  for (const chart of document.querySelectorAll("svg[data-readout]")) {
    const readout = document.getElementById(chart.dataset.readout);
    if (!readout) continue;
    for (const column of chart.querySelectorAll(".column")) {
      column.addEventListener("mouseenter", () => { readout.textContent = column.dataset.summary; });
    }
    chart.addEventListener("mouseleave", () => { readout.textContent = ""; });
  }
});
