// FLEET-Q dashboard: plain JavaScript, no build step. Everything shown comes from the
// pod's public REST API. Views update their DOM in place on every refresh (rows keyed by
// id, text replaced only when it changed), so a refresh neither flickers nor moves the
// user's scroll position, focus or selection.
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "fleetq.adminToken";
const CHART_MINUTES = 60;
const FIRST_RENDER_MARK = "fleetq-first-render";
const $ = (selector, root = document) => root.querySelector(selector);
const numberFormat = new Intl.NumberFormat("en-US");

// ---- the API ------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

let tokenPrompt = null; // one prompt, shared by every request refused meanwhile

/** Calls a REST route with the admin token (if any); on 401 asks for a token and retries. */
async function api(path, options = {}) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method: options.method || "GET", headers, cache: "no-store" };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      await askForToken(token !== null);
      continue;
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }
}

function askForToken(refused) {
  if (!tokenPrompt) {
    const dialog = $("#token-dialog");
    $("#token-hint").textContent = refused
      ? "The pod refused that token. Enter its admin token (FLEETQ_ADMIN_TOKEN)."
      : "This pod needs its admin token (FLEETQ_ADMIN_TOKEN). It is kept in this tab only.";
    $("#token-input").value = "";
    tokenPrompt = new Promise((resolve) => {
      dialog.addEventListener(
        "close",
        () => {
          sessionStorage.setItem(TOKEN_KEY, $("#token-input").value.trim());
          tokenPrompt = null;
          resolve();
        },
        { once: true },
      );
    });
    dialog.showModal();
  }
  return tokenPrompt;
}

// ---- DOM helpers --------------------------------------------------------------------

/** Creates an element: h("td", {class: "num"}, "3"). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

function setText(element, text) {
  const value = String(text);
  if (element.textContent !== value) element.textContent = value;
}

function setAttr(element, name, value) {
  if (element.getAttribute(name) !== value) element.setAttribute(name, value);
}

/** Makes `parent`'s children match `items` in order, one per key: existing children are
 * updated (never recreated), new ones created, stale ones removed. */
