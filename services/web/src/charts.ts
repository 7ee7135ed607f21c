/**
 * uPlot charts, sized to their container and redrawn in place when new rounds arrive.
 * Each chart host carries `data-rounds` (the x values it shows) so tests can see what is plotted on the canvas.
 */
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

/** Loss ticks fit the 52 px axis: a diverged run (DP noise, a garbage node) reaches millions. */
const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
function lossTick(t: number): string {
  return Math.abs(t) >= 1000 ? compact.format(t) : t.toFixed(2);
}

export const PALETTE = ["#2563eb", "#e11d48", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];
const AXIS = { stroke: "#64748b", grid: { stroke: "#eef1f5", width: 1 }, ticks: { stroke: "#e2e8f0", width: 1 }, font: "12px Inter, system-ui, sans-serif" };
const INT_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000];

function chartHeight(host: HTMLElement): number {
  return window.innerWidth < 640 ? 220 : Math.max(240, Math.min(320, host.clientWidth * 0.34));
}

interface Handle {
  chart: uPlot;
  observer: ResizeObserver;
}

function build(host: HTMLElement, opts: Omit<uPlot.Options, "width" | "height">, data: uPlot.AlignedData): Handle {
  host.replaceChildren();
  const chart = new uPlot({ ...opts, width: Math.max(280, host.clientWidth), height: chartHeight(host) }, data, host);
  const observer = new ResizeObserver(() => {
    const width = Math.max(280, host.clientWidth);
    if (Math.abs(width - chart.width) > 2) chart.setSize({ width, height: chartHeight(host) });
  });
  observer.observe(host);
  return { chart, observer };
}

function xScaleRange(maxRound: () => number): uPlot.Scale.Range {
  return (_u, _min, max) => [1, Math.max(2, maxRound(), max ?? 1)];
}

export interface MetricsPoint {
  round: number;
  /** Centralized: the server's test set. */
  accuracy: number | null;
  loss: number | null;
  /** Federated: the clients' validation of the global model before local training, example-weighted. */
  fedAccuracy: number | null;
  fedLoss: number | null;
}

export const SERIES_COLORS = { centralized: PALETTE[0], centralizedLoss: PALETTE[1], federated: PALETTE[2], federatedLoss: PALETTE[3] };

/** Accuracy (left axis, %) and loss (right axis) per round for one run, centralized (solid) and federated. */
export class MetricsChart {
  private handle: Handle | null = null;
  private totalRounds = 1;

  constructor(private readonly host: HTMLElement) {}

