// Chat template limits: {% for i in range(100000000) %} used to hang `kestrel chat` (and fill the
// heap); now range() is capped as in Jinja's sandbox, and a render stops past its time budget or
// when a string or list outgrows its cap, with a TemplateLimitError naming the template. The
// renderer's own globals (range, strftime_now, raise_exception, namespace) behave as before.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { DEFAULT_TEMPLATE_LIMITS, TemplateError, TemplateLimitError, applyChatTemplate } from '../../src/tokenizer/index.js';

const render = (template: string, limits = {}): string => applyChatTemplate([{ role: 'user', content: 'Hi' }], { template, limits });

function throwsLimit(template: string, detail: string, limits = {}): void {
  assert.throws(() => render(template, limits), (e: Error) => {
    assert.ok(e instanceof TemplateLimitError, `${e.name}: ${e.message}`);
    assert.ok(e.message.startsWith('chat template "'), e.message);
    assert.ok(e.message.includes(`": exceeded ${detail}`), e.message);
    return true;
  });
}

describe('chat template limits', () => {
  test('range(100000000) fails at once, in a 256 MB heap, naming the template (it hung before)', () => {
    const script = `
      import { applyChatTemplate } from ${JSON.stringify(new URL('../../src/tokenizer/index.ts', import.meta.url).href)};
      try { applyChatTemplate([{ role: 'user', content: 'Hi' }], { template: '{% for i in range(100000000) %}x{% endfor %}' }); console.log('rendered'); }
      catch (e) { console.log(e.name + ': ' + e.message); }`;
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['--max-old-space-size=256', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, `rc ${r.status} signal ${r.signal}\n${r.stderr.slice(-2000)}`);
    assert.equal(r.stdout.trim(), 'TemplateError: chat template "{% for i in range(100000000) %}x{% endfor %}": exceeded the limit of 100000 range() items (range of 100000000)');
    assert.ok(performance.now() - t0 < 10_000);
  });

  test('the range cap is jinja2.sandbox.MAX_RANGE: 100000 items render, 100001 do not', () => {
    assert.equal(DEFAULT_TEMPLATE_LIMITS.maxItems, 100_000);
    assert.equal(render('{{ range(100000)|length }}'), '100000');
    throwsLimit('{{ range(0, 200002, 2)|length }}', 'the limit of 100000 range() items (range of 100001)');
  });

  test('a time budget stops loops that each stay under the range cap', () => {
    const t0 = performance.now();
    throwsLimit('{% for i in range(300) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}', 'the time limit of 50 ms', { timeMs: 50 });
    assert.ok(performance.now() - t0 < 1000);
  });

  test('strings and lists built by doubling stop at their caps', () => {
    throwsLimit("{% set ns = namespace(s='x') %}{% for i in range(25) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
      'the size limit of 16777216 characters (a string of 33554432)');
    throwsLimit('{% set ns = namespace(a=[1]) %}{% for i in range(18) %}{% set ns.a = ns.a + ns.a %}{% endfor %}{{ ns.a|length }}',
      'the limit of 100000 list items (a list of 131072)');
    throwsLimit("{{ 'abcd' ~ 'efghij' }}", 'the size limit of 8 characters (a string of 10)', { maxChars: 8 });
  });

  test('the globals still behave: range forms, strftime_now, raise_exception, namespace', () => {
    assert.equal(render("{{ range(3)|join(',') }} {{ range(1, 10, 3)|join(',') }} {{ range(5, 0, -2)|join(',') }} {{ range(3, 1)|length }}"), '0,1,2 1,4,7 5,3,1 0');
    assert.equal(render("{{ strftime_now('%Y') }}"), String(new Date().getFullYear()));
    assert.throws(() => render("{{ raise_exception('roles must alternate') }}"), (e: Error) => e instanceof TemplateError && !(e instanceof TemplateLimitError) && e.message === 'roles must alternate');
    assert.equal(render("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }} {{ True and not none }}"), '1 true');
  });
});