function syncChildren(parent, items, key, create, update) {
  const existing = new Map();
  for (const child of parent.children) existing.set(child.dataset.key, child);
  let cursor = parent.firstElementChild;
  for (const item of items) {
    const id = String(key(item));
    let child = existing.get(id);
    if (child) existing.delete(id);
    else {
      child = create(item);
      child.dataset.key = id;
    }
    update(child, item);
    if (child !== cursor) parent.insertBefore(child, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const stale of existing.values()) stale.remove();
}

/** A table row of `cells` plain cells; `classes` gives some of them a class. */
function row(cells, classes = {}) {
  const tr = document.createElement("tr");
  for (let i = 0; i < cells; i++) tr.append(h("td", classes[i] ? { class: classes[i] } : {}));
  return tr;
}

function cell(tr, index) {
  return tr.children[index];
}

function fmtNumber(value) {
  return numberFormat.format(value || 0);
}

function fmtTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function fmtSeconds(seconds) {
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function statusBadge(element, status) {
  setText(element, status);
  setAttr(element, "class", `badge s-${status}`);
}

function json(value) {
  return value === null || value === undefined ? "–" : JSON.stringify(value, null, 2);
}

/** A step id as a link to its detail page, or a dash when there is none. */
function stepLink(parent, stepId) {
  let link = parent.firstElementChild;
  if (!stepId) {
    setText(parent, "–");
    return;
  }
  if (!link) {
    parent.textContent = "";
    link = h("a", { class: "mono" });
    parent.append(link);
  }
  setAttr(link, "href", `#/step/${encodeURIComponent(stepId)}`);
  setText(link, stepId);
}

function showEmpty(id, empty) {
  $(id).hidden = !empty;
}

// ---- views --------------------------------------------------------------------------
// Each view: `enter(params)` when navigated to, and `load()` every REFRESH_MS while shown.
// `load()` fetches, then resolves to a function that draws what it fetched: the loop draws
// only the answers of its latest load, so a slow answer of a page the user has left (or
// paged away from) never overwrites the current one.

const overview = {
  async load() {
    const [stats, leader, series, cycles] = await Promise.all([
      api("/admin/queue"),
      api("/admin/leader"),
      api(`/admin/throughput?minutes=${CHART_MINUTES}`),
      api("/admin/recovery/cycles?page_size=20"),
    ]);
    return () => drawOverview(stats, leader, series, cycles);
  },
};

function drawOverview(stats, leader, series, cycles) {
  for (const dd of document.querySelectorAll("#status-cards [data-stat]")) {
    const value = stats[dd.dataset.stat];
    setText(dd, typeof value === "number" ? fmtNumber(value) : value || "none");
  }
  renderTypes(stats.steps_by_type);
  renderDepth(stats.queue_depth_by_priority);
  renderPods(stats, leader);
  drawChart($("#throughput"), throughputPoints(series));
  renderCycles(cycles.cycles);
}

function renderTypes(byType) {
  const items = Object.entries(byType).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  syncChildren(
    $("#types-table tbody"),
    items,
    ([type]) => type,
    () => row(2, { 1: "num" }),
    (tr, [type, count]) => {
      setText(cell(tr, 0), type);
      setText(cell(tr, 1), fmtNumber(count));
    },
  );
}

function renderDepth(byPriority) {
  const items = Object.entries(byPriority)
    .map(([priority, count]) => [Number(priority), count])
    .sort((a, b) => b[0] - a[0]);
  const total = items.reduce((sum, [, count]) => sum + count, 0);
  syncChildren(
    $("#depth-table tbody"),
    items,
    ([priority]) => priority,
    () => {
      const tr = row(3, { 1: "num" });
      cell(tr, 2).append(h("div", { class: "bar", "aria-hidden": "true" }, h("span")));
      return tr;
    },
    (tr, [priority, count]) => {
      setText(cell(tr, 0), priority);
      setText(cell(tr, 1), fmtNumber(count));
      $("span", cell(tr, 2)).style.width = `${total ? (100 * count) / total : 0}%`;
    },
  );
}

function renderPods(stats, leader) {
  // Heartbeat ages on the database clock (last_election_check), not the browser's.
  const now = Date.parse(leader.last_election_check);
  const beats = new Map(
    (leader.election_details?.eligible_pods || []).map((pod) => [pod.pod_id, pod]),
  );
  const pods = Object.entries(stats.pod_capacity).sort((a, b) => a[0].localeCompare(b[0]));
  syncChildren(
    $("#pods-table tbody"),
    pods,
    ([podId]) => podId,
    () => {
      const tr = row(4, { 0: "id", 2: "num", 3: "num" });
      cell(tr, 0).append(h("span", { class: "mono" }), h("span", { class: "badge leader" }, "leader"));
      cell(tr, 1).append(h("div", { class: "bar" }, h("span")));
      return tr;
    },
    (tr, [podId, capacity]) => {
      setText($(".mono", cell(tr, 0)), podId);
      $(".leader", cell(tr, 0)).hidden = podId !== stats.current_leader;
      const bar = $(".bar", cell(tr, 1));
      const share = capacity.max ? capacity.current / capacity.max : 0;
      bar.firstElementChild.style.width = `${Math.min(100, 100 * share)}%`;
      bar.classList.toggle("full", capacity.max > 0 && capacity.current >= capacity.max);
      setAttr(bar, "role", "img");
      setAttr(bar, "aria-label", `${capacity.current} of ${capacity.max} slots busy`);
      setText(cell(tr, 2), `${capacity.current} / ${capacity.max}`);
      const beat = beats.get(podId);
      const age = beat ? (now - Date.parse(beat.last_heartbeat_ts)) / 1000 : null;
      setText(cell(tr, 3), age === null || Number.isNaN(age) ? "–" : fmtSeconds(Math.max(0, age)));
    },
  );
}

/** [{t: ms, completed, failed}], oldest first: the API sends every minute, empty ones too. */
function throughputPoints(series) {
  return series.minutes.map((minute) => ({
    t: Date.parse(minute.minute_ts),
    completed: minute.completed_steps,
    failed: minute.failed_steps,
  }));
}

const SVG = "http://www.w3.org/2000/svg";
const CHART = { width: 720, height: 180, left: 44, bottom: 20, top: 8 };

function svg(tag, attributes = {}) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  return element;
}

/** A stacked bar chart (completed under failed) drawn as inline SVG, updated in place. */
function drawChart(container, points) {
  let chart = $("svg", container);
  if (!chart) {
    chart = svg("svg", {
      viewBox: `0 0 ${CHART.width} ${CHART.height}`,
      role: "img",
      preserveAspectRatio: "none",
    });
    chart.append(svg("title"), svg("g", { class: "axis" }), svg("g", { class: "bars" }));
    container.replaceChildren(chart);
  }
  const completed = points.reduce((sum, p) => sum + p.completed, 0);
  const failed = points.reduce((sum, p) => sum + p.failed, 0);
  const summary = `Last ${CHART_MINUTES} minutes: ${fmtNumber(completed)} completed, ${fmtNumber(failed)} failed`;
  setAttr(chart, "aria-label", summary);
  setText($("title", chart), summary);
  container.dataset.completed = completed;
  container.dataset.failed = failed;

  const peak = Math.max(1, ...points.map((p) => p.completed + p.failed));
  const plotHeight = CHART.height - CHART.bottom - CHART.top;
  const slot = (CHART.width - CHART.left) / points.length;
  const y = (value) => CHART.top + plotHeight - (plotHeight * value) / peak;

  const axis = $("g.axis", chart);
  axis.replaceChildren(
    svg("line", { class: "grid-line", x1: CHART.left, x2: CHART.width, y1: y(0), y2: y(0) }),
    svg("line", { class: "grid-line", x1: CHART.left, x2: CHART.width, y1: y(peak), y2: y(peak) }),
  );
  const label = (text, x, yPos, anchor) => {
    const element = svg("text", { x, y: yPos, "text-anchor": anchor });
    element.textContent = text;
    axis.append(element);
  };
  label(fmtNumber(peak), CHART.left - 6, y(peak) + 4, "end");
  label("0", CHART.left - 6, y(0) + 4, "end");
  label(`-${CHART_MINUTES} min`, CHART.left, CHART.height - 4, "start");
  label("now", CHART.width, CHART.height - 4, "end");

  syncChildren(
    $("g.bars", chart),
    points,
    (p) => p.t,
    () => {
      const group = svg("g");
      group.append(svg("title"), svg("rect", { class: "ok" }), svg("rect", { class: "bad" }));
      return group;
    },
    (group, p) => {
      const index = points.indexOf(p);
      const x = CHART.left + index * slot + slot * 0.1;
      const width = slot * 0.8;
      const [ok, bad] = group.querySelectorAll("rect");
      setText($("title", group), `${fmtTime(new Date(p.t).toISOString())}: ${p.completed} completed, ${p.failed} failed`);
      for (const [rect, bottom, value] of [
        [ok, 0, p.completed],
        [bad, p.completed, p.failed],
      ]) {
        setAttr(rect, "x", String(x));
        setAttr(rect, "width", String(width));
        setAttr(rect, "y", String(y(bottom + value)));
        setAttr(rect, "height", String(y(bottom) - y(bottom + value)));
      }
    },
  );
}

function renderCycles(cycles) {
  const container = $("#cycles");
  let table = $("table", container);
  if (!table) {
    table = h(
      "table",
      { id: "cycles-table" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ...["Started", "Leader", "Trigger", "Dead pods", "Requeued", "Failed", "Took"].map(
            (title, i) => h("th", { scope: "col", class: i >= 3 ? "num" : "" }, title),
          ),
        ),
      ),
      h("tbody"),
    );
    container.replaceChildren(table, h("p", { class: "muted", hidden: "" }, "No cycles yet."));
  }
  $("p", container).hidden = cycles.length > 0;
  syncChildren(
    $("tbody", table),
    cycles,
    (c) => c.recovery_summary.cycle_id,
    () => row(7, { 1: "id mono", 3: "num", 4: "num", 5: "num", 6: "num" }),
    (tr, c) => {
      const summary = c.recovery_summary;
      setText(cell(tr, 0), fmtTime(c.started_ts));
      setText(cell(tr, 1), c.leader_pod_id);
      setText(cell(tr, 2), c.trigger);
      setText(cell(tr, 3), fmtNumber(summary.dead_pods_found));
      setText(cell(tr, 4), fmtNumber(summary.steps_requeued));
      setText(cell(tr, 5), fmtNumber(summary.steps_marked_terminal));
      setText(cell(tr, 6), `${fmtNumber(summary.duration_ms)} ms`);
    },
  );
}

