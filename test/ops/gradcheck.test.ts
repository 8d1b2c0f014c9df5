// Every differentiable op's backward (the table in cases.ts) against central finite differences in float64 on the
// reference backend (STYLE.md: eps 1e-6, atol 1e-5, rtol 1e-3). Domains avoid kinks and ties.
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { gradcheck, refLeaf } from '../helpers.js';
import { cases } from './cases.js';

k.setDefaultBackend('ref');
describe('gradcheck (reference backend, float64)', () => {
  for (const c of cases) {
    test(c.name, () => {
      k.tidy(() => {
        const inputs = c.shapes.map((s, i) => refLeaf(s, 17 + 31 * i, c.lo ?? -1, c.hi ?? 1));
        gradcheck(c.f, inputs, { what: c.name });
      });
    });
  }
});

