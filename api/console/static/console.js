// crisiswatch incident console. Plain script, no build step, no dependencies.
// Every value from the API is inserted as text (textContent / text nodes), never as HTML:
// mention text is a stranger's words. The page's CSP requires Trusted Types, so an HTML
// sink would throw rather than parse. The API key lives in sessionStorage and travels only
// in the Authorization header. The URL's fragment names the incident shown
// (``#incident=12``): the links in alerts open the console there; it never holds the key.
"use strict";

(function () {
  const KEY_STORE = "crisiswatch.console.key";
  // statuses shown on the board; one this server does not know (422) is skipped
  const ACTIVE_STATUSES = ["open", "acknowledged", "mitigating"];
  const REFRESH_MS = 30000;
  // a request still unanswered after this fails (a hung server or a lost network would
  // otherwise leave the board looking current, and block every later refresh)
  const TIMEOUT_MS = 15000;
  const PAGE = 200; // incidents per status on the board
  // timeline events shown at first (the newest): a days-long incident has thousands, and
  // the incident API sends its newest 100 (with timeline_total: how many in all)
  const TIMELINE_SHOWN = 100;
  // earlier events asked for per click (the largest page of GET /incidents/{id}/timeline)
  const EARLIER_PAGE = 500;
  // filled in by the server from the incident (the version's variable list may name them)
  const PROVIDED = new Set(["brand", "incident"]);
  const API = new URL("../", document.baseURI); // the API root (the console is at /console/)

  const $ = (id) => document.getElementById(id);
  let clockOffsetMs = 0; // server clock minus this browser's clock
  let selectedId = null;
  let suggestions = [];
  let refreshTimer = null;
  let boardFailed = false;
  // the session whose refresh is in flight (its timer's next one is skipped); -1: none. A
  // refresh of a session that has ended does not hold up the next session's first one.
  let refreshing = -1;
  let boardAt = null; // server time of the board on screen (its last successful refresh)
  let staleReason = null; // why the last refresh failed (null: the board is current)
  let shownIncident = null; // the JSON of the incident rendered: unchanged, not redrawn
  let shownId = null; // the id of the incident on screen (its buttons act on selectedId)
  let timelineAll = false; // "show the earlier events" was asked for the incident shown
  // earlier timeline events loaded for the incident shown (from the paged timeline):
  // {id, start: the offset of the first in the whole timeline, events}
  let older = null;
  let shownDetail = null; // the incident rendered (its timeline is redrawn with older events)
  // the incident a link (``#incident=N``) asks for, opened once the board has loaded (after
  // the key is pasted, if there was none); null: none waiting
  let linked = null;

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // The key was forgotten (or replaced) while a request was under way: its answer belongs
  // to a session that has ended, and nothing more is asked or shown for it.
  class SignedOut extends Error {}
  let session = 0; // bumped by every sign-out

  // -- DOM helpers (text only) -------------------------------------------------------
  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // A stranger's words (a handle, a title, a note) as a bidi isolate: right-to-left text
  // or a U+202E override in it cannot reorder what follows it on the line.
  function isolated(text) {
    return el("bdi", null, text === null || text === undefined ? "" : text);
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  let said = 0; // messages shown so far: a slow load clears only a message older than it

  function say(text, isError) {
    const box = $("message");
    said += 1;
    // the same words again (every failed refresh) are not rewritten: the live region
    // would announce them again every 30 s
    if (box.textContent === (text || "") && box.className === (isError ? "error" : "")) return;
    box.textContent = text || "";
    box.className = isError ? "error" : "";
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function detailText(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  // -- the link to an incident (the URL's fragment) ---------------------------------------
  const HASH_KEY = "incident";

  // The incident the fragment names: its id, null (it names none), or NaN (it names one
  // that is not an incident number: "#incident=abc").
  function hashIncident() {
    const raw = new URLSearchParams(location.hash.replace(/^#/, "")).get(HASH_KEY);
    if (raw === null) return null;
    const id = /^\d{1,15}$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
    return id > 0 ? id : NaN;
  }

  // The fragment names ``id`` (replaced, not pushed: picking incidents does not fill the
  // Back button's history; a link or an edited URL still adds its own entry).
  function showInHash(id) {
    const hash = "#" + HASH_KEY + "=" + id;
    if (location.hash !== hash) history.replaceState(history.state, "", hash);
  }

  // What the link asks for, the fragment's own words never shown (a crafted link's text is
  // not to read as the console's).
  function badLink() {
    say("The link names no incident: its #" + HASH_KEY + "= is not an incident number " +
      "(such as #" + HASH_KEY + "=12).", true);
  }

  // The fragment changed (a link followed, the URL edited, Back): show what it names.
  function followHash() {
    const id = hashIncident();
    if (id === null) return; // no incident named: what is shown stays
    if (isNaN(id)) {
      linked = null;
      badLink();
      return;
    }
    if (id === selectedId) return;
    if (!key()) {
      linked = id;
      say("Paste an API key to open incident #" + id + ".");
    } else if (boardAt === null) {
      linked = id; // opened when the first refresh has loaded the board
    } else {
      linked = null;
      select(id, true, true);
    }
  }

  // -- API ---------------------------------------------------------------------------
  function key() {
    return sessionStorage.getItem(KEY_STORE);
  }

  async function api(path, options) {
    const opts = options || {};
    const current = key();
    const mine = session;
    if (!current) throw new SignedOut("signed out");
    const headers = { Accept: "application/json", Authorization: "Bearer " + current };
    const init = { method: opts.method || "GET", headers, cache: "no-store",
      credentials: "omit", referrerPolicy: "no-referrer" };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    const abort = new AbortController();
    init.signal = abort.signal;
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    let response;
    let data = null;
    try {
      try {
        response = await fetch(new URL(path, API), init);
      } catch (error) {
        // fetch's own words ("Failed to fetch") say nothing to a person
        throw new ApiError(0, abort.signal.aborted ?
          "the API server did not answer within " + TIMEOUT_MS / 1000 + " s" :
          "the API server could not be reached (restarting, or the network is down)");
      }
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
    } finally {
      clearTimeout(timer);
      if (session !== mine) throw new SignedOut("signed out");
    }
    if (!response.ok) {
      let detail = data && data.detail;
      if (Array.isArray(detail)) {
        detail = detail.map((d) => (d && d.msg ? d.msg : JSON.stringify(d))).join("; ");
      }
      throw new ApiError(response.status, (detail ? String(detail) :
        response.statusText || "the server refused the request") +
        " (HTTP " + response.status + ")");
    }
    return data;
  }

  function failed(error) {
    if (error instanceof SignedOut) return; // "Forget key" already said what happened
    if (error instanceof ApiError && error.status === 401) {
      // revoked or wrong: nothing shown stays (it would no longer refresh), as "Forget key"
      signOut("The key was refused: " + error.message + ". Paste a valid key.", true);
      $("key-input").focus();
    } else {
      say(error instanceof Error ? error.message : String(error), true);
    }
  }

  // -- deadlines -----------------------------------------------------------------------
  function serverNow() {
    return Date.now() + clockOffsetMs;
  }

  // The deadline to show: the tier's SLA while it runs, else the next escalation.
  function deadlineOf(incident) {
    if (incident.sla_due_at && !incident.sla_met_at) {
      const what = incident.sla_met_by ? "SLA (" + incident.sla_met_by + ")" : "SLA";
      return { at: incident.sla_due_at, label: what };
    }
    if (incident.sla_met_at) return { met: incident.sla_met_at, label: "SLA" };
    if (incident.next_escalation_at) return { at: incident.next_escalation_at, label: "escalates" };
    return null;
  }

  function hms(ms) {
    const total = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    return h + ":" + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
  }

  function countdown(incident) {
    const deadline = deadlineOf(incident);
    const node = el("span", "countdown");
    if (!deadline) {
      node.textContent = "no deadline";
      node.classList.add("none");
      return node;
    }
    if (deadline.met) {
      node.textContent = deadline.label + " met " + fmtTime(deadline.met);
      node.classList.add("met");
      return node;
    }
    node.dataset.due = deadline.at;
    node.dataset.label = deadline.label;
    node.title = "deadline " + fmtTime(deadline.at);
    tickOne(node);
    return node;
  }

  // Why the incident's alerts are held back (the API's ``muted``: an inhibition by another
  // incident, a silence, or quiet hours), or null: an incident muted when it was raised has
  // no deadline, one held by quiet hours a deadline hours away, and without this line either
  // reads as broken or as needing nothing. ``linked``: the inhibiting incident is a link to
  // it (not on a card: a card is a button already).
  function mutedLine(incident, linked) {
    const muted = incident.muted;
    if (!muted || typeof muted !== "object") return null;
    const node = el("span", "held");
    const held = deadlineOf(incident) ? "alerts and escalation held" : "alerts held, no deadline";
    if (muted.by === "inhibition") {
      let ref = "#" + muted.incident_id;
      if (linked && Number.isInteger(muted.incident_id)) {
        ref = el("button", "link", ref);
        ref.type = "button";
        ref.id = "muted-by";
        ref.addEventListener("click", () => select(muted.incident_id, true));
      }
      const tier = muted.incident_tier === null || muted.incident_tier === undefined ? "" :
        " (tier " + muted.incident_tier + ")";
      if (!muted.ended) {
        node.append("Muted while ", ref, tier + " is open: " + held);
      } else {
        const now = muted.incident_status ? muted.incident_status : "gone";
        node.append("Muted by ", ref, tier + ", " + now +
          " now: the held alerts go out at the alerter's next run");
      }
    } else if (muted.by === "silence") {
      const which = "silence #" + muted.silence_id;
      if (!muted.ended) {
        node.append("Silenced until " + fmtTime(muted.until) + " (" + which);
        if (muted.author) node.append(", by ", isolated(muted.author));
        node.append("): " + held);
        if (muted.reason) node.append(". Reason: ", isolated(muted.reason));
      } else {
        node.append("Silenced (" + which + ", ended " + fmtTime(muted.until) +
          "): the held alerts go out at the alerter's next run");
      }
    } else if (muted.by === "quiet_hours") {
      // held for a digest at the end of the quiet hours: the deadline stands, from then
      if (!muted.ended) {
        node.append("Quiet hours until " + fmtTime(muted.until) + ": alerts");
        const teams = names(muted.teams);
        if (teams.length) node.append(" for ", ...teams);
        const channels = names(muted.channels);
        if (channels.length) node.append(" (", ...channels, ")");
        node.append(" held, sent then as one digest" +
          (deadlineOf(incident) ? "; the deadline counts from then" : ""));
      } else {
        node.append("Quiet hours ended " + fmtTime(muted.until) +
          ": the held alerts go out at the alerter's next run");
      }
    } else {
      return null; // a kind this page does not know: the timeline shows what happened
    }
    if (linked) node.append(" · since " + fmtTime(muted.since));
    else node.title = "muted since " + fmtTime(muted.since);
    return node;
  }

  // Names from the API (teams, channels) as isolated text, comma-separated: nodes to append.
  function names(list) {
    if (!Array.isArray(list)) return [];
    return list.flatMap((name, i) => (i ? [", ", isolated(name)] : [isolated(name)]));
  }

  function tickOne(node) {
    const left = Date.parse(node.dataset.due) - serverNow();
    if (isNaN(left)) return;
    const overdue = left < 0;
    const text = node.dataset.label + (overdue ? " overdue by " : " ") + hms(left) +
      (overdue ? "" : " left");
    if (node.textContent !== text) node.textContent = text;
    if (node.classList.contains("overdue") !== overdue) node.classList.toggle("overdue", overdue);
  }

  function tick() {
    document.querySelectorAll(".countdown[data-due]").forEach(tickOne);
    $("clock").textContent = "server time " + fmtTime(new Date(serverNow()).toISOString());
    showStale();
  }

  // The board's age when its last refresh failed: it stays on screen, marked stale.
  function staleText() {
    if (staleReason === null) return "";
    if (boardAt === null) return "The board could not be loaded: " + staleReason + ".";
    return "The board is stale: not updated since " + fmtTime(new Date(boardAt).toISOString()) +
      " (server time): " + staleReason + ".";
  }

  function showStale() {
    const box = $("stale");
    box.hidden = staleReason === null;
    $("board").classList.toggle("stale", staleReason !== null);
    if (staleReason === null) return;
    const ago = boardAt === null ? "" :
      " That is " + Math.max(0, Math.floor((serverNow() - boardAt) / 60000)) + " min ago.";
    const text = staleText() + ago + " Retrying every " + REFRESH_MS / 1000 + " s.";
    if (box.textContent !== text) box.textContent = text;
  }

  // -- the board -----------------------------------------------------------------------
  async function syncClock() {
    const before = Date.now();
    const data = await api("console/now");
    const after = Date.now();
    clockOffsetMs = Date.parse(data.now) - (before + after) / 2;
  }

  let truncated = 0; // incidents the board could not show (more than a page per status)

  async function activeIncidents() {
    const seen = new Map();
    truncated = 0;
    for (const status of ACTIVE_STATUSES) {
      let page;
      try {
        page = await api("incidents?status=" + encodeURIComponent(status) + "&limit=" + PAGE);
      } catch (error) {
        if (error instanceof ApiError && error.status === 422) continue; // unknown here
        throw error;
      }
      const items = page.items || [];
      truncated += Math.max(0, (page.total || 0) - items.length);
      for (const incident of items) seen.set(incident.id, incident);
    }
    return [...seen.values()];
  }

  function dueMs(incident) {
    const deadline = deadlineOf(incident);
    return deadline && deadline.at ? Date.parse(deadline.at) : Infinity;
  }

  function card(incident) {
    const button = el("button", "card");
    button.type = "button";
    button.dataset.incident = String(incident.id);
    if (incident.id === selectedId) {
      button.classList.add("selected");
      button.setAttribute("aria-current", "true");
    }
    const badges = el("span", "badges",
      el("span", "badge status-" + String(incident.status).replace(/[^a-z_-]/gi, ""),
        incident.status));
    if (incident.drill) badges.prepend(el("span", "badge drill", "DRILL"));
    button.append(
      el("span", "title", "#" + incident.id + " ", isolated(incident.title)),
      badges,
      el("span", "meta", incident.watch_id + " · opened " + fmtTime(incident.opened_at) + " · "),
      countdown(incident),
      mutedLine(incident, false),
    );
    button.addEventListener("click", () => select(incident.id, true));
    return button;
  }

  // Real incidents by tier, highest first; drills apart, after them, never mixed in.
  function renderBoard(incidents) {
    // a keyboard user on a card stays on it when the board is redrawn (every 30 s)
    const focused = document.activeElement;
    const focusedId = focused && focused.classList.contains("card") ?
      focused.dataset.incident : null;
    drawBoard(incidents);
    if (focusedId !== null) {
      const again = document.querySelector(".card[data-incident='" + CSS.escape(focusedId) + "']");
      if (again) again.focus({ preventScroll: true });
    }
  }

  function drawBoard(incidents) {
    const root = clear($("tiers"));
    if (!incidents.length) {
      root.append(el("p", "muted", "No open incidents."));
      return;
    }
    const groups = new Map();
    for (const incident of incidents) {
      const group = (incident.drill ? "drill-" : "tier-") + Number(incident.tier);
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push(incident);
    }
    const order = [...groups.keys()].sort((a, b) =>
      (a.startsWith("drill") - b.startsWith("drill")) ||
      Number(b.split("-")[1]) - Number(a.split("-")[1]));
    for (const group of order) {
      const inGroup = groups.get(group).sort((a, b) => dueMs(a) - dueMs(b) || b.id - a.id);
      const [kind, tier] = group.split("-");
      const list = el("ul");
      for (const incident of inGroup) list.append(el("li", null, card(incident)));
      const heading = (kind === "drill" ? "DRILL · tier " : "Tier ") + tier + " ";
      const section = el("section", "tier tier-" + tier + (kind === "drill" ? " drill" : ""),
        el("h3", null, heading, el("span", "muted", "(" + inGroup.length + ")")), list);
      section.dataset.tier = tier;
      section.dataset.drill = String(kind === "drill");
      root.append(section);
    }
    if (truncated) {
      root.append(el("p", "muted", truncated + " more open incident(s) not shown: " +
        "the board shows the newest " + PAGE + " per status."));
    }
  }

  // -- who is on call ------------------------------------------------------------------
  function onCallText(row) {
    if (!row.person) return row.team + ": no rota";
    return row.team + ": " + row.person + (row.until ? " until " + fmtTime(row.until) : "") +
      (row.override_reason ? " (override: " + row.override_reason + ")" : "");
  }

  // The on-call answer for ``query``, or a line saying why there is none: who is on call
  // is worth showing but never worth failing the board or an incident over (a refused key
  // still fails, as everywhere).
  async function onCall(query) {
    try {
      return await api("oncall" + query);
    } catch (error) {
      if (error instanceof SignedOut || (error instanceof ApiError && error.status === 401)) {
        throw error;
      }
      return "on call unavailable: " + (error instanceof Error ? error.message : String(error));
    }
  }

  async function renderOnCall() {
    const rows = await onCall("");
    const list = clear($("oncall"));
    if (typeof rows === "string") {
      list.append(el("li", "muted", rows));
    } else if (!rows.length) {
      list.append(el("li", "muted", "no team configured"));
    } else {
      for (const row of rows) {
        const item = el("li", row.person ? null : "muted", onCallText(row));
        item.dataset.team = row.team;
        list.append(item);
      }
    }
  }

  async function refresh() {
    const mine = session;
    if (refreshing === mine) return; // the last one has not finished (each request times out)
    refreshing = mine;
    const before = said;
    let boardDone = false;
    try {
      await syncClock();
      renderBoard(await activeIncidents());
      boardDone = true;
      boardAt = serverNow();
      staleReason = null;
      showStale();
      await renderOnCall();
      if (linked !== null) {
        // the incident the link named, now that the board is there (once: a failure says why)
        const id = linked;
        linked = null;
        await select(id, true, true);
      } else if (selectedId !== null) {
        await showIncident(selectedId, false);
      }
      // clear only what a failed refresh said, not what was said while this one ran
      if (boardFailed && said === before) say("");
      boardFailed = false;
    } catch (error) {
      if (!boardDone && error instanceof ApiError && error.status !== 401 && key()) {
        // the board stays as it was, marked stale: say so (once, in the live region)
        staleReason = error.message;
        showStale();
        say(staleText() + " Retrying every " + REFRESH_MS / 1000 + " s.", true);
      } else {
        failed(error);
      }
      boardFailed = true;
    } finally {
      if (refreshing === mine) refreshing = -1;
    }
  }

  // -- one incident --------------------------------------------------------------------
  function fact(dl, term, value) {
    dl.append(el("dt", null, term), value instanceof Node ? el("dd", null, value) :
      el("dd", null, value === null || value === undefined || value === "" ? "—" : value));
  }

  function renderIncident(incident) {
    // a refresh that finds it unchanged leaves it as it is (focus, selection, scroll)
    const json = JSON.stringify(incident);
    if (json === shownIncident && !$("detail").hidden) return;
    shownIncident = json;
    shownId = incident.id;
    shownDetail = incident;
    $("detail").hidden = false;
    $("detail-title").replaceChildren("#" + incident.id + " ", isolated(incident.title));
    const facts = clear($("facts"));
    const status = el("span", "badge status-" +
      String(incident.status).replace(/[^a-z_-]/gi, ""), incident.status);
    status.id = "detail-status";
    fact(facts, "status", status);
    fact(facts, "tier", String(incident.tier) + (incident.drill ? " (DRILL)" : ""));
    fact(facts, "deadline", countdown(incident));
    const held = mutedLine(incident, true);
    if (held) {
      held.id = "detail-muted";
      fact(facts, "muted", held);
    }
    fact(facts, "brand / watch", incident.brand + " / " + incident.watch_id);
    fact(facts, "opened", fmtTime(incident.opened_at));
    fact(facts, "acknowledged", incident.acked_at ?
      fmtTime(incident.acked_at) + " by " + incident.acked_by : null);
    if (incident.sla_breached_at) fact(facts, "SLA missed", fmtTime(incident.sla_breached_at));
    if (incident.resolved_at) {
      fact(facts, "resolved", fmtTime(incident.resolved_at) + " by " + incident.resolved_by);
    }
    if (incident.closed_at) {
      fact(facts, "closed", fmtTime(incident.closed_at) + " by " + incident.closed_by);
    }
    if (incident.merged_into_id) {
      // its evidence and timeline moved there: the incident to work on now
      const into = el("button", "link", "#" + incident.merged_into_id);
      into.type = "button";
      into.id = "merged-into";
      into.addEventListener("click", () => select(incident.merged_into_id, true));
      fact(facts, "merged into", into);
    }
    const onCallNow = el("span", "muted", "…");
    onCallNow.id = "detail-oncall";
    fact(facts, "on call", onCallNow);
    fact(facts, "why", incident.explanation);
    $("ack").disabled = incident.status !== "open";

    const evidence = incident.evidence || [];
    // the API sends the newest mentions (evidence_total: how many in all)
    const notSent = Math.max(0, totalOf(incident.evidence_total, evidence) - evidence.length);
    const mix = {};
    for (const item of evidence) mix[item.label] = (mix[item.label] || 0) + 1;
    $("mix").textContent = evidence.length ? "(" + (notSent ? "the newest " + evidence.length +
      " of " + (evidence.length + notSent) + ": " : "") + Object.entries(mix)
      .map(([label, n]) => n + " " + label).join(", ") + ")" : "";
    const evList = clear($("evidence"));
    if (notSent) evList.append(el("li", "more muted", notSent + " earlier mention(s) not shown"));
    evList.start = notSent || 1; // numbered as in all the incident's mentions
    for (const item of evidence) {
      const head = el("div", "detail",
        el("span", "badge label-" + String(item.label).replace(/[^a-z_-]/gi, ""), item.label),
        item.author ? isolated(item.author) : "unknown author",
        (item.followers !== null && item.followers !== undefined ?
          " · " + item.followers + " followers" : "") + " · " + fmtTime(item.created_at));
      const text = el("p", "mention", item.text);
      text.dir = "auto"; // an Arabic or Hebrew post reads right to left, on its own
      const li = el("li", "evidence-item", head, text);
      if (typeof item.url === "string" && /^https?:\/\//i.test(item.url)) {
        const link = el("a", null, item.url);
        link.href = item.url;
        link.rel = "noopener noreferrer";
        link.target = "_blank";
        li.append(link);
      }
      evList.append(li);
    }
    if (!evidence.length) evList.append(el("li", "muted", "no evidence recorded"));

    renderTimeline(incident.timeline || [], incident.timeline_total);

    const sent = incident.deliveries || [];
    const earlierSent = Math.max(0, totalOf(incident.deliveries_total, sent) - sent.length);
    const deliveries = clear($("deliveries"));
    if (earlierSent) {
      deliveries.append(el("li", "more muted", earlierSent + " earlier deliveries not shown"));
    }
    // numbered as in all the incident's deliveries
    deliveries.start = earlierSent || 1;
    for (const d of sent) {
      deliveries.append(el("li", null, d.channel + " (" + d.channel_type + ") · " + d.reason +
        " · " + d.status + " · " + d.attempts + " attempt(s)" +
        (d.last_error ? " · " + d.last_error : "")));
    }
    if (!sent.length) deliveries.append(el("li", "muted", "none"));
  }

  // How many a list of the incident has in all (a server before the counts sent it whole).
  function totalOf(total, items) {
    return Number.isInteger(total) && total >= items.length ? total : items.length;
  }

  // The newest TIMELINE_SHOWN events, after a button that shows the earlier ones: those the
  // incident API sent beyond them, then EARLIER_PAGE at a time from the paged timeline.
  // ``events``: the newest of the timeline, ``total``: how many it has in all.
  function renderTimeline(events, total) {
    const timeline = clear($("timeline"));
    const sentFrom = totalOf(total, events) - events.length; // the offset of events[0]
    let all = events;
    let from = sentFrom;
    if (older && older.id === shownId && older.start + older.events.length >= sentFrom) {
      all = older.events.slice(0, sentFrom - older.start).concat(events);
      from = older.start;
    }
    const local = timelineAll ? 0 : Math.max(0, all.length - TIMELINE_SHOWN);
    const earlier = from + local; // events before the first one shown
    if (earlier) {
      const asked = local || Math.min(from, EARLIER_PAGE);
      const more = el("button", "link", asked === earlier ?
        "Show the " + earlier + " earlier event(s)" :
        "Show " + asked + " of the " + earlier + " earlier events");
      more.type = "button";
      more.id = "timeline-earlier";
      more.addEventListener("click", async () => {
        const id = shownId;
        if (local) {
          timelineAll = true;
        } else {
          more.disabled = true;
          try {
            await loadEarlier(id, from, asked);
          } catch (error) {
            more.disabled = false;
            failed(error);
            return;
          }
          if (shownId !== id) return; // another incident was picked meanwhile
        }
        renderTimeline(shownDetail.timeline || [], shownDetail.timeline_total);
        const first = $("timeline").querySelector("li.event");
        if (first) { first.tabIndex = -1; first.focus(); } // the keyboard stays in the list
      });
      timeline.append(el("li", "more", more));
    }
    // numbered as in the whole timeline (the button's item, unmarked, counts as #earlier)
    timeline.start = earlier || 1;
    for (const event of all.slice(local)) {
      const details = el("div", "detail");
      Object.entries(event.detail || {})
        .filter(([, v]) => v !== null && v !== undefined && v !== "")
        .forEach(([k, v], i) => details.append(i ? " · " : "", k + ": ",
          isolated(detailText(v))));
      timeline.append(el("li", "event",
        el("strong", null, event.kind), " " + fmtTime(event.at) + " by ", isolated(event.actor),
        details.childNodes.length ? details : null));
    }
  }

  // The ``count`` events before offset ``from`` of incident ``id``'s timeline, kept before
  // the earlier ones already loaded (those from ``from`` on).
  async function loadEarlier(id, from, count) {
    const page = await api("incidents/" + encodeURIComponent(id) + "/timeline?limit=" + count +
      "&offset=" + (from - count));
    if (shownId !== id) return;
    const after = older && older.id === id && older.start === from ? older.events : [];
    older = { id, start: from - count, events: page.items.concat(after) };
    timelineAll = true;
  }

  // Earlier events loaded, then new ones came: those between them and the newest the API
  // sent are loaded too (the list stays whole), or, when many came, the earlier ones are
  // dropped (the newest are shown again, with the button).
  async function fillTimelineGap(incident) {
    if (!older || older.id !== incident.id) return;
    const events = incident.timeline || [];
    const sentFrom = totalOf(incident.timeline_total, events) - events.length;
    const end = older.start + older.events.length;
    const gap = sentFrom - end;
    if (gap <= 0) return;
    if (gap > EARLIER_PAGE) {
      older = null;
      timelineAll = false;
      return;
    }
    const page = await api("incidents/" + encodeURIComponent(incident.id) +
      "/timeline?limit=" + gap + "&offset=" + end);
    if (older && older.id === incident.id && older.start + older.events.length === end) {
      older.events = older.events.concat(page.items);
    }
  }

  async function showIncident(id, fresh, focus) {
    const incident = await api("incidents/" + encodeURIComponent(id));
    if (selectedId !== id) return incident; // another incident was picked meanwhile
    await fillTimelineGap(incident);
    if (selectedId !== id) return incident;
    if (fresh) shownIncident = null;
    renderIncident(incident);
    // picked from the board: the keyboard goes on in the incident (not through every
    // other card first), and the incident is scrolled into view
    if (focus) $("detail-title").focus();
    // asked beside the suggestions; its error (a refused key) is raised after them
    const incidentOnCall = showIncidentOnCall(incident).then(() => null, (error) => error);
    if (fresh) await loadSuggestions(id);
    const problem = await incidentOnCall;
    if (problem) throw problem;
    return incident;
  }

  // Who is on call in the teams an alert of this incident's watch and tier reaches.
  async function showIncidentOnCall(incident) {
    const rows = await onCall("?watch=" + encodeURIComponent(incident.watch_id) +
      "&tier=" + encodeURIComponent(incident.tier));
    const node = $("detail-oncall");
    if (selectedId !== incident.id || !node) return; // another incident is shown now
    if (node.dataset.shown === JSON.stringify(rows)) return; // unchanged
    node.dataset.shown = JSON.stringify(rows);
    if (typeof rows === "string" || !rows.length) {
      node.textContent = typeof rows === "string" ? rows : "no team for this watch and tier";
      return;
    }
    node.className = "";
    node.textContent = rows.map(onCallText).join("; ");
  }

  // ``fromLink``: the id came from the URL (a link in an alert, an edited URL): an id that
  // does not exist, or that the key may not see, is said to be the link's.
  async function select(id, focus, fromLink) {
    selectedId = id;
    showInHash(id);
    // the buttons act on the incident picked: another one is not left on screen with them
    // (while it loads, or if it fails to)
    if (shownId !== id) {
      $("detail").hidden = true;
      timelineAll = false;
      older = null;
    }
    document.querySelectorAll(".card").forEach((c) => {
      const on = c.dataset.incident === String(id);
      c.classList.toggle("selected", on);
      if (on) c.setAttribute("aria-current", "true");
      else c.removeAttribute("aria-current");
    });
    const before = said;
    try {
      await showIncident(id, true, focus);
      // the suggestions load after the incident is shown: a message said meanwhile (an
      // action on the incident already on screen failed) stays
      if (said === before) say("");
    } catch (error) {
      if (fromLink && selectedId === id && error instanceof ApiError &&
          (error.status === 403 || error.status === 404 || error.status === 422)) {
        // nothing is selected (a refresh would ask again, and replace this with its 404)
        selectedId = null;
        say("The link's incident #" + id + " cannot be opened: " + error.message +
          ". Pick an incident on the board.", true);
      } else {
        failed(error);
      }
    }
  }

  async function acknowledge() {
    if (selectedId === null) return;
    const id = selectedId; // the one acknowledged, even if another is selected meanwhile
    const note = $("ack-note").value.trim();
    $("ack").disabled = true;
    try {
      try {
        await api("incidents/" + id + "/ack", { method: "POST", body: note ? { note } : {} });
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 409)) throw error;
        // merged or resolved since it was shown: show it as it is now, and say why
        await explainConflict(id, error);
        return;
      }
      $("ack-note").value = "";
      say("Incident #" + id + " acknowledged.");
      // the button is disabled now: the keyboard stays in the incident, not on the page
      if (selectedId === id) $("detail-title").focus({ preventScroll: true });
      renderBoard(await activeIncidents());
      if (selectedId !== null) await showIncident(selectedId, false);
    } catch (error) {
      failed(error);
      $("ack").disabled = false;
    }
  }

  async function explainConflict(id, error) {
    renderBoard(await activeIncidents());
    const incident = selectedId === id ? await showIncident(id, false) :
      await api("incidents/" + encodeURIComponent(id));
    let why;
    if (incident.merged_into_id) {
      why = "Incident #" + id + " was merged into #" + incident.merged_into_id +
        ": acknowledge #" + incident.merged_into_id + " instead.";
    } else if (incident.status === "open") {
      why = error.message; // not a change of state after all: the server's words
      if (selectedId === id) $("ack").disabled = false;
    } else {
      const by = incident.resolved_by || incident.closed_by;
      why = "Incident #" + id + " is " + incident.status + " now" + (by ? " (by " + by + ")" : "") +
        ": there is nothing to acknowledge.";
    }
    say(why, true);
    if (selectedId === id) $("detail-title").focus({ preventScroll: true });
  }

  // -- templates -----------------------------------------------------------------------
  async function loadSuggestions(id) {
    const select = $("template-select");
    select.replaceChildren(el("option", null, "choose a template…"));
    select.firstChild.value = "";
    clear($("variables"));
    $("rendered").textContent = "";
    $("rendered-note").textContent = "";
    $("template-about").textContent = "";
    $("preview").disabled = $("use").disabled = true;
    suggestions = await api("incidents/" + encodeURIComponent(id) + "/template-suggestions");
    suggestions.forEach((s, index) => {
      const t = s.template;
      const option = el("option", null,
        t.name + " — " + t.kind + ", " + t.lang + ", v" + s.version.number);
      option.value = String(index);
      select.append(option);
    });
    if (!suggestions.length) {
      $("template-about").textContent = "No approved template fits this incident's tier.";
    }
  }

  function chosen() {
    const value = $("template-select").value;
    return value === "" ? null : suggestions[Number(value)] || null;
  }

  function pickTemplate() {
    const s = chosen();
    const box = clear($("variables"));
    $("rendered").textContent = "";
    $("rendered-note").textContent = "";
    $("preview").disabled = $("use").disabled = !s;
    if (!s) {
      $("template-about").textContent = "";
      return;
    }
    $("template-about").textContent = (s.template.description || "") +
      " Approved by " + (s.version.reviewed_by || "legal") + ".";
    for (const name of s.version.variables || []) {
      if (PROVIDED.has(name)) continue;
      const input = el("input");
      input.type = "text";
      input.maxLength = 4000;
      input.dataset.variable = name;
      box.append(el("label", null, el("span", null, name), input));
    }
  }

  function variables() {
    const values = {};
    document.querySelectorAll("#variables input").forEach((input) => {
      values[input.dataset.variable] = input.value;
    });
    return values;
  }

  async function render(record) {
    const s = chosen();
    if (!s || selectedId === null) return;
    const id = selectedId; // a result for another incident than the one shown is dropped
    const before = said;
    const body = { version: s.version.number, variables: variables() };
    try {
      let data, note;
      if (record) {
        data = await api("incidents/" + id + "/responses",
          { method: "POST", body: { template_id: s.template.id, ...body } });
        note = "Recorded: use #" + data.id + " of version " + data.version_number + " by " +
          data.used_by + " at " + fmtTime(data.used_at) + ".";
        if (selectedId === id) await showIncident(id, false);
      } else {
        data = await api("templates/" + s.template.id + "/preview",
          { method: "POST", body: { incident_id: id, ...body } });
        note = "Preview of version " + data.version + " (" + data.status + "), not recorded.";
      }
      if (selectedId !== id) { // another incident is shown now: say where the use went
        if (record) say("Template use #" + data.id + " recorded on incident #" + id + ".");
        return;
      }
      $("rendered-note").textContent = note;
      $("rendered").textContent = data.text;
      if (said === before) say("");
    } catch (error) {
      failed(error);
    }
  }

  // -- key handling --------------------------------------------------------------------
  function signOut(message, isError) {
    sessionStorage.removeItem(KEY_STORE);
    session += 1;
    selectedId = null;
    shownIncident = null;
    shownId = null;
    shownDetail = null;
    older = null;
    timelineAll = false;
    boardAt = null;
    staleReason = null;
    showStale();
    $("detail").hidden = true;
    clear($("tiers")).append(el("p", "muted", "Paste an API key to see the incidents."));
    clear($("oncall"));
    showKeyForm();
    say(message, isError);
  }

  function showKeyForm() {
    $("key-form").hidden = false;
    $("session").hidden = true;
    if (refreshTimer !== null) clearInterval(refreshTimer);
    refreshTimer = null;
  }

  function start() {
    // the incident the URL names opens once the board is there (again after a new key)
    const wanted = hashIncident();
    linked = wanted !== null && !isNaN(wanted) ? wanted : null;
    $("key-form").hidden = true;
    $("session").hidden = false;
    if (refreshTimer === null) refreshTimer = setInterval(refresh, REFRESH_MS);
    if (boardAt === null) clear($("tiers")).append(el("p", "muted", "Loading the incidents…"));
    refresh();
  }

  function init() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("key-input").value.trim();
      $("key-input").value = "";
      if (!value) return;
      // a header carries none of these: fetch would throw, and the page would blame the
      // network, for a key pasted with a zero-width space or typed with full-width letters
      const bad = value.match(/[\s\u0000-\u001f\u007f]|[^\u0000-\u00ff]/u);
      if (bad) {
        say("That is not an API key: " + JSON.stringify(bad[0]) + " (U+" +
          bad[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0") +
          ") cannot be part of one. Paste the key again.", true);
        $("key-input").focus();
        return;
      }
      sessionStorage.setItem(KEY_STORE, value);
      say(""); // "Key forgotten." or "The key was refused" was about the last key
      start();
    });
    $("forget-key").addEventListener("click", () => signOut("Key forgotten."));
    $("refresh").addEventListener("click", refresh);
    $("ack").addEventListener("click", acknowledge);
    $("template-select").addEventListener("change", pickTemplate);
    $("preview").addEventListener("click", () => render(false));
    $("use").addEventListener("click", () => render(true));
    window.addEventListener("hashchange", followHash);
    setInterval(tick, 1000);
    const wanted = hashIncident();
    if (wanted !== null && isNaN(wanted)) badLink();
    if (key()) {
      start();
    } else if (wanted !== null && !isNaN(wanted)) {
      say("Paste an API key to open incident #" + wanted + ".");
      $("key-input").focus();
    }
  }

  document.addEventListener("DOMContentLoaded", init);
})();
