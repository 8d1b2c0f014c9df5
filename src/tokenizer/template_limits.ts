// Bounded rendering of chat templates. A template is code from a model folder or a user, and
// @huggingface/jinja runs it without limits: {% for i in range(100000000) %} hangs and fills memory.
// Like Jinja's SandboxedEnvironment (which transformers renders with), range() is capped at
// MAX_RANGE = 100000 items; a render also stops past a time budget and when a string or list it
// builds outgrows a cap. Reference: jinja2/sandbox.py (MAX_RANGE, safe_range).
import { Environment, Interpreter, type Template } from '@huggingface/jinja';

// @huggingface/jinja's .d.ts files import './runtime' without an extension, which NodeNext cannot
// resolve, so Environment and Interpreter arrive untyped: the slice used here is declared instead.
interface RuntimeValue { readonly type: string; readonly value: unknown }
interface JinjaEnvironment { set(name: string, value: unknown): RuntimeValue }
interface JinjaInterpreter {
  run(program: unknown): RuntimeValue;
  evaluate(node: unknown, env: JinjaEnvironment): RuntimeValue;
}
const JinjaEnv: new () => JinjaEnvironment = Environment;
const JinjaInterpreterBase: new (env: JinjaEnvironment) => JinjaInterpreter = Interpreter;

export interface TemplateLimits {
  /** most items range() may make and any list may hold (jinja2.sandbox.MAX_RANGE) */
  readonly maxItems: number;
  /** most characters any string, the output included, may hold */
  readonly maxChars: number;
  /** wall-clock budget of one render, milliseconds */
  readonly timeMs: number;
}

export const DEFAULT_TEMPLATE_LIMITS: TemplateLimits = { maxItems: 100_000, maxChars: 16 * 2 ** 20, timeMs: 10_000 };

/** A limit a render ran past; the message says which, e.g. "the time limit of 10000 ms". */
export class LimitExceeded extends Error {}

/**
 * Checks the limits at every node. Every loop iteration evaluates nodes of its body, so the clock
 * is read often enough; each built string or list is checked once, when the node returns it.
 */
class BoundedInterpreter extends JinjaInterpreterBase {
  private readonly deadline: number;
  constructor(env: JinjaEnvironment, private readonly limits: TemplateLimits) {
    super(env);
    this.deadline = performance.now() + limits.timeMs;
  }

  override evaluate(node: unknown, env: JinjaEnvironment): RuntimeValue {
    const { maxChars, maxItems, timeMs } = this.limits;
    if (performance.now() > this.deadline) throw new LimitExceeded(`the time limit of ${timeMs} ms`);
    const v = super.evaluate(node, env);
    if (typeof v.value === 'string' && v.value.length > maxChars) throw new LimitExceeded(`the size limit of ${maxChars} characters (a string of ${v.value.length})`);
    if (Array.isArray(v.value) && v.value.length > maxItems) throw new LimitExceeded(`the limit of ${maxItems} list items (a list of ${v.value.length})`);
    return v;
  }
}

/** Python's range() that refuses, before allocating, to make more than max items. */
function boundedRange(max: number): (start: number, stop?: number, step?: number) => number[] {
  return (start, stop, step = 1) => {
    if (stop === undefined) [start, stop] = [0, start];
    if (step === 0) throw new Error('range() step must not be zero');
    const n = Math.max(0, Math.ceil((stop - start) / step));
    if (n > max) throw new LimitExceeded(`the limit of ${max} range() items (range of ${n})`);
    return Array.from({ length: n }, (_, i) => start + i * step);
  };
}

/** Python's strftime for the directives chat templates use (as @huggingface/jinja's strftime_now). */
function strftime(date: Date, format: string): string {
  const pad2 = (n: number): string => String(n).padStart(2, '0');
  const month = (style: 'long' | 'short'): string => new Intl.DateTimeFormat(undefined, { month: style }).format(date);
  return format.replace(/%[YmdbBHM%]/g, (t) => {
    switch (t) {
      case '%Y': return String(date.getFullYear());
      case '%m': return pad2(date.getMonth() + 1);
      case '%d': return pad2(date.getDate());
      case '%b': return month('short');
      case '%B': return month('long');
      case '%H': return pad2(date.getHours());
      case '%M': return pad2(date.getMinutes());
      default: return '%';
    }
  });
}

/**
 * Renders a compiled template as Template.render does (the same globals, then vars), within limits.
 * @example
 * renderBounded(new Template('{{ x }}'), { x: 1 }) // '1'
 * renderBounded(new Template('{% for i in range(10**8) %}{% endfor %}'), {}) // throws LimitExceeded
 */
export function renderBounded(template: Template, vars: Readonly<Record<string, unknown>>, limits: TemplateLimits = DEFAULT_TEMPLATE_LIMITS): string {
  const env = new JinjaEnv();
  const globals: Record<string, unknown> = {
    false: false, true: true, none: null, False: false, True: true, None: null,
    raise_exception: (message: string) => { throw new Error(message); },
    range: boundedRange(limits.maxItems),
    strftime_now: (format: string) => strftime(new Date(), format),
  };
  for (const [k, v] of Object.entries(globals)) env.set(k, v);
  for (const [k, v] of Object.entries(vars)) env.set(k, v);
  return String(new BoundedInterpreter(env, limits).run(template.parsed).value);
}
