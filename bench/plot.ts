/**
 * Plots as hand-written SVG (no plotting library): throughput and latency
 * percentiles over a run, the latency-against-throughput curve of a sweep, and
 * the balancing strategies side by side.
 */
import type { Report } from "./report";

const W = 760;
const PANEL_H = 220;
const M = { left: 70, right: 150, top: 34, bottom: 40 };
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

interface Series {
  name: string;
  points: [number, number][];
  color: string;
  dash?: boolean;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
const num = (v: number) => (Math.abs(v) >= 1000 ? `${+(v / 1000).toFixed(1)}k` : `${+v.toFixed(2)}`);

/** One chart panel at vertical offset y; log scale on y when asked. */
function panel(y0: number, title: string, xLabel: string, yLabel: string, series: Series[], log = false): string {
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!log || y > 0));
  if (all.length === 0) return `<text x="${M.left}" y="${y0 + 20}" font-size="13">${esc(title)}: no data</text>`;
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const x0 = Math.min(0, ...xs);
  const x1 = Math.max(...xs) || 1;
  let yLo = log ? Math.pow(10, Math.floor(Math.log10(Math.min(...ys)))) : 0;
  let yHi = log ? Math.pow(10, Math.ceil(Math.log10(Math.max(...ys)))) : Math.max(...ys) * 1.1 || 1;
  if (yHi <= yLo) yHi = yLo * 10 || 1;
  const pw = W - M.left - M.right;
  const ph = PANEL_H - M.top - M.bottom;
  const sx = (x: number) => M.left + ((x - x0) / (x1 - x0 || 1)) * pw;
  const sy = (y: number) => y0 + M.top + ph - (log ? (Math.log10(y) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo)) : (y - yLo) / (yHi - yLo)) * ph;
  const out: string[] = [];
  out.push(`<text x="${M.left}" y="${y0 + 20}" font-size="14" font-weight="bold">${esc(title)}</text>`);
  out.push(`<rect x="${M.left}" y="${y0 + M.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  const yTicks = log
    ? Array.from({ length: Math.round(Math.log10(yHi / yLo)) + 1 }, (_, i) => yLo * Math.pow(10, i))
    : Array.from({ length: 5 }, (_, i) => yLo + ((yHi - yLo) * i) / 4);
  for (const t of yTicks) {
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/>`);
    out.push(`<text x="${M.left - 6}" y="${sy(t) + 4}" font-size="11" text-anchor="end">${num(t)}</text>`);
  }
  for (let i = 0; i <= 5; i++) {
    const t = x0 + ((x1 - x0) * i) / 5;
    out.push(`<text x="${sx(t)}" y="${y0 + M.top + ph + 15}" font-size="11" text-anchor="middle">${num(t)}</text>`);
  }
  out.push(`<text x="${M.left + pw / 2}" y="${y0 + PANEL_H - 6}" font-size="12" text-anchor="middle">${esc(xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${y0 + M.top + ph / 2}) rotate(-90)" font-size="12" text-anchor="middle">${esc(yLabel)}</text>`);
  series.forEach((s, i) => {
    const pts = s.points.filter(([, y]) => Number.isFinite(y) && (!log || y > 0));
    if (pts.length === 0) return;
    const d = pts.map(([x, y], j) => `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="5,4"' : ""}/>`);
    if (pts.length < 30) for (const [x, y] of pts) out.push(`<circle cx="${sx(x)}" cy="${sy(y)}" r="3" fill="${s.color}"/>`);
    const ly = y0 + M.top + 8 + i * 16;
    out.push(`<line x1="${M.left + pw + 10}" x2="${M.left + pw + 30}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="5,4"' : ""}/>`);
    out.push(`<text x="${M.left + pw + 34}" y="${ly + 4}" font-size="11">${esc(s.name)}</text>`);
  });
  return out.join("\n");
}

function svg(height: number, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W / 2}" y="18" font-size="15" text-anchor="middle">${esc(title)}</text>`,
    ...body,
    `</svg>`,
  ].join("\n");
}

function describe(r: Report): string {
  const c = r.config;
  return `${c.pattern}, ${c.clients} clients, ${c.servers ?? "?"} server(s), ${c.rate === "max" ? "max rate" : `${c.rate} msg/s`}`;
}

