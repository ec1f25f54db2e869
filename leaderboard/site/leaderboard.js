// morbench leaderboard: click a column header to sort its table. Rows are moved, never re-written:
// this script reads the data-sort attributes the builder wrote and creates no HTML.
"use strict";

function cellKey(row, index, type) {
  const raw = row.cells[index].getAttribute("data-sort");
  if (type === "number") {
    return raw === null || raw === "" ? null : Number(raw);
  }
  return raw === null ? row.cells[index].textContent : raw;
}

function compareKeys(a, b, type, direction) {
  if (a === null && b === null) return 0;
  if (a === null) return 1; // n/a last in both directions
  if (b === null) return -1;
  // text keys are the builder's case-folded names, compared by code point (the same order everywhere)
  const order = type === "number" ? a - b : a < b ? -1 : a > b ? 1 : 0;
  return direction === "ascending" ? order : -order;
}

function sortTable(table, header) {
  const headers = Array.from(header.parentNode.children);
  const index = headers.indexOf(header);
  const type = header.getAttribute("data-type") || "text";
  const current = header.getAttribute("aria-sort");
  // first click: numbers descending (best first for most metrics), text ascending; then toggle
  let direction = type === "number" ? "descending" : "ascending";
  if (current === "ascending") direction = "descending";
  if (current === "descending") direction = "ascending";
  headers.forEach((h) => h.setAttribute("aria-sort", "none"));
  header.setAttribute("aria-sort", direction);
  const body = table.tBodies[0];
  const rows = Array.from(body.rows).map((row, position) => ({ row, position, key: cellKey(row, index, type) }));
  rows.sort((x, y) => compareKeys(x.key, y.key, type, direction) || x.position - y.position);
  rows.forEach((item) => body.appendChild(item.row));
}

function installSorting() {
  document.querySelectorAll("table.sortable").forEach((table) => {
    table.querySelectorAll("thead th").forEach((header) => {
      header.addEventListener("click", () => sortTable(table, header));
      header.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortTable(table, header);
        }
      });
    });
  });
}

document.addEventListener("DOMContentLoaded", installSorting);
