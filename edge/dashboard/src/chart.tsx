import { useEffect, useRef } from "hono/jsx/dom";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Line {
  label: string;
  values: number[];
}

const COLORS = ["#2563eb", "#16a34a", "#d97706", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"];

/**
 * A time-series chart (uPlot, drawn on a canvas): one line per series over shared x values (epoch
 * ms). It follows its container's width, so it fits a phone as well as a desktop.
 */
export function Chart({ title, xs, lines, step }: { title: string; xs: number[]; lines: Line[]; step: "minute" | "day" }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(280, el.clientWidth),
      height: 220,
      series: [
        {},
        ...lines.map((l, i) => ({
          label: l.label,
          stroke: COLORS[i % COLORS.length]!,
          width: 2,
          points: { show: xs.length <= 31 },
        })),
      ],
      axes: [
        { values: step === "day" ? "{M}/{D}" : "{HH}:{mm}" },
        { size: 56, values: (_u: uPlot, ticks: number[]) => ticks.map((t) => Intl.NumberFormat("en-US", { notation: "compact" }).format(t)) },
      ],
      scales: { y: { range: (_u: uPlot, _min: number, max: number) => [0, Math.max(1, max * 1.1)] } },
      legend: { show: true },
    };
    const data: uPlot.AlignedData = [xs.map((x) => x / 1000), ...lines.map((l) => l.values)];
    plot.current?.destroy();
    plot.current = new uPlot(opts, data, el);
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(280, el.clientWidth), height: 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [JSON.stringify([xs, lines, step])]);

  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title}: ${lines.map((l) => `${l.label} ${l.values.reduce((a, b) => a + b, 0)}`).join(", ")}`} />
    </figure>
  );
}
