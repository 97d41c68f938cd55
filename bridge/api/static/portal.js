// The customer portal's page: renders the session's locks, codes and activity from
// /portal/api/*, acts through its POST routes, and follows changes over server-sent events.
// No library and no inline code: the CSP allows this file and nothing else.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let session = null;
  let locks = [];
  let currentLock = null;
  let pending = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  async function api(path, body) {
    const init = body === undefined ? {credentials: "same-origin"} : {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
    const response = await fetch("/portal/api/" + path, init);
    const data = await response.json().catch(() => ({}));
    if (response.status === 401) {
      window.location.reload();  // the server's page says the session ended and what to do
    }
    if (!response.ok) {
      const error = data.error || {};
      throw new Error(error.message || "The box answered " + response.status);
    }
    return data;
  }

  function say(text, kind) {
    const message = $("message");
    message.textContent = text;
    message.className = kind || "ok";
    message.hidden = false;
  }

  const when = (iso) => iso ? new Date(iso).toLocaleString([], {
    dateStyle: "medium", timeStyle: "short"}) : "";

  function problemList(problems) {
    if (!problems.length) return null;
    return el("ul", {class: "problems"}, ...problems.map((p) => el("li",
      {class: p.kind, "data-code": p.code},
      el("strong", {}, p.code.replaceAll("_", " ")), " ", p.message,
      el("span", {class: "cause"}, "Why: " + p.cause),
      el("span", {class: "remedy"}, "What to do: " + p.remedy))));
  }

  function lockCard(lock, linked) {
    const pool = lock.backup_pool;
    const facts = el("dl", {},
      el("dt", {}, "State"), el("dd", {class: "state " + (lock.online ? "online" : "offline")},
        lock.online ? "Online" : lock.availability.replaceAll("_", " ")),
      lock.locked === null ? null : el("dt", {}, "Door"),
      lock.locked === null ? null : el("dd", {}, lock.locked ? "Locked" : "Unlocked"),
      lock.battery_percent === null ? null : el("dt", {}, "Battery"),
      lock.battery_percent === null ? null : el("dd", {class: "battery"},
        lock.battery_percent + "%"),
      el("dt", {}, "Codes"), el("dd", {}, String(lock.codes) +
        (lock.codes_failing ? ", " + lock.codes_failing + " failing" : "")),
      el("dt", {}, "Backup pool"), el("dd", {class: "pool"}, pool
        ? pool.ready + " of " + pool.size + " ready" : "off"));
    const title = linked
      ? el("h3", {}, el("a", {href: "#lock=" + lock.device_id}, lock.name))
      : el("h2", {id: "lock-name"}, lock.name);
    return el("article", {class: "card", "data-device-id": lock.device_id}, title,
      el("p", {class: "model"}, lock.model), facts, problemList(lock.problems));
  }

  function windowText(code) {
    if (code.backup_in_pool) return "\u2013";
    if (code.type !== "time_bound") return "Always";
    return when(code.starts_at) + " \u2013 " + when(code.ends_at);
  }

  function codeRow(code) {
    const name = el("td", {class: "name"}, code.name || "(no name)");
    if (code.is_backup) {
      name.append(" ", el("span", {class: "badge backup"}, "Backup"));
      if (code.backup_for) name.append(el("span", {class: "sub"}, "for " + code.backup_for));
      else if (code.backup_in_pool) name.append(el("span", {class: "sub"}, "ready in the pool"));
    }
    if (code.origin) name.append(el("span", {class: "sub origin"}, code.origin.label));
    const pin = code.pin ? code.pin : "\u2022".repeat(code.pin_length || 4);
    const actions = el("td", {class: "actions"});
    const button = (label, action, cls) => el("button", {type: "button", class: cls || "",
      "data-action": action, "data-id": code.access_code_id, textContent: label});
    if (session.read_only) actions.append(el("span", {class: "sub"}, "read-only"));
    else if (code.can_pull_backup) actions.append(button("Backup code", "pull_backup"));
    if (!session.read_only && code.can_retry) actions.append(button("Retry", "retry"));
    if (!session.read_only && code.can_delete) actions.append(button("Revoke", "delete", "danger"));
    return el("tr", {"data-id": code.access_code_id, "data-status": code.status},
      name, el("td", {class: "pin" + (code.pin ? "" : " masked"), "data-label": "PIN"}, pin),
      el("td", {class: "window", "data-label": "When"}, windowText(code)),
      el("td", {class: "status", "data-label": "Status"},
        code.removing ? "removing" : code.status),
      el("td", {class: "issues"}, problemList(code.problems)), actions);
  }

  async function showLocks() {
    locks = (await api("locks")).locks;
    $("locks").replaceChildren(...locks.map((lock) => lockCard(lock, true)));
    const filter = $("activity-filter");
    const chosen = filter.value;
    filter.replaceChildren(el("option", {value: ""}, "All locks"),
      ...locks.map((l) => el("option", {value: l.device_id}, l.name)));
    filter.value = chosen;
  }

  async function showLock(deviceId) {
    const [lockData, codeData] = await Promise.all([api("locks"), api(
      "codes?device_id=" + encodeURIComponent(deviceId))]);
    locks = lockData.locks;
    const lock = locks.find((l) => l.device_id === deviceId);
    if (!lock) throw new Error("This lock is not in your portal.");
    $("lock-card").replaceChildren(lockCard(lock, false));
    $("codes").tBodies[0].replaceChildren(...codeData.codes.map(codeRow));
    $("no-codes").hidden = codeData.codes.length > 0;
  }

  function activityItem(event) {
    return el("li", {"data-type": event.event_type, "data-device-id": event.device_id || ""},
      el("time", {dateTime: event.occurred_at}, when(event.occurred_at)), " ",
      el("strong", {}, event.event_type), " ", event.device_name || "",
      event.access_code_name ? " \u00b7 " + event.access_code_name : "");
  }

  function filters(deviceId, reservationKey) {
    const query = new URLSearchParams();
    if (deviceId) query.set("device_id", deviceId);
    if (reservationKey) query.set("reservation_key", reservationKey);
    const text = query.toString();
    return text ? "?" + text : "";
  }

  async function showActivity(list, deviceId, reservationKey) {
    const events = (await api("events" + filters(deviceId, reservationKey))).events;
    list.replaceChildren(...events.reverse().map(activityItem));
  }

  function runItem(run) {
    return el("li", {"data-run-id": run.automation_run_id},
      el("time", {dateTime: run.created_at}, when(run.created_at)), " ",
      el("strong", {}, run.trigger),
      el("ul", {}, ...run.entries.map((entry) => el("li", {"data-action": entry.action},
        (entry.device_name || entry.device_id) + ": " + entry.action +
        (entry.reservation_key ? " (" + entry.reservation_key + ")" : "") +
        (entry.detail ? " \u00b7 " + entry.detail : "")))));
  }

  async function showRuns(deviceId, reservationKey) {
    const runs = (await api("runs" + filters(deviceId, reservationKey))).runs;
    $("runs").replaceChildren(...runs.map(runItem));
    $("no-runs").hidden = runs.length > 0;
    const keys = new Set();
    for (const run of runs) for (const entry of run.entries) {
      if (entry.reservation_key) keys.add(entry.reservation_key);
    }
    if (!reservationKey) {
      $("reservation-keys").replaceChildren(
        ...[...keys].sort().map((key) => el("option", {value: key})));
    }
  }

  async function showAllActivity() {
    const deviceId = $("activity-filter").value;
    const reservationKey = $("reservation-filter").value.trim();
    await showActivity($("activity"), deviceId, reservationKey);
    await showRuns(deviceId, reservationKey);
  }

  async function route() {
    const hash = window.location.hash.slice(1);
    const lockId = hash.startsWith("lock=") ? hash.slice(5) : null;
    currentLock = lockId;
    $("lock-view").hidden = !lockId;
    $("locks-view").hidden = hash !== "" && hash !== "locks";
    $("activity-view").hidden = hash !== "activity";
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("current", link.dataset.tab === (lockId ? "locks" : hash || "locks"));
    }
    try {
      if (lockId) {
        await showLock(lockId);
        await showActivity($("lock-activity"), lockId);
      } else if (hash === "activity") {
        await showLocks();
        await showAllActivity();
      } else {
        await showLocks();
      }
    } catch (error) {
      say(error.message, "error");
    }
  }

  function refreshSoon() {
    // Many events arrive together (a code set, its backups...): one refresh for the lot.
    if (pending) return;
    pending = setTimeout(() => { pending = null; route(); }, 150);
  }

  function follow() {
    const source = new EventSource("/portal/api/stream");
    source.addEventListener("activity", (message) => {
      const event = JSON.parse(message.data);
      const filter = $("activity-filter").value;
      const byStay = $("reservation-filter").value.trim();
      if (!$("activity-view").hidden && (!filter || filter === event.device_id) && !byStay) {
        $("activity").prepend(activityItem(event));
      }
      if (currentLock === event.device_id) {
        $("lock-activity").prepend(activityItem(event));
      }
      if (!currentLock || currentLock === event.device_id) refreshSoon();
    });
  }

  async function act(action, id) {
    const code = id;
    if (action === "delete" && !window.confirm("Revoke this code? It comes off the lock.")) {
      return;
    }
    const answer = await api("codes/" + action, {access_code_id: code});
    if (action === "pull_backup") {
      const backup = answer.backup_access_code;
      $("handover-for").textContent = backup.backup_for || "the guest";
      $("handover-until").textContent = when(backup.ends_at);
      $("handover-pin").textContent = backup.pin;
      $("handover").hidden = false;
      say("Backup code handed out: give the guest the PIN above.");
    } else if (action === "retry") {
      say("Sending the code to the lock again.");
    } else {
      say("The code is coming off the lock.");
    }
    await route();
  }

  async function create(form) {
    const data = new FormData(form);
    const body = {device_id: currentLock, name: data.get("name"),
      use_backup_access_code_pool: data.get("use_backup_access_code_pool") === "on"};
    if (data.get("code")) body.code = data.get("code");
    for (const key of ["starts_at", "ends_at"]) {
      if (data.get(key)) body[key] = new Date(data.get(key)).toISOString();
    }
    const answer = await api("codes/create", body);
    form.reset();
    say("Code \u201c" + (answer.access_code.name || "") + "\u201d created: it is on its way " +
      "to the lock.");
    await route();
  }

  function wireWrites() {
    $("create-form").addEventListener("submit", (event) => {
      event.preventDefault();
      create(event.target).catch((e) => say(e.message, "error"));
    });
    $("unmanage").addEventListener("click", () => {
      if (!window.confirm("Remove this lock from lockbridge? Its backup codes come off it.")) {
        return;
      }
      api("devices/unmanage", {device_id: currentLock}).then(() => {
        say("The lock is no longer managed by lockbridge.");
        window.location.hash = "locks";
      }).catch((e) => say(e.message, "error"));
    });
  }

  function wire() {
    document.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      act(button.dataset.action, button.dataset.id).catch((e) => say(e.message, "error"));
    });
    if (!session.read_only) wireWrites();
    $("handover-close").addEventListener("click", () => { $("handover").hidden = true; });
    $("reservation-filter").addEventListener("change", () => {
      showAllActivity().catch((e) => say(e.message, "error"));
    });
    $("activity-filter").addEventListener("change", () => {
      showAllActivity().catch((e) => say(e.message, "error"));
    });
    window.addEventListener("hashchange", () => {
      // A new view: last view's confirmation and handed-out PIN are not about it.
      $("message").hidden = true;
      $("handover").hidden = true;
      route();
    });
  }

  async function start() {
    session = await api("session");
    document.body.classList.toggle("read-only", session.read_only);
    document.body.classList.toggle("embedded", session.is_embedded);
    document.body.classList.toggle("restricted", session.navigation_mode === "restricted");
    $("mode").hidden = !session.read_only;
    if (session.read_only) {
      for (const node of document.querySelectorAll(".writes")) node.remove();
    }
    wire();
    follow();
    await route();
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", () => {
    start().catch((error) => say(error.message, "error"));
  });
})();
