// `kestrel chat --model DIR`: an interactive conversation rendered with the model's chat
// template (or the detected built-in one), streamed token by token. /reset, /system TEXT, /exit.
import { createInterface } from 'node:readline';
import { tensor } from '../ops/creation.js';
import { type ChatMessage, BUILTIN_TEMPLATES, renderChat } from '../tokenizer/index.js';
import { MODEL_OPTIONS, generationFlags, loadFromFlags } from './model_args.js';
import { parseFlags } from './flags.js';

export async function chatCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { ...MODEL_OPTIONS, system: { type: 'string' }, template: { type: 'string' } });
  if (values.template && !(values.template in BUILTIN_TEMPLATES))
    throw new Error(`--template must be one of ${Object.keys(BUILTIN_TEMPLATES).join(', ')}`);
  const p = await loadFromFlags(values);
  const { model, tokenizer } = p;
  if (!tokenizer) throw new Error(`${values.model} has no tokenizer; chat needs one (--tokenizer DIR)`);
  const flags = generationFlags(values, p);
  const opts = { ...flags, maxNewTokens: flags.maxNewTokens ?? 256 };
  let system = values.system ?? null;
  let history: ChatMessage[] = [];
  const rl = createInterface({ input: process.stdin, terminal: false });
  process.stdout.write('kestrel chat — /system TEXT sets the system prompt, /reset clears the conversation, /exit quits\n');
  const prompt = (): boolean => process.stdout.write('> ');
  prompt();
  try {
    // the line iterator buffers input typed (or piped) while a reply is being generated
    for await (const raw of rl) {
      const line = raw.trim();
      if (!line) {
        prompt();
        continue;
      }
      if (line === '/exit' || line === '/quit') break;
      if (line === '/reset') {
        history = [];
        process.stdout.write('(conversation cleared)\n');
        prompt();
        continue;
      }
      if (line.startsWith('/system')) {
        system = line.slice('/system'.length).trim() || null;
        history = [];
        process.stdout.write(system ? `(system prompt set; conversation cleared)\n` : '(system prompt removed)\n');
        prompt();
        continue;
      }
      history.push({ role: 'user', content: line });
      const messages: ChatMessage[] = system ? [{ role: 'system', content: system }, ...history] : history;
      const text = renderChat(tokenizer, model.config.modelType, messages, { template: values.template });
      const ids = tensor([tokenizer.encode(text, { addSpecialTokens: false })], { dtype: 'int64' });
      const reply: number[] = [];
      let printed = '';
      for await (const { tokens } of model.stream(ids, opts)) {
        if (opts.eosTokenId && (opts.eosTokenId as number[]).includes(tokens[0])) break;
        reply.push(tokens[0]);
        const text = tokenizer.decode(reply, { skipSpecialTokens: true });
        process.stdout.write(text.slice(printed.length));
        printed = text;
      }
      process.stdout.write('\n');
      ids.dispose();
      history.push({ role: 'assistant', content: printed.trim() });
      prompt();
    }
  } finally {
    rl.close();
    model.dispose();
  }
  return 0;
}
