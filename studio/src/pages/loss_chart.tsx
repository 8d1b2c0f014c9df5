// A live uPlot line chart of one metric over steps; new points are set on the same plot.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export function MetricChart(props: { label: string; steps: number[]; values: number[] }) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    plot.current = new uPlot({
      width: 360, height: 200, title: props.label,
      scales: { x: { time: false } },
      series: [{ label: 'step' }, { label: props.label, stroke: '#2f6fd6', width: 2, value: (_u, v) => (v === null ? '--' : v.toPrecision(4)) }],
      // learning rates are ~1e-4: uPlot's default tick labels would round them to 0
      axes: [{}, { size: 64, values: (_u, ticks) => ticks.map((v) => v.toPrecision(2)) }],
    }, [[], []], el.current!);
    return () => plot.current?.destroy();
  }, [props.label]);
  useEffect(() => plot.current?.setData([props.steps, props.values]), [props.steps.length]);
  return <div class="chart" ref={el} data-points={props.steps.length} />;
}
