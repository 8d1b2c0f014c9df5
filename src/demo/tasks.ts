// The demo's synthetic tasks: small exact-answer problems a tiny model can learn in a minute
// (addition, string reversal, letter sorting, a lookup table), as pretraining text and as chat.

export interface Task {
  question: string;
  answer: string;
  /** the same fact as a line of plain text, for pretraining */
  text: string;
}

const CAPITALS: [string, string][] = [
  ['Zorba', 'Quell'], ['Vantor', 'Miro'], ['Ostia', 'Pell'], ['Karn', 'Dova'], ['Lumen', 'Sair'], ['Brisk', 'Tova'],
  ['Corvin', 'Esk'], ['Dalmar', 'Rhea'], ['Fenn', 'Ulm'], ['Gorse', 'Wynn'], ['Hallow', 'Ixa'], ['Jorvik', 'Nel'],
];

/** A small seeded PRNG (mulberry32): the same seed gives the same tasks on every machine. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makeTasks(n: number, seed: number): Task[] {
  const r = rng(seed);
  const int = (k: number): number => Math.floor(r() * k);
  const word = (): string => Array.from({ length: 3 + int(3) }, () => String.fromCharCode(97 + int(8))).join('');
  return Array.from({ length: n }, (_, i): Task => {
    switch (i % 4) {
      case 0: {
        const [a, b] = [int(50), int(50)];
        return { question: `What is ${a}+${b}?`, answer: String(a + b), text: `${a}+${b}=${a + b}` };
      }
      case 1: {
        const w = word();
        const rev = [...w].reverse().join('');
        return { question: `Reverse: ${w}`, answer: rev, text: `reverse ${w} = ${rev}` };
      }
      case 2: {
        const w = word();
        const sorted = [...w].sort().join('');
        return { question: `Sort: ${w}`, answer: sorted, text: `sort ${w} = ${sorted}` };
      }
      default: {
        const [country, capital] = CAPITALS[int(CAPITALS.length)];
        return { question: `Capital of ${country}?`, answer: capital, text: `the capital of ${country} is ${capital}` };
      }
    }
  });
}
