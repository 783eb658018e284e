/* SRE Agent web console: Alpine.js component + uPlot charts; talks to the REST API. */
"use strict";

const ROLES = ["viewer", "operator", "approver", "admin"];
const POLL_MS = 3000;
const MAX_CHARTS = 4;

function tokenFromHash() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(window.location.hash || "");
  if (!m) return null;
  history.replaceState(null, "", window.location.pathname + window.location.search);
  return decodeURIComponent(m[1]);
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
    scales: { x: { time: true, range: (u, min, max) => (min === max ? [min - 300, max + 300] : [min, max]) } },
    series: [
      {},
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
    filter: "open", incidents: [], selected: null, detail: null,
    health: {}, charts: [], comments: {}, notices: {}, timer: null,

    get canApprove() {
      return !!this.me && ROLES.indexOf(this.me.role) >= ROLES.indexOf("approver");
    },

    async init() {
      this.token = tokenFromHash() || sessionStorage.getItem("sre-token");
      if (this.token) await this.whoami();
      this.timer = setInterval(() => this.refresh(), POLL_MS);
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

    async whoami() {
      try {
        this.me = await this.api("/api/whoami");
        sessionStorage.setItem("sre-token", this.token);
        this.loginError = "";
        await this.refresh();
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

    async refresh() {
      if (!this.me) return;
      try {
        const [page, health] = await Promise.all([
          this.api("/api/incidents?limit=100&status=" + encodeURIComponent(this.filter)),
          this.api("/api/status"),
        ]);
        this.incidents = page.items;
        this.health = health;
        if (!this.selected && this.incidents.length) this.selected = this.incidents[0].incident_id;
        if (this.selected) await this.loadDetail();
        this.error = "";
      } catch (e) {
        this.error = e.message;
      }
    },

    async select(id) {
      this.selected = id;
      this.charts = [];
      await this.loadDetail();
    },

    async loadDetail() {
      try {
        this.detail = await this.api("/api/incidents/" + encodeURIComponent(this.selected));
      } catch (e) {
        this.detail = null;
        return;
      }
      await this.loadCharts();
    },

    async loadCharts() {
      const d = this.detail;
      if (!d) return;
      const tracked = (await this.api("/api/series")).items;
      const wanted = tracked
        .filter(s => d.series.includes(s.series) || d.summary.services.includes(s.service))
        .slice(0, MAX_CHARTS).map(s => s.series);
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
      });
    },

    async vote(planId, decision) {
      const comment = this.comments[planId] || "";
      try {
        const res = await this.api("/api/approvals/" + encodeURIComponent(planId) + "/" + decision, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ comment, reason: comment }),
        });
        this.notices[planId] = decision + " sent" + (res && res.status ? ": " + res.status : "");
      } catch (e) {
        this.notices[planId] = decision + " failed: " + e.message;
      }
      await this.loadDetail();
    },

    pct(x) { return Math.round((x || 0) * 100) + "%"; },
    clock(iso) { return iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) : ""; },
    ago(iso) {
      const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
      if (s < 90) return Math.round(s) + "s ago";
      if (s < 5400) return Math.round(s / 60) + "m ago";
      if (s < 172800) return Math.round(s / 3600) + "h ago";
      return Math.round(s / 86400) + "d ago";
    },
  }));
});