  update(points: MetricsPoint[], totalRounds: number): void {
    this.totalRounds = totalRounds;
    const data: uPlot.AlignedData = [
      points.map((p) => p.round),
      points.map((p) => p.accuracy),
      points.map((p) => p.loss),
      points.map((p) => p.fedAccuracy),
      points.map((p) => p.fedLoss),
    ];
    this.host.dataset.rounds = points.map((p) => p.round).join(",");
    this.host.dataset.centralized = String(points.filter((p) => p.accuracy !== null).length);
    this.host.dataset.federated = String(points.filter((p) => p.fedAccuracy !== null).length);
    if (this.handle) {
      this.handle.chart.setData(data);
      return;
    }
    const pointStyle = { show: true, size: 7, width: 2, fill: "#fff" };
    const pct = (_u: uPlot, v: number | null) => (v === null ? "—" : `${(v * 100).toFixed(2)}%`);
    const num = (_u: uPlot, v: number | null) => (v === null ? "—" : v.toFixed(4));
    this.handle = build(
      this.host,
      {
        legend: { show: true, live: true },
        cursor: { points: { size: 8 }, drag: { x: false, y: false } },
        scales: {
          x: { time: false, range: xScaleRange(() => this.totalRounds) },
          acc: { range: (_u, min, max) => [Math.max(0, Math.floor(((min ?? 0) - 0.05) * 10) / 10), Math.min(1, Math.ceil(((max ?? 1) + 0.02) * 10) / 10)] },
          loss: { range: (_u, _min, max) => [0, Math.max(0.1, (max ?? 1) * 1.15)] },
        },
        axes: [
          { ...AXIS, label: "Round", labelSize: 20, incrs: INT_INCRS, values: (_u, ticks) => ticks.map((t) => (Number.isInteger(t) ? String(t) : "")) },
          { ...AXIS, scale: "acc", label: "Accuracy", labelSize: 20, size: 52, values: (_u, ticks) => ticks.map((t) => `${Math.round(t * 100)}%`) },
          { ...AXIS, scale: "loss", side: 1, label: "Loss", labelSize: 20, size: 52, grid: { show: false }, values: (_u, ticks) => ticks.map(lossTick) },
        ],
        series: [
          { label: "Round", value: (_u, v) => (v === null ? "—" : String(v)) },
          { label: "Centralized accuracy", scale: "acc", stroke: SERIES_COLORS.centralized, width: 2.5, fill: "rgba(37,99,235,0.07)", points: { ...pointStyle, stroke: SERIES_COLORS.centralized }, spanGaps: true, value: pct },
          { label: "Centralized loss", scale: "loss", stroke: SERIES_COLORS.centralizedLoss, width: 2, dash: [6, 4], points: { ...pointStyle, stroke: SERIES_COLORS.centralizedLoss }, spanGaps: true, value: num },
          { label: "Federated accuracy", scale: "acc", stroke: SERIES_COLORS.federated, width: 2.5, points: { ...pointStyle, stroke: SERIES_COLORS.federated }, spanGaps: true, value: pct },
          { label: "Federated loss", scale: "loss", stroke: SERIES_COLORS.federatedLoss, width: 2, dash: [6, 4], points: { ...pointStyle, stroke: SERIES_COLORS.federatedLoss }, spanGaps: true, value: num },
        ],
      },
      data,
    );
  }

  destroy(): void {
    this.handle?.observer.disconnect();
    this.handle?.chart.destroy();
    this.handle = null;
  }
}

export interface RunCurve {
  label: string;
  rounds: number[];
  accuracy: (number | null)[];
}

/** Accuracy curves of several runs overlaid on one round axis. */
export function compareChart(host: HTMLElement, curves: RunCurve[]): () => void {
  const tables = curves.map((c) => [c.rounds, c.accuracy] as uPlot.AlignedData);
  const data = uPlot.join(tables);
  host.dataset.rounds = Array.from(data[0] as number[]).join(",");
  host.dataset.series = String(curves.length);
  const maxRound = Math.max(2, ...curves.flatMap((c) => c.rounds));
  const handle = build(
    host,
    {
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: false, range: xScaleRange(() => maxRound) },
        y: { range: (_u, min, max) => [Math.max(0, Math.floor(((min ?? 0) - 0.05) * 10) / 10), Math.min(1, Math.ceil(((max ?? 1) + 0.02) * 10) / 10)] },
      },
      axes: [
        { ...AXIS, label: "Round", labelSize: 20, incrs: INT_INCRS, values: (_u, ticks) => ticks.map((t) => (Number.isInteger(t) ? String(t) : "")) },
        { ...AXIS, label: "Accuracy", labelSize: 20, size: 52, values: (_u, ticks) => ticks.map((t) => `${Math.round(t * 100)}%`) },
      ],
      series: [
        { label: "Round" },
        ...curves.map((c, i) => ({
          label: c.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 2.5,
          spanGaps: true,
          points: { show: true, size: 6, fill: "#fff", stroke: PALETTE[i % PALETTE.length] },
          value: (_u: uPlot, v: number | null) => (v === null ? "—" : `${(v * 100).toFixed(2)}%`),
        })),
      ],
    },
    data,
  );
  return () => {
    handle.observer.disconnect();
    handle.chart.destroy();
  };
}
