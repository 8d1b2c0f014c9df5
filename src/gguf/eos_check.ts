// The most common broken export: an EOS token that is not what the chat template ends a reply
// with (e.g. EOS </s> while the template closes turns with <|im_end|>), so llama.cpp and Ollama
// never stop. The check renders one user/assistant exchange and finds the special token that
// follows the assistant's text.
import type { Tokenizer } from '../tokenizer/tokenizer.js';

export interface EosCheck {
  /** the EOS token agrees with the template (or there is no template to disagree with) */
  ok: boolean;
  /** the token the template closes an assistant turn with, when it is a special token */
  endOfTurn: { token: string; id: number } | null;
  message: string;
}

const REPLY = 'Kestrel-EOS-check-reply';

/**
 * Compares the tokenizer's EOS with the token after an assistant reply in its chat template.
 * `stopIds` are the other ids generation stops at (generation_config.json's eos_token_id).
 * @example checkEos(tok, []).message // "EOS '<|im_end|>' (id 2) ends the assistant turn in the chat template"
 */
export function checkEos(tok: Tokenizer, stopIds: readonly number[]): EosCheck {
  const eos = tok.eosToken, eosId = tok.eosTokenId;
  if (tok.chatTemplate() === undefined) return { ok: true, endOfTurn: null, message: `no chat template; EOS ${JSON.stringify(eos)} not checked against one` };
  let text: string;
  try {
    text = tok.applyChatTemplate([{ role: 'user', content: 'Hi' }, { role: 'assistant', content: REPLY }]);
  } catch (e) {
    return { ok: false, endOfTurn: null, message: `the chat template did not render a user/assistant exchange (${(e as Error).message}); EOS not checked` };
  }
  const at = text.indexOf(REPLY);
  const after = at < 0 ? '' : text.slice(at + REPLY.length);
  // special: a role token (eos_token, ...) or an added token marked special (<|im_end|>, <end_of_turn>)
  const special = new Set(tok.allSpecialTokens);
  const isSpecial = (id: number): boolean => tok.addedTokens.get(id)?.special === true || special.has(tok.convertIdsToTokens([id])[0] ?? '');
  const first = tok.encode(after, { addSpecialTokens: false }).find(isSpecial);
  if (first === undefined) {
    return { ok: false, endOfTurn: null, message: `the chat template closes an assistant reply with ${JSON.stringify(after.slice(0, 40))}, no special token; llama.cpp will stop only at EOS ${JSON.stringify(eos)}, which the template never writes` };
  }
  const token = tok.convertIdsToTokens([first])[0]!;
  if (first === eosId) return { ok: true, endOfTurn: { token, id: first }, message: `EOS ${JSON.stringify(eos)} (id ${eosId}) ends the assistant turn in the chat template` };
  const known = stopIds.includes(first) ? ` (generation_config.json's eos_token_id lists it)` : '';
  return {
    ok: stopIds.includes(first), endOfTurn: { token, id: first },
    message: `EOS is ${JSON.stringify(eos)} (id ${eosId}) but the chat template ends an assistant turn with ${JSON.stringify(token)} (id ${first})${known}; written as tokenizer.ggml.eot_token_id so llama.cpp stops there too`,
  };
}
