/* SRE Agent web console: Alpine.js component + uPlot charts; talks to the REST API.

   Every time is shown in UTC (24-hour clock), charts included. Routes live in the URL
   fragment, so every view and incident has a link:
     #/incidents?status=open&severity=critical&service=api&q=text&range=24h
     #/incident/<id>      #/silences      #/audit?subject=<id>
   A token in the fragment (#token=... or #/incident/<id>?token=...) signs in and is
   removed from the address bar at once; it stays in this tab's session storage. */
"use strict";

const ROLES = ["viewer", "operator", "approver", "admin"];
const POLL_MS = 3000;
const MAX_CHARTS = 4;
const RANGES = { "1h": 1, "6h": 6, "24h": 24, "7d": 168, "30d": 720, "all": null };

function pad(n) { return String(n).padStart(2, "0"); }
function utc(ts) {  // unix seconds -> "YYYY-MM-DD HH:MM:SS"
  return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19);
}
function utcHM(ts) { const d = new Date(ts * 1000); return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()); }
function safeUrl(u) { return typeof u === "string" && /^https?:\/\//.test(u) ? u : null; }

function parseHash() {
  // "#/incident/abc?token=x" -> {path: "/incident/abc", params: {token: "x"}}
  let h = (window.location.hash || "").replace(/^#/, "");
  if (h.startsWith("token=")) h = "?" + h;
  const i = h.indexOf("?");
  const path = (i >= 0 ? h.slice(0, i) : h) || "/incidents";
  const params = Object.fromEntries(new URLSearchParams(i >= 0 ? h.slice(i + 1) : ""));
  return { path, params };
}

function chartData(res) {
  // columns: t, value, expected, lower, upper; anomaly marks drawn as points
  const marks = new Map(res.anomalies.map(a => [a.t, a.observed]));
  const cols = [[], [], [], [], [], []];
  for (const p of res.points) {
    for (let i = 0; i < 5; i++) cols[i].push(p[i]);
    cols[5].push(marks.has(p[0]) ? marks.get(p[0]) : null);
  }
  return cols;
}

function drawChart(el, sid, res) {
  const width = Math.max(320, el.clientWidth || 600);
  const opts = {
    title: sid, width, height: 180,
    // UTC, 24-hour clock, like every other time on the page
    tzDate: ts => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    scales: { x: { time: true, range: (u, min, max) => (min === max ? [min - 300, max + 300] : [min, max]) } },
    axes: [
      { label: "UTC", values: (u, splits) => splits.map(v => (v == null ? "" : utcHM(v))) },
      {},
    ],
    series: [
      { label: "time (UTC)", value: (u, v) => (v == null ? "" : utc(v)) },
      { label: "value", stroke: "#1f6feb", width: 1.5 },
      { label: "expected", stroke: "#8b949e", dash: [4, 4], width: 1 },
      { label: "lower", stroke: "rgba(46,160,67,0.5)", width: 1 },
      { label: "upper", stroke: "rgba(46,160,67,0.5)", width: 1 },
      { label: "anomaly", stroke: "#d1242f", width: 0, points: { show: true, size: 9, fill: "#d1242f" } },
    ],
    bands: [{ series: [4, 3], fill: "rgba(46,160,67,0.12)" }],
  };
  return new uPlot(opts, chartData(res), el);
}

document.addEventListener("alpine:init", () => {
  Alpine.data("sreConsole", () => ({
    token: null, tokenInput: "", me: null, loginError: "", error: "",
    view: "incidents",
    filter: { status: "open", severity: "", service: "", q: "", range: "24h" },
    incidents: [], total: 0, selected: null, detail: null,
    health: {}, charts: [], comments: {}, notices: {}, timer: null,
    triage: { comment: "", assignee: "", snooze: "60", silenceFor: "60", note: "" },
    runbook: null,
    silences: [], silenceForm: { matchers: "service=", minutes: "60", comment: "", startsAt: "" },
    audit: [], auditFilter: { subject: "", actor: "", action: "" }, auditError: "",

    get canApprove() { return this.has("approver"); },
    get canAct() { return this.has("operator"); },
    has(role) { return !!this.me && ROLES.indexOf(this.me.role) >= ROLES.indexOf(role); },

    async init() {
      const { params } = parseHash();
      if (params.token) {
        this.token = params.token;
        delete params.token;
        this.replaceHash(parseHash().path, params);
      } else {
        this.token = sessionStorage.getItem("sre-token");
      }
      window.addEventListener("hashchange", () => this.route());
      if (this.token) await this.whoami();
      this.timer = setInterval(() => this.refresh(), POLL_MS);
    },

    replaceHash(path, params) {
      const q = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== "" && v != null)).toString();
      history.replaceState(null, "", window.location.pathname + window.location.search + "#" + path + (q ? "?" + q : ""));
    },

    go(path, params) {
      const q = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== "" && v != null)).toString();
      window.location.hash = path + (q ? "?" + q : "");
    },

    async route() {
      const { path, params } = parseHash();
      const parts = path.split("/").filter(Boolean);
      if (parts[0] === "incident" && parts[1]) {
        this.view = "incidents";
        if (this.selected !== decodeURIComponent(parts[1])) {
          this.selected = decodeURIComponent(parts[1]);
          this.charts = []; this.runbook = null;
          await this.loadDetail();
        }
      } else if (parts[0] === "silences") {
        this.view = "silences";
        await this.loadSilences();
      } else if (parts[0] === "audit") {
        this.view = "audit";
        for (const k of ["subject", "actor", "action"]) this.auditFilter[k] = params[k] || "";
        await this.loadAudit();
      } else {
        this.view = "incidents";
        // the URL holds the whole filter: what it leaves out is the default
        const defaults = { status: "open", severity: "", service: "", q: "", range: "24h" };
        for (const k of Object.keys(defaults)) {
          this.filter[k] = params[k] !== undefined ? params[k] : defaults[k];
        }
      }
      await this.refresh();
    },

    applyFilters() {
      this.go("/incidents", Object.assign({}, this.filter));
    },

    async api(path, opts = {}) {
      const headers = Object.assign({ Authorization: "Bearer " + this.token }, opts.headers || {});
      const r = await fetch(path, Object.assign({}, opts, { headers }));
      let body = null;
      try { body = await r.json(); } catch (e) { body = null; }
      if (r.status === 401) { this.me = null; }
      if (!r.ok) throw new Error((body && body.error) || ("HTTP " + r.status));
      return body;
    },

    async post(path, body, method = "POST") {
      return this.api(path, { method, headers: { "Content-Type": "application/json" },
                              body: body === undefined ? undefined : JSON.stringify(body) });
    },

    async whoami() {
      try {
        this.me = await this.api("/api/whoami");
        sessionStorage.setItem("sre-token", this.token);
        this.loginError = "";
        this.health = await this.api("/api/status").catch(() => ({}));  // links need it
        await this.route();
      } catch (e) {
        this.me = null;
        this.loginError = e.message;
      }
    },

    async login() {
      this.token = this.tokenInput.trim();
      this.tokenInput = "";
      await this.whoami();
    },

    logout() {
      sessionStorage.removeItem("sre-token");
      this.token = null; this.me = null; this.detail = null; this.incidents = [];
    },

    incidentQuery() {
      const f = this.filter, q = new URLSearchParams({ limit: "200", status: f.status || "all" });
      if (f.severity) q.set("severity", f.severity);
      if (f.service.trim()) q.set("service", f.service.trim());
      if (f.q.trim()) q.set("q", f.q.trim());
      const hours = RANGES[f.range];
      if (hours) q.set("since", String(Date.now() / 1000 - hours * 3600));
      return q.toString();
    },

    async refresh() {
      if (!this.me) return;
      try {
        const [page, health] = await Promise.all([
          this.api("/api/incidents?" + this.incidentQuery()),
          this.api("/api/status"),
        ]);
        this.incidents = page.items;
        this.total = page.total;
        this.health = health;
        if (this.view === "incidents" && !this.selected && this.incidents.length) {
          this.selected = this.incidents[0].incident_id;  // the newest, until one is picked
          await this.loadDetail();
        } else if (this.view === "incidents" && this.selected) {
          await this.loadDetail(true);
        }
        if (this.view === "silences") await this.loadSilences();
        this.error = "";
      } catch (e) {
        this.error = e.message;
      }
    },

    async loadDetail(quiet = false) {
      try {
        this.detail = await this.api("/api/incidents/" + encodeURIComponent(this.selected));
      } catch (e) {
        if (!quiet) this.detail = null;
        return;
      }
      const want = (this.detail.series || []).slice(0, MAX_CHARTS).join("|");
      if (want !== this.charts.join("|") || !quiet) await this.loadCharts();
    },

    async loadCharts() {
      const d = this.detail;
      if (!d) return;
      // the series that carry this incident's evidence, never "every series of its services"
      const wanted = (d.series || []).slice(0, MAX_CHARTS);
      const data = await Promise.all(wanted.map(
        sid => this.api("/api/series/points?series=" + encodeURIComponent(sid)).catch(() => null)));
      this.charts = wanted.filter((_, i) => data[i]);
      await this.$nextTick();
      const root = document.getElementById("charts");
      if (!root) return;
      root.replaceChildren();
      wanted.forEach((sid, i) => {
        if (!data[i]) return;
        const box = document.createElement("div");
        box.className = "chart";
        box.dataset.series = sid;
        root.appendChild(box);
        drawChart(box, sid, data[i]);
        const out = this.metricsLink(sid, data[i]);
        if (out) {
          const a = document.createElement("a");
          a.href = out; a.target = "_blank"; a.rel = "noopener noreferrer";
          a.className = "metrics-link"; a.textContent = "open this series in Grafana/Prometheus ↗";
          box.appendChild(a);
        }
      });
    },

    metricsLink(sid, res) {
      const tpl = this.health.metrics_url;
      if (!tpl) return null;
      const pts = (res && res.points) || [];
      const from = pts.length ? Math.round(pts[0][0] * 1000) : Date.now() - 3600e3;
      const to = pts.length ? Math.round(pts[pts.length - 1][0] * 1000) : Date.now();
      return safeUrl(tpl.replace("{query}", encodeURIComponent(sid))
                        .replace("{from}", String(from)).replace("{to}", String(to)));
    },

    async act(action, extra = {}) {
      const id = this.detail.summary.incident_id;
      const body = Object.assign({ comment: this.triage.comment }, extra);
      try {
        await this.post("/api/incidents/" + encodeURIComponent(id) + "/" + action, body);
        this.triage.note = action + " recorded";
        this.triage.comment = "";
      } catch (e) {
        this.triage.note = action + " failed: " + e.message;
      }
      await this.loadDetail(true);
    },

    async silenceRoot() {
      const s = this.detail.summary;
      const svc = s.root_service || (s.services || [])[0];
      try {
        const res = await this.post("/api/silences", {
          matchers: { service: svc }, duration_minutes: Number(this.triage.silenceFor),
          comment: this.triage.comment || ("silenced from the console for incident " + s.incident_id),
        });
        this.triage.note = "silence " + res.silence_id + " on service=" + svc + " until " + this.clock(res.ends_at) + " UTC";
      } catch (e) {
        this.triage.note = "silence failed: " + e.message;
      }
    },

    async feedback(rating) {
      try {
        await this.post("/api/feedback", { incident_id: this.detail.summary.incident_id, kind: "rca",
                                           rating, comment: this.triage.comment });
        this.triage.note = "feedback '" + rating + "' recorded";
      } catch (e) {
        this.triage.note = "feedback failed: " + e.message;
      }
    },

    async showRunbook(id) {
      try { this.runbook = await this.api("/api/runbooks/" + encodeURIComponent(id)); }
      catch (e) { this.runbook = { id, title: id, body: "not available: " + e.message }; }
    },

    async vote(planId, decision) {
      const comment = this.comments[planId] || "";
      try {
        const res = await this.post("/api/approvals/" + encodeURIComponent(planId) + "/" + decision,
                                    { comment, reason: comment });
        this.notices[planId] = decision + " sent" + (res && res.status ? ": " + res.status : "");
      } catch (e) {
        this.notices[planId] = decision + " failed: " + e.message;
      }
      await this.loadDetail(true);
    },

    async loadSilences() {
      try { this.silences = (await this.api("/api/silences?state=all&limit=200")).items; }
      catch (e) { this.error = e.message; }
    },

    async createSilence() {
      const matchers = {};
      for (const part of this.silenceForm.matchers.split(/[\s,]+/).filter(Boolean)) {
        const i = part.indexOf("=");
        if (i > 0) matchers[part.slice(0, i)] = part.slice(i + 1);
      }
      const body = { matchers, duration_minutes: Number(this.silenceForm.minutes),
                     comment: this.silenceForm.comment };
      if (this.silenceForm.startsAt) {
        body.starts_at = this.silenceForm.startsAt.replace(" ", "T") + (this.silenceForm.startsAt.endsWith("Z") ? "" : "Z");
        body.kind = "maintenance";
      }
      try {
        await this.post("/api/silences", body);
        this.silenceForm.comment = ""; this.error = "";
      } catch (e) { this.error = "silence not created: " + e.message; }
      await this.loadSilences();
    },

    async expireSilence(id) {
      try { await this.post("/api/silences/" + encodeURIComponent(id), undefined, "DELETE"); }
      catch (e) { this.error = e.message; }
      await this.loadSilences();
    },

    async loadAudit() {
      const q = new URLSearchParams({ limit: "200" });
      for (const [k, v] of Object.entries(this.auditFilter)) if (v.trim()) q.set(k, v.trim());
      try { this.audit = (await this.api("/api/audit?" + q)).items; this.auditError = ""; }
      catch (e) { this.audit = []; this.auditError = e.message; }
    },

    planClass(state) {
      if (["failed", "rejected", "blocked", "expired", "refused"].includes(state)) return "bad";
      if (["executed", "completed", "approved", "auto"].includes(state)) return "good";
      if (state === "dry-run") return "dry";
      return "";
    },

    pct(x) { return Math.round((x || 0) * 100) + "%"; },
    clock(iso) { return iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) : ""; },
    duration(s) {
      if (s == null) return "";
      s = Math.max(0, Math.round(s));
      if (s < 120) return s + " s";
      if (s < 7200) return Math.round(s / 60) + " min";
      if (s < 172800) return (s / 3600).toFixed(1) + " h";
      return (s / 86400).toFixed(1) + " d";
    },
    openFor(sum) {  // duration so far (open) or until resolution
      if (!sum || !sum.opened_at) return "";
      if (sum.duration_seconds != null) return this.duration(sum.duration_seconds);
      return this.duration((Date.now() - new Date(sum.opened_at).getTime()) / 1000) + " so far";
    },
    ago(iso) {
      const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
      if (s < 90) return Math.round(s) + "s ago";
      if (s < 5400) return Math.round(s / 60) + "m ago";
      if (s < 172800) return Math.round(s / 3600) + "h ago";
      return Math.round(s / 86400) + "d ago";
    },
    safe(u) { return safeUrl(u); },
  }));
});
