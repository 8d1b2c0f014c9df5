// A live uPlot line chart of one or more metrics over steps; new points are set on the same plot.
// Series may have their own steps (eval loss is logged every --eval-every steps): they are joined
// on the union of steps, with gaps where a series has no point.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  steps: number[];
  values: number[];
}

const COLORS = ['#2f6fd6', '#d6572f', '#2fa36b', '#8a4fd6', '#c49a00', '#5a6475'];

/** [steps, ...values] on the sorted union of every series' steps (null where a series has none). */
function joined(series: Series[]): uPlot.AlignedData {
  const steps = [...new Set(series.flatMap((s) => s.steps))].sort((a, b) => a - b);
  const at = new Map(steps.map((s, i) => [s, i]));
  const columns = series.map((s) => {
    const col: (number | null)[] = new Array(steps.length).fill(null);
    s.steps.forEach((step, i) => (col[at.get(step)!] = s.values[i]));
    return col;
  });
  return [steps, ...columns];
}

export function MetricChart(props: { label: string; series: Series[] }) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const labels = props.series.map((s) => s.label).join('|');
  useEffect(() => {
    plot.current = new uPlot({
      width: 360, height: 200, title: props.label,
      scales: { x: { time: false } },
      series: [{ label: 'step' }, ...props.series.map((s, i) => ({
        label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true,
        value: (_u: uPlot, v: number | null) => (v === null ? '--' : v.toPrecision(4)),
      }))],
      // learning rates are ~1e-4: uPlot's default tick labels would round them to 0
      axes: [{}, { size: 64, values: (_u, ticks) => ticks.map((v) => v.toPrecision(2)) }],
    }, joined(props.series), el.current!);
    return () => plot.current?.destroy();
  }, [props.label, labels]);
  const points = props.series.reduce((n, s) => n + s.steps.length, 0);
  useEffect(() => plot.current?.setData(joined(props.series)), [points]);
  return <div class="chart" ref={el} data-points={props.series[0]?.steps.length ?? 0} data-series={labels} />;
}