// -- Steps

const stepsView = {
  filters: new URLSearchParams(),
  tokens: [""], // page tokens of the pages visited: tokens[i] opens page i + 1
  page: 0,
  nextToken: "",

  enter(params) {
    const same = params.toString() === this.filters.toString();
    this.filters = params;
    if (!same) {
      this.tokens = [""];
      this.page = 0;
    }
    fillForm(params);
  },

  async load() {
    const q = this.filters.get("q");
    const [steps, nextToken] = q ? [await searchSteps(q), ""] : await this.listPage();
    return () => {
      this.nextToken = nextToken;
      syncChildren($("#steps-table tbody"), steps, (s) => s.step_id, createStepRow, updateStepRow);
      showEmpty("#steps-empty", steps.length === 0);
      $("#page-newer").disabled = q !== null || this.page === 0;
      $("#page-older").disabled = q !== null || !nextToken;
      setText($("#page-number"), q ? "Search" : `Page ${this.page + 1}`);
    };
  },

  /** The current page's steps and the token of the page after it. */
  async listPage() {
    const query = new URLSearchParams();
    for (const [name, value] of this.filters) {
      if (name === "created_after" || name === "created_before") {
        query.append(name, new Date(value).toISOString());
      } else query.append(name, value);
    }
    const token = this.tokens[this.page];
    if (token) query.set("page_token", token);
    const page = await api(`/steps?${query}`);
    return [page.steps, page.next_page_token];
  },

  turn(delta) {
    if (delta > 0 && this.nextToken) {
      this.tokens[this.page + 1] = this.nextToken;
      this.page += 1;
    } else if (delta < 0 && this.page > 0) this.page -= 1;
    else return;
    refreshNow();
  },
};

