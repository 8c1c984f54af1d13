// A small SVG line chart writer for the benchmark's plots (no plotting library in the tree): linear axes from 0 with
// round ticks, one polyline with dots per series, a legend, and optional dashed horizontal goal lines.

export interface Series {
  name: string;
  points: [number, number][];
}

export interface Chart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Horizontal reference lines, e.g. a goal. */
  goals?: { y: number; label: string }[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];
const W = 640;
const H = 400;
const M = { left: 70, right: 20, top: 40, bottom: 55 };

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A "nice" tick step (1, 2 or 5 times a power of ten) giving about `n` ticks up to `max`. */
export function niceStep(max: number, n = 5): number {
  if (!(max > 0)) return 1;
  const raw = max / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

const label = (v: number): string => (Math.abs(v) >= 1000 ? `${+(v / 1000).toFixed(1)}k` : `${+v.toFixed(2)}`);

export function lineChart(c: Chart): string {
  const xs = c.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = [...c.series.flatMap((s) => s.points.map((p) => p[1])), ...(c.goals ?? []).map((g) => g.y)];
  const xStep = niceStep(Math.max(0, ...xs.filter(Number.isFinite)));
  const yStep = niceStep(Math.max(0, ...ys.filter(Number.isFinite)));
  const xMax = Math.max(xStep, Math.ceil(Math.max(0, ...xs.filter(Number.isFinite)) / xStep) * xStep);
  const yMax = Math.max(yStep, Math.ceil((Math.max(0, ...ys.filter(Number.isFinite)) * 1.05) / yStep) * yStep);
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const X = (v: number) => +(M.left + (v / xMax) * pw).toFixed(1);
  const Y = (v: number) => +(M.top + ph - (v / yMax) * ph).toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`,
  ];
  for (let v = 0; v <= xMax + xStep / 2; v += xStep) {
    out.push(`<line x1="${X(v)}" y1="${M.top}" x2="${X(v)}" y2="${M.top + ph}" stroke="#eee"/>`);
    out.push(`<text x="${X(v)}" y="${M.top + ph + 18}" text-anchor="middle">${label(v)}</text>`);
  }
  for (let v = 0; v <= yMax + yStep / 2; v += yStep) {
    out.push(`<line x1="${M.left}" y1="${Y(v)}" x2="${M.left + pw}" y2="${Y(v)}" stroke="#eee"/>`);
    out.push(`<text x="${M.left - 8}" y="${Y(v) + 4}" text-anchor="end">${label(v)}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`);
  for (const g of c.goals ?? []) {
    out.push(`<line x1="${M.left}" y1="${Y(g.y)}" x2="${M.left + pw}" y2="${Y(g.y)}" stroke="#888" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${M.left + pw - 4}" y="${Y(g.y) - 5}" text-anchor="end" fill="#555">${esc(g.label)}</text>`);
  }
  c.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = s.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1])).sort((a, b) => a[0] - b[0]);
    if (pts.length > 1)
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${X(p[0])},${Y(p[1])}`).join(' ')}"/>`);
    for (const p of pts)
      out.push(`<circle cx="${X(p[0])}" cy="${Y(p[1])}" r="3.5" fill="${color}"><title>${label(p[0])}: ${label(p[1])}</title></circle>`);
    const ly = M.top + 16 + i * 18;
    out.push(`<line x1="${M.left + 12}" y1="${ly - 4}" x2="${M.left + 32}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>`);
    out.push(`<text x="${M.left + 38}" y="${ly}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
