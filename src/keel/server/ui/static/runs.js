// Runs table: select all on the page, and Compare enabled from two selected runs.
"use strict";
Keel.widget("#runs-table", (table) => {
  const boxes = () => table.querySelectorAll('input[name="runs"]');
  const update = () => {
    const button = document.getElementById("compare-button");
    const n = Array.from(boxes()).filter((b) => b.checked).length;
    if (button) {
      button.disabled = n < 2;
      button.textContent = n ? `Compare ${n} selected` : "Compare selected";
    }
    for (const b of boxes()) b.closest("tr").classList.toggle("selected", b.checked);
  };
  table.addEventListener("change", (e) => {
    if (e.target.id === "select-all") for (const b of boxes()) b.checked = e.target.checked;
    update();
  });
  update();
});