/** The step whose id is `q` and the step submitted with idempotency key `q`. */
async function searchSteps(q) {
  const byId = api(`/status/${encodeURIComponent(q)}`).catch((error) => {
    if (error.status === 404 || error.status === 400) return null;
    throw error;
  });
  const byKey = api(`/steps?${new URLSearchParams({ idempotency_key: q })}`).catch((error) => {
    if (error.status === 400) return { steps: [] };
    throw error;
  });
  const [step, page] = await Promise.all([byId, byKey]);
  const found = step ? [step] : [];
  for (const other of page.steps) if (!step || other.step_id !== step.step_id) found.push(other);
  return found;
}

function createStepRow() {
  const tr = row(7, { 0: "id", 3: "num", 4: "num" });
  cell(tr, 0).append(h("a", { class: "mono" }));
  cell(tr, 2).append(h("span"));
  return tr;
}

function updateStepRow(tr, step) {
  const link = $("a", cell(tr, 0));
  setAttr(link, "href", `#/step/${encodeURIComponent(step.step_id)}`);
  setText(link, step.step_id);
  setText(cell(tr, 1), step.payload?.type || "–");
  statusBadge($("span", cell(tr, 2)), step.status);
  setText(cell(tr, 3), step.priority);
  setText(cell(tr, 4), `${step.retry_count} / ${step.max_retries}`);
  setText(cell(tr, 5), fmtTime(step.created_ts));
  setText(cell(tr, 6), fmtTime(step.last_update_ts));
}

