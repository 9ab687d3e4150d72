// phloem web UI: small islands of behaviour on server-rendered pages. No framework, no build.
// Every request that changes state goes to the REST API with the session's CSRF token; text
// from the server is inserted with textContent only, never as markup.
"use strict";
(function () {
  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
  const API = meta("phloem-api");
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  async function call(method, url, body) {
    const headers = { "Accept": "application/json" };
    const csrf = meta("csrf-token");
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    const text = await res.text();
    if (text) { try { data = JSON.parse(text); } catch (e) { data = { detail: text }; } }
    if (!res.ok) {
      const detail = (data && (data.detail || data.title)) || res.statusText;
      const err = new Error(detail);
      err.status = res.status; err.data = data;
      throw err;
    }
    return data;
  }

  function flash(text, bad) {
    const box = $("#flash");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("bad", !!bad);
    box.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => { box.hidden = true; }, bad ? 12000 : 5000);
  }

  // -- log in / log out ------------------------------------------------------------------
  function login() {
    const form = $("#login");
    if (!form) return;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = $("#login-error");
      out.hidden = true;
      const user = form.user.value.trim(), password = form.password.value;
      if (!user || !password) { out.textContent = "Enter your user name and password."; out.hidden = false; return; }
      try {
        await call("POST", `${API}/auth/login`, { user, password });
        window.location.assign(form.dataset.next || "/");
      } catch (e) {
        out.textContent = e.message; out.hidden = false; form.password.select();
      }
    });
  }

  function logout() {
    const form = $("#logout");
    if (!form) return;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try { await call("POST", `${API}/auth/logout`); } catch (e) { /* the session may be gone */ }
      window.location.assign("/login");
    });
  }

  // -- action buttons (operators) --------------------------------------------------------
  function actions() {
    document.addEventListener("click", async (ev) => {
      const btn = ev.target.closest("button[data-action]");
      if (!btn) return;
      ev.preventDefault();
      if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
      const body = btn.dataset.body ? JSON.parse(btn.dataset.body) : undefined;
      btn.disabled = true;
      try {
        const data = await call(btn.dataset.method || "POST", btn.dataset.action, body);
        flash((data && data.message) || "Done.");
        if (btn.dataset.then) window.location.assign(btn.dataset.then);
        else if (!document.body.dataset.live) window.location.reload();
        else { btn.disabled = false; refreshRun && refreshRun(); }
      } catch (e) {
        flash(e.message, true);
        btn.disabled = false;
      }
    });
  }

  // -- trigger form: every field checked before anything is sent --------------------------
  const checks = {
    int: (v) => /^-?\d+$/.test(v) ? parseInt(v, 10) : fail("a whole number"),
    float: (v) => v !== "" && isFinite(Number(v)) ? Number(v) : fail("a number"),
    str: (v) => v,
    choice: (v) => v,
    date: (v) => /^\d{4}-\d{2}-\d{2}$/.test(v) ? v : fail("a date (YYYY-MM-DD)"),
    datetime: (v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(v) ? v : fail("a date and time"),
    json: (v) => { try { return JSON.parse(v); } catch (e) { return fail("valid JSON (" + e.message + ")"); } },
  };
  function fail(what) { const e = new Error("must be " + what); e.field = true; throw e; }

  function triggerForm() {
    const form = $("#trigger");
    if (!form) return;
    const validate = () => {
      const params = {}; let ok = true; let logical = null;
      for (const f of $$(".field", form)) {
        const input = $("input, select, textarea", f), msg = $(".field-error", f);
        f.classList.remove("invalid"); msg.hidden = true;
        const kind = f.dataset.kind;
        try {
          if (kind === "logical_date") { if (input.value) logical = checks.datetime(input.value); continue; }
          let value;
          if (kind === "bool") value = input.checked;
          else if (input.value === "" && f.dataset.optional === "true") value = null;
          else if (input.value === "" && kind !== "str") fail("given");
          else value = checks[kind](input.value);
          params[f.dataset.param] = value;
        } catch (e) {
          ok = false; f.classList.add("invalid"); msg.textContent = e.message; msg.hidden = false;
          input.setAttribute("aria-invalid", "true");
          continue;
        }
        input.removeAttribute("aria-invalid");
      }
      return ok ? { params, logical } : null;
    };
    form.addEventListener("change", validate);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = $(".form-error", form);
      out.hidden = true;
      const v = validate();
      if (!v) { const bad = $(".invalid input, .invalid textarea, .invalid select", form); if (bad) bad.focus(); return; }
      const body = { params: v.params };
      if (v.logical) body.logical_date = v.logical + (v.logical.length === 16 ? ":00" : "") + "+00:00";
      const btn = $("button[type=submit]", form);
      btn.disabled = true;
      try {
        const run = await call("POST", form.dataset.url, body);
        window.location.assign("/runs/" + encodeURIComponent(run.run_id));
      } catch (e) {
        out.textContent = e.message; out.hidden = false; btn.disabled = false;
      }
    });
  }

  // -- backfill: a dry run first, then the same request for real ------------------------------
  function backfillForm() {
    const form = $("#backfill");
    if (!form) return;
    const out = $(".form-error", form), preview = $("#backfill-preview");
    const read = () => {
      let ok = true;
      const body = { pipeline: form.dataset.pipeline };
      for (const f of $$(".field", form)) {
        const input = $("input", f), msg = $(".field-error", f);
        f.classList.remove("invalid"); msg.hidden = true;
        try {
          if (input.name === "max_active_runs") { if (input.value) body.max_active_runs = checks.int(input.value); }
          else body[input.name] = checks.date(input.value);
        } catch (e) { ok = false; f.classList.add("invalid"); msg.textContent = e.message; msg.hidden = false; }
      }
      if (ok && body.start > body.end) { ok = false; out.textContent = "The first date must not be after the last."; out.hidden = false; }
      body.rerun_failed = form.rerun_failed.checked;
      body.rerun_all = form.rerun_all.checked;
      return ok ? body : null;
    };
    let planned = null;
    form.addEventListener("input", () => { preview.hidden = true; planned = null; });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      out.hidden = true;
      const body = read();
      if (!body) return;
      try {
        const plan = await call("POST", form.dataset.preview, body);
        const tbody = $("tbody", preview);
        tbody.replaceChildren();
        const counts = {};
        for (const it of plan.items) {
          counts[it.action] = (counts[it.action] || 0) + 1;
          const tr = document.createElement("tr");
          const short = (d) => d.replace(/\.0+(?=[+Z])/, "").replace(/(T00:00:00)?(\+00:00|Z)$/, "").replace("T", " ");
          for (const v of [short(it.logical_date), short(it.interval_end), it.action, it.run_id || "–"]) {
            const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
          }
          tbody.appendChild(tr);
        }
        const parts = Object.entries(counts).map(([a, n]) => `${n} ${a}`);
        $("#backfill-summary").textContent = plan.items.length
          ? `${plan.items.length} intervals: ${parts.join(", ")}.` : "No interval in this range.";
        $("#backfill-create").hidden = !plan.items.some((it) => it.action === "new" || it.action === "rerun");
        preview.hidden = false;
        planned = body;
      } catch (e) { out.textContent = e.message; out.hidden = false; }
    });
    $("#backfill-create").addEventListener("click", async () => {
      if (!planned) return;
      try {
        const made = await call("POST", form.dataset.create, planned);
        flash(`Backfill created: ${made.items.length} intervals.`);
        window.location.assign(form.dataset.then);
      } catch (e) { out.textContent = e.message; out.hidden = false; }
    });
  }

  // -- admin forms: each sends its fields as JSON to the API -------------------------------------
  function apiForms() {
    $$("form.api-form").forEach((form) => form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = $(".form-error", form);
      if (out) out.hidden = true;
      const body = {};
      let url = form.dataset.url;
      try {
        for (const input of $$("input[name], textarea[name], select[name]", form)) {
          const what = input.labels && input.labels[0] ? input.labels[0].firstChild.textContent.trim() : input.name;
          if (input.required && !input.value.trim()) throw new Error(what + " must be given");
          if (input.minLength > 0 && input.value.length < input.minLength) throw new Error(`${what} needs at least ${input.minLength} characters`);
          if (input.name === form.dataset.key) {
            url += encodeURIComponent(input.value.trim());
            continue;
          }
          const type = input.dataset.type;
          if (type === "int") body[input.name] = checks.int(input.value.trim());
          else if (type === "json") body[input.name] = checks.json(input.value);
          else body[input.name] = input.value === "" && (input.name === "description" || "optional" in input.dataset) ? null : input.value;
        }
        const data = await call(form.dataset.method || "POST", url, body);
        if (form.dataset.reveal) {
          // a secret the API gives once (a new token): shown here, never stored by the page
          const box = $(".secret", form), value = $(".secret input", form);
          value.value = data[form.dataset.reveal];
          box.hidden = false;
          $("button[type=submit]", form).disabled = true;
          value.focus(); value.select();
          $(".secret button", form).addEventListener("click", () => { value.value = ""; window.location.reload(); });
          return;
        }
        flash("Saved.");
        window.location.reload();
      } catch (e) {
        if (out) { out.textContent = e.message; out.hidden = false; } else flash(e.message, true);
      }
    }));
  }

  // -- grid: groups fold and unfold --------------------------------------------------------
  function grid() {
    $$("button[data-fold]").forEach((btn) => btn.addEventListener("click", () => {
      const open = btn.getAttribute("aria-expanded") !== "true";
      btn.setAttribute("aria-expanded", String(open));
      btn.textContent = (open ? "▾ " : "▸ ") + btn.textContent.slice(2);
      const id = btn.dataset.fold;
      $$("tr[data-group]").forEach((tr) => {
        const g = tr.dataset.group;
        if (g === id || g.startsWith(id + ".")) {
          tr.hidden = !open;
          if (open) { const inner = $("button[data-fold]", tr); if (inner) inner.setAttribute("aria-expanded", "true"); }
        }
      });
    }));
    const table = $("#grid");
    if (table) {
      const runs = $$("thead th[data-run]", table);
      const describe = (td) => {
        const tr = td.parentElement, col = td.cellIndex - 1, run = runs[col];
        const state = (Array.from(td.classList).find((c) => c.startsWith("s-")) || "s-none").slice(2);
        const small = $("small", td);
        return { tr, run, text: `${tr.dataset.id} in the run of ${run.dataset.date}: ${state.replace(/_/g, " ")}${small ? " (" + small.textContent + " succeeded)" : ""}` };
      };
      const open = (td) => {
        if (!td || td.classList.contains("none")) return;
        const { tr, run } = describe(td);
        if (tr.classList.contains("group-row")) return;
        window.location.assign(`/runs/${encodeURIComponent(run.dataset.run)}/tasks/${encodeURIComponent(tr.dataset.id)}`);
      };
      let cur = null;
      const focusCell = (td) => {
        if (!td) return;
        if (cur) cur.classList.remove("cur");
        cur = td; td.classList.add("cur");
        td.scrollIntoView({ block: "nearest", inline: "nearest" });
        $("#grid-cell").textContent = describe(td).text;
      };
      table.addEventListener("click", (ev) => { const td = ev.target.closest("td.c"); if (td) open(td); });
      table.addEventListener("mouseover", (ev) => { const td = ev.target.closest("td.c"); if (td && !td.title) td.title = describe(td).text; });
      table.addEventListener("focus", () => { if (!cur) focusCell($("tbody tr:not([hidden]) td.c", table)); });
      table.addEventListener("keydown", (ev) => {
        if (!cur || ev.target !== table) return;
        const rows = $$("tbody tr:not([hidden])", table);
        let r = rows.indexOf(cur.parentElement), c = cur.cellIndex;
        if (ev.key === "ArrowRight") c += 1; else if (ev.key === "ArrowLeft") c -= 1;
        else if (ev.key === "ArrowDown") r += 1; else if (ev.key === "ArrowUp") r -= 1;
        else if (ev.key === "Enter") { ev.preventDefault(); open(cur); return; }
        else return;
        ev.preventDefault();
        const row = rows[Math.max(0, Math.min(rows.length - 1, r))];
        const cells = row.cells;
        focusCell(cells[Math.max(1, Math.min(cells.length - 1, c))]);
      });
    }
    const compare = $("#compare");
    if (compare) compare.addEventListener("submit", (ev) => {
      if ($$("input[name=run]:checked", compare).length < 2) { ev.preventDefault(); flash("Select two or more runs to compare.", true); }
    });
  }

  // -- run page: states follow the events stream, no reload --------------------------------
  let refreshRun = null;
  function runPage() {
    const root = $("#run");
    if (!root) return;
    document.body.dataset.live = "1";
    const status = $("#live-status");
    let pending = null, source = null, poller = null;
    // the timeline and the run's facts are drawn by the server: fetch this page again and
    // take those parts of it (marked data-redraw)
    let lastSeen = "", timelineDue = null;
    const redrawTimeline = async () => {
      timelineDue = null;
      try {
        const res = await fetch(window.location.href, { credentials: "same-origin" });
        if (!res.ok) return;
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        for (const here of $$("[data-redraw]")) {
          const fresh = doc.getElementById(here.id);
          if (fresh) here.replaceWith(document.importNode(fresh, true));
        }
      } catch (e) { /* the next change tries again */ }
    };
    const apply = (data) => {
      const seen = JSON.stringify(data);
      if (lastSeen && seen !== lastSeen && !timelineDue) timelineDue = setTimeout(redrawTimeline, 1500);
      lastSeen = seen;
      const run = data.run;
      root.dataset.state = run.state;
      const badge = $("#run-state .badge");
      if (badge) { badge.className = "badge s-" + run.state; badge.lastChild.textContent = " " + run.state.replace(/_/g, " "); badge.firstChild.textContent = run.icon; }
      const cancel = $("#cancel-run");
      if (cancel) cancel.hidden = run.state === "success" || run.state === "failed";
      for (const [task, t] of Object.entries(data.tasks)) {
        const node = document.querySelector(`.node[data-task="${CSS.escape(task)}"]`);
        if (node) {
          const was = node.getAttribute("class");
          const now = "node s-" + t.state;
          if (was !== now) { node.setAttribute("class", now + " changed"); setTimeout(() => node.setAttribute("class", now), 700); }
          $(".ic", node).textContent = t.icon;
          $(".txt", node).textContent = t.text.length > 30 ? t.text.slice(0, 29) + "…" : t.text;
          $("title", node).textContent = task + ": " + t.text;
        }
        const row = document.querySelector(`tr[data-task="${CSS.escape(task)}"] .task-state .badge`);
        if (row) { row.className = "badge s-" + t.state; row.firstChild.textContent = t.icon; row.lastChild.textContent = " " + t.text; }
      }
      if (run.state === "success" || run.state === "failed") {
        status.textContent = "Run " + run.state + ".";
      }
    };
    const refresh = async () => {
      pending = null;
      try { apply(await call("GET", root.dataset.live)); } catch (e) { status.textContent = "Live updates paused: " + e.message; }
    };
    refreshRun = refresh;
    const soon = () => { if (!pending) pending = setTimeout(refresh, 150); };
    const poll = () => { if (!poller) poller = setInterval(refresh, 2000); };
    if (window.EventSource) {
      source = new EventSource(`${API}/events?run_id=${encodeURIComponent(root.dataset.run)}`);
      source.onopen = () => { status.textContent = "Live: states update as they change."; refresh(); };
      // the stream is narrowed to this run: any change of it or of its tasks is a reason to look
      source.addEventListener("run", soon);
      source.addEventListener("task", soon);
      source.onerror = () => { if (source.readyState === EventSource.CLOSED) { status.textContent = "Live: polling."; poll(); } };
    } else { poll(); }
    // a safety net: a quiet stream still gets the page a look every few seconds while the run is on
    setInterval(() => { if (root.dataset.state !== "success" && root.dataset.state !== "failed") refresh(); }, 5000);
  }

  // -- task page: the running attempt's log, followed ---------------------------------------
  function logTail() {
    const box = $("#log");
    if (!box || box.dataset.growing !== "true") return;
    const pre = $("pre.log", box), note = $("#log-tail");
    let end = parseInt(box.dataset.end, 10) || 0;
    note.textContent = "Following the log while the attempt runs…";
    const step = async () => {
      try {
        const chunk = await call("GET", `${box.dataset.url}&offset=${end}`);
        if (chunk.text) {
          const empty = $("#log-empty"); if (empty) empty.remove();
          const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.appendChild(document.createTextNode(chunk.text));
          if (stick) pre.scrollTop = pre.scrollHeight;
        }
        end = chunk.end;
        if (chunk.growing || chunk.end < chunk.size) { setTimeout(step, chunk.end < chunk.size ? 50 : 1000); }
        else { note.textContent = "The attempt ended (" + chunk.state.replace(/_/g, " ") + ")."; }
      } catch (e) { note.textContent = "Stopped following the log: " + e.message; }
    };
    setTimeout(step, 500);
  }

  document.addEventListener("DOMContentLoaded", () => {
    login(); logout(); actions(); triggerForm(); backfillForm(); apiForms(); grid(); runPage(); logTail();
  });
})();
