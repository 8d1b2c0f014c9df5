// The line a failing chat template fails at. @huggingface/jinja's errors carry no position, so the
// line is found by rendering growing prefixes of the template: the first prefix (whole lines) that
// fails with the same message as the whole template holds the fault. An unclosed `{% for %}` thus
// points at its opening line, a bad expression or a raise_exception(...) at its own line.
import { type ChatMessage, type ChatTemplateOptions, renderChatTemplate } from './chat_template.js';

export interface TemplateFailure {
  message: string;
  /** 1-based line of the template (the last line when only the whole template fails so) */
  line: number;
}

function failure(template: string, messages: readonly ChatMessage[], options: ChatTemplateOptions): string | null {
  try {
    renderChatTemplate(messages, { ...options, template });
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Renders the template; returns null when it renders, else its error and the line.
 * @example templateFailure('a\n{{ x( }}', msgs, {}) // { message: 'Unexpected token: CloseExpression', line: 2 }
 */
export function templateFailure(template: string, messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): TemplateFailure | null {
  const message = failure(template, messages, options);
  if (message === null) return null;
  const lines = template.split('\n');
  for (let n = 1; n < lines.length; n++) {
    if (failure(lines.slice(0, n).join('\n'), messages, options) === message) return { message, line: n };
  }
  return { message, line: lines.length };
}