/** `datetime-local` wants local time without a zone: the filter's ISO time as such. */
function toLocalInput(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 19);
}

function fillForm(params) {
  const form = $("#filter-form");
  const statuses = params.getAll("status");
  for (const box of form.elements.status) box.checked = statuses.includes(box.value);
  form.elements.type.value = params.get("type") || "";
  form.elements.created_after.value = params.has("created_after")
    ? toLocalInput(params.get("created_after"))
    : "";
  form.elements.created_before.value = params.has("created_before")
    ? toLocalInput(params.get("created_before"))
    : "";
  form.elements.page_size.value = params.get("page_size") || "50";
  $("#search-q").value = params.get("q") || "";
}

function formParams() {
  const form = $("#filter-form");
  const params = new URLSearchParams();
  for (const box of form.elements.status) if (box.checked) params.append("status", box.value);
  const type = form.elements.type.value.trim();
  if (type) params.set("type", type);
  for (const name of ["created_after", "created_before"]) {
    const value = form.elements[name].value;
    if (value) params.set(name, new Date(value).toISOString());
  }
  if (form.elements.page_size.value !== "50") params.set("page_size", form.elements.page_size.value);
  return params;
}

// -- Step detail

const stepView = {
  stepId: null,

  enter(params, stepId) {
    if (stepId !== this.stepId) setText($("#action-result"), "");
    this.stepId = stepId;
    setText($("#step-id"), stepId);
  },

  async load() {
    let step;
    try {
      step = await api(`/status/${encodeURIComponent(this.stepId)}`);
    } catch (error) {
      if (error.status !== 404 && error.status !== 400) throw error;
      step = null;
    }
    return () => {
      $("#step-missing").hidden = step !== null;
      $("#step-body").hidden = step === null;
      if (step) renderStep(step);
    };
  },
};

function renderStep(step) {
  // The flag outlives the cancel; it only says something while the step still runs.
  const stopping = step.status === "claimed" && step.cancel_requested;
  const facts = [
    ["Status", step.status + (stopping ? " (cancel requested)" : "")],
    ["Type", step.payload?.type || "–"],
    ["Priority", step.priority],
    ["Retries", `${step.retry_count} of ${step.max_retries}`],
    ["Claimed by", step.claimed_by || "–"],
    ["Created", fmtTime(step.created_ts)],
    ["Scheduled for", step.run_at ? fmtTime(step.run_at) : "at once"],
    ["Last update", fmtTime(step.last_update_ts)],
  ];
  syncChildren(
    $("#step-facts"),
    facts,
    ([name]) => name,
    ([name]) => h("div", { class: "fact" }, h("dt", {}, name), h("dd")),
    (wrapper, [name, value]) => {
      const dd = $("dd", wrapper);
      setAttr(dd, "data-fact", name.toLowerCase().replaceAll(" ", "_"));
      setText(dd, value);
    },
  );
  setText($("#step-args"), json(step.payload?.args));
  setText($("#step-metadata"), json(step.payload?.metadata));
  setText($("#step-result"), json(step.result));
  setText($("#step-error"), step.error ? `${step.error.type}: ${step.error.message}` : "–");
  $("#cancel-step").disabled = !(step.status === "pending" || step.status === "claimed") || stopping;
  $("#retry-step").disabled = !(step.status === "failed" || step.status === "cancelled");
  renderAttempts(step);
}

/** The attempts as bars on one time axis, from the first claim to the step's last change
 * (from its creation, the time spent pending would squeeze every bar to a sliver). */