/** Throughput and latency percentiles over time, for one run or a run and its ceiling. */
export function timelineSvg(reports: Report[]): string {
  const body: string[] = [];
  const throughput: Series[] = [];
  const latency: Series[] = [];
  reports.forEach((r, i) => {
    const tag = reports.length > 1 ? `${r.label ?? i} ` : "";
    const dash = i > 0;
    throughput.push({ name: `${tag}stored/s`, color: COLORS[0]!, dash, points: r.timeline.map((p) => [p.t, p.acknowledgedPerS]) });
    throughput.push({ name: `${tag}delivered/s`, color: COLORS[2]!, dash, points: r.timeline.map((p) => [p.t, p.deliveredPerS]) });
    latency.push({ name: `${tag}p50`, color: COLORS[0]!, dash, points: r.timeline.map((p) => [p.t, p.deliveryP50 ?? NaN]) });
    latency.push({ name: `${tag}p99`, color: COLORS[3]!, dash, points: r.timeline.map((p) => [p.t, p.deliveryP99 ?? NaN]) });
    latency.push({ name: `${tag}p99.9`, color: COLORS[1]!, dash, points: r.timeline.map((p) => [p.t, p.deliveryP999 ?? NaN]) });
  });
  body.push(panel(24, "Throughput", "seconds since start (warm-up included)", "messages / s", throughput));
  body.push(panel(24 + PANEL_H, "Send → delivery latency", "seconds since start", "ms (log)", latency, true));
  return svg(24 + 2 * PANEL_H, `ChatterBox bench: ${describe(reports[0]!)}`, body);
}

/** Latency against the throughput reached, one point per rate of the sweep. */
export function sweepSvg(reports: Report[]): string {
  const x = (r: Report) => r.throughput.deliveredPerS;
  const series: Series[] = [
    { name: "p50", color: COLORS[0]!, points: reports.map((r) => [x(r), r.latencyMs.delivery?.p50 ?? NaN]) },
    { name: "p99", color: COLORS[3]!, points: reports.map((r) => [x(r), r.latencyMs.delivery?.p99 ?? NaN]) },
    { name: "p99.9", color: COLORS[1]!, points: reports.map((r) => [x(r), r.latencyMs.delivery?.p999 ?? NaN]) },
    { name: "max", color: COLORS[4]!, dash: true, points: reports.map((r) => [x(r), r.latencyMs.delivery?.max ?? NaN]) },
  ];
  const c = reports[0]!.config;
  return svg(24 + PANEL_H + 40, `Latency against throughput: ${c.pattern}, ${c.clients} clients, ${c.servers ?? "?"} server(s)`, [
    panel(24, "Send → delivery latency at each offered rate", "deliveries / s reached", "ms (log)", series, true),
  ]);
}

/** Connections per server and latency under each balancing strategy. */
export function strategiesSvg(reports: Report[]): string {
  const body: string[] = [];
  const servers = Math.max(...reports.map((r) => r.servers.length));
  const top = 60;
  const bh = 180;
  const groupW = (W - M.left - M.right) / reports.length;
  const maxConn = Math.max(1, ...reports.flatMap((r) => r.servers.map((s) => s.connections)));
  const maxLat = Math.max(0.001, ...reports.map((r) => r.latencyMs.delivery?.p99 ?? 0));
  body.push(`<text x="${M.left}" y="${top - 12}" font-size="14" font-weight="bold">Connections per server</text>`);
  body.push(`<text x="${M.left}" y="${top + bh + 58}" font-size="14" font-weight="bold">Send → delivery latency (ms)</text>`);
  reports.forEach((r, i) => {
    const gx = M.left + i * groupW;
    const bw = (groupW - 20) / Math.max(1, servers);
    r.servers.forEach((s, j) => {
      const h = (s.connections / maxConn) * bh;
      body.push(`<rect x="${gx + 10 + j * bw}" y="${top + bh - h}" width="${bw - 2}" height="${h}" fill="${COLORS[j % COLORS.length]}"/>`);
      body.push(`<text x="${gx + 10 + j * bw + bw / 2}" y="${top + bh - h - 3}" font-size="10" text-anchor="middle">${s.connections}</text>`);
    });
    body.push(`<text x="${gx + groupW / 2}" y="${top + bh + 16}" font-size="12" text-anchor="middle">${esc(r.label ?? "")}</text>`);
    const ly = top + bh + 70;
    const lh = 150;
    const d = r.latencyMs.delivery;
    const bars: [string, number, string][] = [["p50", d?.p50 ?? 0, COLORS[0]!], ["p99", d?.p99 ?? 0, COLORS[3]!]];
    bars.forEach(([name, v, color], j) => {
      const h = (v / maxLat) * lh;
      const bx = gx + 10 + j * ((groupW - 20) / 2);
      body.push(`<rect x="${bx}" y="${ly + lh - h}" width="${(groupW - 20) / 2 - 4}" height="${h}" fill="${color}"/>`);
      body.push(`<text x="${bx + (groupW - 20) / 4}" y="${ly + lh - h - 3}" font-size="10" text-anchor="middle">${name} ${v}</text>`);
    });
    body.push(`<text x="${gx + groupW / 2}" y="${ly + lh + 16}" font-size="12" text-anchor="middle">${esc(r.label ?? "")}</text>`);
  });
  const c = reports[0]!.config;
  return svg(top + bh + 70 + 150 + 30, `Balancing strategies: ${c.pattern}, ${c.clients} clients, ${c.servers} servers, ${c.rate === "max" ? "max" : `${c.rate} msg/s`}`, body);
}
