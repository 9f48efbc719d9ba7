// Registry pages: move and remove aliases (JSON + CSRF header), then re-render the page in place.
"use strict";
(function () {
  function send(method, url, body) {
    return fetch(url, {
      method,
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-Keel-CSRF": Keel.csrf() },
      body: JSON.stringify(body || {}),
    }).then((r) => r.json().catch(() => ({})).then((j) => {
      if (!r.ok) throw new Error((j.error && j.error.message) || r.status + " " + r.statusText);
      return j;
    }));
  }
  function reload(message) {
    return htmx.ajax("GET", location.pathname + location.search, { target: "#main", swap: "innerHTML" }).then(() => {
      const status = document.querySelector("[data-alias-status]");
      if (status) status.textContent = message;
    });
  }
  Keel.widget("[data-aliases]", (root) => {
    const error = root.querySelector("[data-alias-error]");
    const fail = (e) => { error.textContent = e.message; error.hidden = false; };
    const form = root.querySelector("form");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      error.hidden = true;
      const alias = form.elements.alias.value.trim();
      send("POST", root.dataset.url, { alias, version: root.dataset.version })
        .then(() => reload("@" + alias + " now points at this version."), fail);
    });
    root.addEventListener("click", (ev) => {
      const button = ev.target.closest("[data-remove]");
      if (!button) return;
      const alias = button.dataset.remove;
      send("DELETE", root.dataset.url + "/" + encodeURIComponent(alias))
        .then(() => reload("@" + alias + " removed."), fail);
    });
  });
})();