function renderAttempts(step) {
  const attempts = step.attempts;
  const start = attempts.length ? Date.parse(attempts[0].started_ts) : Date.parse(step.created_ts);
  const ends = attempts.map((a) => Date.parse(a.finished_ts || step.last_update_ts));
  const end = Math.max(start + 1, Date.parse(step.last_update_ts), ...ends);
  const span = end - start;
  showEmpty("#attempts-empty", attempts.length === 0);
  syncChildren(
    $("#attempts"),
    attempts,
    (a) => a.number,
    () =>
      h(
        "li",
        {},
        h("div", { class: "what" }),
        h("div", { class: "track", "aria-hidden": "true" }, h("span", { class: "span" })),
        h("div", { class: "why" }),
      ),
    (li, attempt) => {
      const started = Date.parse(attempt.started_ts);
      const finished = attempt.finished_ts ? Date.parse(attempt.finished_ts) : end;
      const took = attempt.finished_ts ? ` · ${fmtSeconds((finished - started) / 1000)}` : "";
      setText(
        $(".what", li),
        `#${attempt.number} ${attempt.outcome} on ${attempt.pod_id || "?"} · ${fmtTime(attempt.started_ts)}${took}`,
      );
      const bar = $(".span", li);
      setAttr(bar, "class", `span ${attempt.outcome}`);
      bar.style.left = `${(100 * (started - start)) / span}%`;
      bar.style.width = `${(100 * Math.max(0, finished - started)) / span}%`;
      const why = $(".why", li);
      setText(why, attempt.error ? `${attempt.error.type}: ${attempt.error.message}` : "");
      why.hidden = !attempt.error;
    },
  );
}

/** Asks in a modal dialog; resolves true when the user confirms. */
function confirmAction(title, text, confirmLabel) {
  const dialog = $("#confirm-dialog");
  setText($("#confirm-title"), title);
  setText($("#confirm-text"), text);
  setText($("#confirm-yes"), confirmLabel);
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

async function stepAction(verb, title, text) {
  const stepId = stepView.stepId;
  if (!(await confirmAction(title, text, title))) return;
  const result = $("#action-result");
  try {
    const answer = await api(`/steps/${encodeURIComponent(stepId)}:${verb}`, {
      method: "POST",
      body: {},
    });
    setText(result, `Done: the step is ${answer.step.status}.`);
  } catch (error) {
    setText(result, `Refused: ${error.message}`);
  }
  refreshNow();
}

// -- Workers, schedules and limits

const workersView = {
  async load() {
    const stats = await api("/admin/queue");
    return () => drawWorkers(stats.workers);
  },
};

function drawWorkers(workers) {
  const now = Date.now();
  syncChildren(
    $("#workers-table tbody"),
    workers,
    (w) => w.worker_id,
    () => row(4, { 0: "id mono", 2: "num" }),
    (tr, worker) => {
      setText(cell(tr, 0), worker.worker_id);
      setText(cell(tr, 1), worker.types.join(", "));
      setText(cell(tr, 2), fmtNumber(worker.in_flight));
      setText(cell(tr, 3), fmtTime(worker.last_seen));
      setAttr(cell(tr, 3), "title", `${fmtSeconds(Math.max(0, now - Date.parse(worker.last_seen)) / 1000)} ago`);
    },
  );
  showEmpty("#workers-empty", workers.length === 0);
}

const schedulesView = {
  async load() {
    const [schedules, limits] = await Promise.all([api("/admin/schedules"), api("/admin/limits")]);
    return () => drawSchedules(schedules.schedules, limits.limits);
  },
};

function drawSchedules(schedules, limits) {
  syncChildren(
    $("#schedules-table tbody"),
    schedules,
    (s) => s.name,
    () => {
      const tr = row(7, { 0: "id" });
      cell(tr, 3).append(h("span"));
      return tr;
    },
    (tr, s) => {
      setText(cell(tr, 0), s.name);
      const when = s.cron ? `cron ${s.cron} (${s.timezone})` : `every ${s.interval_seconds} s`;
      setText(cell(tr, 1), when);
      setText(cell(tr, 2), s.type);
      statusBadge($("span", cell(tr, 3)), s.paused ? "paused" : "active");
      setText(cell(tr, 4), fmtTime(s.next_fire_time));
      setText(cell(tr, 5), fmtTime(s.last_fire_time));
      stepLink(cell(tr, 6), s.last_step_id);
    },
  );
  showEmpty("#schedules-empty", schedules.length === 0);
  const dash = (value) => (value === null || value === undefined ? "–" : fmtNumber(value));
  syncChildren(
    $("#limits-table tbody"),
    limits,
    (l) => l.type,
    () => row(6, { 1: "num", 2: "num", 3: "num", 4: "num" }),
    (tr, l) => {
      setText(cell(tr, 0), l.type);
      setText(cell(tr, 1), dash(l.max_concurrency));
      setText(cell(tr, 2), l.rate_per_second ?? "–");
      setText(cell(tr, 3), dash(l.burst));
      setText(cell(tr, 4), fmtNumber(l.in_flight));
      setText(cell(tr, 5), l.source);
    },
  );
  showEmpty("#limits-empty", limits.length === 0);
}

// ---- routing and the refresh loop ----------------------------------------------------

const VIEWS = {
  overview: overview,
  steps: stepsView,
  step: stepView,
  workers: workersView,
  schedules: schedulesView,
};

let current = null;
let timer = null;
let generation = 0; // the latest load: only its answers are drawn

/** "#/steps?status=failed" -> ["steps", URLSearchParams, undefined];
 * "#/step/<id>" -> ["step", URLSearchParams, id]. */
function parseHash() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?", 2);
  const [name, ...rest] = path.split("/");
  const view = VIEWS[name] ? name : "overview";
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : undefined;
  return [view, new URLSearchParams(query || ""), arg];
}

