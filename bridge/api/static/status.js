"use strict";
// Renders /status.json into the page and refreshes it. Every value goes in as text
// (textContent), never as markup: lock names come from drivers and their peers.
(function () {
  const REFRESH_MS = 5000;

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function problems(lock) {
    const parts = [];
    for (const p of lock.problems) {
      parts.push({ text: p.code, cls: p.kind === "error" ? "problem" : "warning",
                   remedy: p.remedy });
    }
    for (const code of lock.code_errors) parts.push({ text: "code: " + code, cls: "problem" });
    return parts;
  }

  function render(data) {
    document.getElementById("bridge-id").textContent = data.bridge_id + " " + data.version;
    const online = data.locks.filter((l) => l.online).length;
    const bits = [online + " of " + data.locks.length + " locks online",
                  data.codes_pending + " codes pending"];
    if (data.upstream === null) bits.push("no upstream configured");
    else if (data.upstream.connected) bits.push("upstream connected");
    else bits.push("upstream disconnected (" + data.upstream.outbox_depth + " events waiting)");
    if (!data.clock_synchronized) bits.push("system clock not synchronised: schedules held");
    document.getElementById("summary").textContent = bits.join(" · ");

    const body = document.querySelector("#locks tbody");
    const rows = [];
    for (const lock of data.locks) {
      const row = document.createElement("tr");
      row.dataset.deviceId = lock.device_id;
      cell(row, lock.name || lock.device_id, "name");
      cell(row, lock.availability.replace(/_/g, " "), "state state-" + lock.availability);
      cell(row, String(lock.codes.set), "codes-set num");
      cell(row, String(lock.codes.setting + lock.codes.removing + lock.codes.unknown),
           "codes-pending num");
      cell(row, String(lock.codes.unset), "codes-unset num");
      cell(row, lock.backup_pool === null ? "off" : lock.backup_pool.ready + " ready",
           "backup-pool");
      const list = cell(row, "", "problems");
      const found = problems(lock);
      if (found.length === 0) list.textContent = "none";
      found.forEach((p, i) => {
        const span = document.createElement("span");
        span.className = p.cls;
        span.textContent = (i ? ", " : "") + p.text;
        list.appendChild(span);
        if (p.remedy) {
          const remedy = document.createElement("small");
          remedy.className = "remedy";
          remedy.textContent = "What to do: " + p.remedy;
          list.appendChild(remedy);
        }
      });
      rows.push(row);
    }
    body.replaceChildren(...rows);
    document.body.classList.remove("stale");
    document.getElementById("updated").textContent = "Updated " + data.generated_at;
  }

  async function refresh() {
    try {
      const answer = await fetch("/status.json", { cache: "no-store" });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      render(await answer.json());
    } catch (err) {
      document.body.classList.add("stale");
      document.getElementById("summary").textContent =
        "Cannot reach the lockbridge daemon (" + err.message + "); retrying";
    }
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
