// Keel UI glue: colour theme, CSRF header, and idempotent widgets.
// No inline scripts anywhere: htmx re-runs them on history restore.
"use strict";
(function () {
  const root = document.documentElement;
  const THEMES = ["system", "light", "dark"];
  function applyTheme(name) {
    if (name === "light" || name === "dark") root.dataset.theme = name;
    else delete root.dataset.theme;
  }
  applyTheme(localStorage.getItem("keel-theme"));

  const widgets = [];
  // Keel.widget(selector, init): init(element) once per element, on load and after swaps.
  window.Keel = {
    widget(selector, init) {
      widgets.push([selector, init]);
      if (document.readyState !== "loading") document.querySelectorAll(selector).forEach(start(init));
    },
    fetchJSON(url) {
      return fetch(url, { headers: { Accept: "application/json" } }).then((r) => {
        if (!r.ok) throw new Error(url + ": " + r.status);
        return r.json();
      });
    },
    csrf() {
      const m = document.querySelector('meta[name="keel-csrf"]');
      return m ? m.content : "";
    },
  };
  function start(init) {
    return (el) => {
      if (el.dataset.ready) return;
      el.dataset.ready = "1";
      try { init(el); } catch (e) { console.error(e); }
    };
  }
  function scan(scope) {
    for (const [selector, init] of widgets) {
      if (scope.matches && scope.matches(selector)) start(init)(scope);
      scope.querySelectorAll(selector).forEach(start(init));
    }
  }
  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme-toggle");
    if (button) {
      button.addEventListener("click", () => {
        const now = localStorage.getItem("keel-theme") || "system";
        const next = THEMES[(THEMES.indexOf(now) + 1) % THEMES.length];
        localStorage.setItem("keel-theme", next);
        applyTheme(next);
        button.title = "Colour theme: " + next;
      });
    }
    document.body.addEventListener("htmx:configRequest", (e) => {
      e.detail.headers["X-Keel-CSRF"] = Keel.csrf();
    });
    htmx.onLoad(scan);
  });
  // <button data-copy="text">: copies its text (e.g. a keel serve command).
  Keel.widget("[data-copy]", (el) => {
    el.addEventListener("click", () => {
      navigator.clipboard.writeText(el.dataset.copy).then(() => {
        const was = el.textContent;
        el.textContent = "Copied";
        setTimeout(() => { el.textContent = was; }, 1200);
      });
    });
  });
})();