function navigate() {
  const [name, params, arg] = parseHash();
  const changed = current !== name;
  current = name;
  for (const section of document.querySelectorAll(".view")) {
    section.hidden = section.id !== `view-${name}`;
  }
  const tab = name === "step" ? "steps" : name;
  for (const link of document.querySelectorAll(".top nav a")) {
    if (link.dataset.view === tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  VIEWS[name].enter?.(params, arg);
  if (changed) document.title = `FLEET-Q · ${$(`#view-${name} h1`).textContent.trim()}`;
  refreshNow();
}

function refreshNow() {
  clearTimeout(timer);
  generation += 1;
  const mine = generation;
  const view = VIEWS[current];
  view
    .load()
    .then((draw) => {
      if (mine !== generation) return;
      draw();
      $("#banner").hidden = true;
      // What benchmarks/dashboard.py times: navigation start to the first full render.
      if (!performance.getEntriesByName(FIRST_RENDER_MARK).length) performance.mark(FIRST_RENDER_MARK);
      setText($("#live"), `Live · updated ${fmtTime(new Date().toISOString()).slice(11)}`);
      document.body.dataset.loaded = current;
    })
    .catch((error) => {
      if (mine !== generation) return;
      const banner = $("#banner");
      setText(banner, `Cannot refresh: ${error.message}`);
      banner.hidden = false;
      setText($("#live"), "Offline");
    })
    .finally(() => {
      // A hidden tab stops polling (each overview refresh has the pod count its pending
      // steps); it refreshes at once when shown again.
      if (mine === generation && !document.hidden) timer = setTimeout(refreshNow, REFRESH_MS);
    });
}

function start() {
  $("#filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/steps?${formParams()}`;
  });
  $("#filter-form").addEventListener("reset", () => {
    setTimeout(() => (location.hash = "#/steps"), 0);
  });
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = $("#search-q").value.trim();
    location.hash = q ? `#/steps?${new URLSearchParams({ q })}` : "#/steps";
  });
  $("#page-older").addEventListener("click", () => stepsView.turn(1));
  $("#page-newer").addEventListener("click", () => stepsView.turn(-1));
  $("#cancel-step").addEventListener("click", () =>
    stepAction("cancel", "Cancel step", `Cancel step ${stepView.stepId}? A running step is asked to stop.`),
  );
  $("#retry-step").addEventListener("click", () =>
    stepAction("retry", "Retry step", `Put step ${stepView.stepId} back in the queue with its retries reset?`),
  );
  $("#token-dialog").addEventListener("cancel", (event) => event.preventDefault());
  window.addEventListener("hashchange", navigate);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshNow();
  });
  navigate();
}

start();
