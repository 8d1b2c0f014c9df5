// Built-in chat templates for checkpoints that ship none, written from the public descriptions of
// each prompt format (ChatML, Llama 3 headers, Llama 2 [INST]/<<SYS>>, Mistral [INST], Gemma turns,
// Phi-3 <|role|>...<|end|>, Zephyr <|role|>...</s>, Alpaca "### Instruction:"). Each renders what
// the model's own Hub template renders for plain system/user/assistant conversations (see
// test/tokenizer/chat_templates.test.ts). Special tokens come from the tokenizer (bos_token, eos_token).

/** ChatML (Qwen, SmolLM, Hermes, ...): <|im_start|>role\ncontent<|im_end|>\n; no implicit system prompt. */
const chatml =
  "{%- for message in messages -%}" +
  "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

/** Llama 3 Instruct: header tokens around the role, content trimmed, <|eot_id|> after each turn. */
const llama3 =
  "{{- bos_token -}}" +
  "{%- for message in messages -%}" +
  "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' -}}" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}";

/** Llama 2 Chat: each user turn is bos [INST] ... [/INST], the system prompt sits in <<SYS>> inside the first one. */
const llama2 =
  "{%- if messages[0]['role'] == 'system' -%}" +
  "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}" +
  "{%- else -%}{%- set system = none -%}{%- set turns = messages -%}{%- endif -%}" +
  "{%- for message in turns -%}" +
  "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}" +
  "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}" +
  "{%- endif -%}" +
  "{%- if message['role'] == 'user' -%}" +
  "{%- if loop.first and system is not none -%}" +
  "{%- set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + message['content'] -%}" +
  "{%- else -%}{%- set content = message['content'] -%}{%- endif -%}" +
  "{{- bos_token + '[INST] ' + content | trim + ' [/INST]' -}}" +
  "{%- else -%}" +
  "{{- ' ' + message['content'] | trim + ' ' + eos_token -}}" +
  "{%- endif -%}" +
  "{%- endfor -%}";

/** Mistral Instruct (v0.1 layout): bos, then " [INST] ... [/INST]" turns; a system prompt leads the first user turn. */
const mistral =
  "{%- if messages[0]['role'] == 'system' -%}" +
  "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}" +
  "{%- else -%}{%- set system = none -%}{%- set turns = messages -%}{%- endif -%}" +
  "{{- bos_token -}}" +
  "{%- for message in turns -%}" +
  "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}" +
  "{{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') -}}" +
  "{%- endif -%}" +
  "{%- if message['role'] == 'user' -%}" +
  "{%- if loop.first and system is not none -%}" +
  "{{- ' [INST] ' + system + '\\n\\n' + message['content'] + ' [/INST]' -}}" +
  "{%- else -%}{{- ' [INST] ' + message['content'] + ' [/INST]' -}}{%- endif -%}" +
  "{%- else -%}" +
  "{{- ' ' + message['content'] + eos_token -}}" +
  "{%- endif -%}" +
  "{%- endfor -%}";

/**
 * Gemma instruction-tuned: <start_of_turn>user|model ... <end_of_turn>. Gemma has no system role;
 * like Gemma 3's template, a system prompt is folded into the first user turn (Gemma 1/2's raise).
 */
const gemma =
  "{{- bos_token -}}" +
  "{%- if messages[0]['role'] == 'system' -%}" +
  "{%- set system = messages[0]['content'] | trim + '\\n\\n' -%}{%- set turns = messages[1:] -%}" +
  "{%- else -%}{%- set system = '' -%}{%- set turns = messages -%}{%- endif -%}" +
  "{%- for message in turns -%}" +
  "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}" +
  "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}" +
  "{%- endif -%}" +
  "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}" +
  "{%- set prefix = system if loop.first else '' -%}" +
  "{{- '<start_of_turn>' + role + '\\n' + prefix + message['content'] | trim + '<end_of_turn>\\n' -}}" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}";

/** Phi-3: <|role|>\ncontent<|end|>\n per message; the eos token closes a conversation without a generation prompt. */
const phi3 =
  "{%- for message in messages -%}" +
  "{%- if message['role'] in ['system', 'user', 'assistant'] -%}" +
  "{{- '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' -}}" +
  "{%- endif -%}" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- else -%}{{- eos_token -}}{%- endif -%}";

/** Zephyr (and TinyLlama-Chat): <|role|>\ncontent</s>\n per message. */
const zephyr =
  "{%- for message in messages -%}" +
  "{{- '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' -}}" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}";

/** Alpaca: a system preamble (the Stanford Alpaca one unless given), then ### Instruction / ### Response blocks. */
const alpaca =
  "{%- if messages[0]['role'] == 'system' -%}" +
  "{{- messages[0]['content'] + '\\n\\n' -}}{%- set turns = messages[1:] -%}" +
  "{%- else -%}" +
  "{{- 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\\n\\n' -}}" +
  "{%- set turns = messages -%}" +
  "{%- endif -%}" +
  "{%- for message in turns -%}" +
  "{%- if message['role'] == 'user' -%}{{- '### Instruction:\\n' + message['content'] + '\\n\\n' -}}" +
  "{%- elif message['role'] == 'assistant' -%}{{- '### Response:\\n' + message['content'] + eos_token + '\\n\\n' -}}" +
  "{%- endif -%}" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}{{- '### Response:\\n' -}}{%- endif -%}";

/** The built-in templates by name (Jinja source; pass a name as `template` to applyChatTemplate). */
export const BUILTIN_TEMPLATES = { chatml, llama3, llama2, mistral, gemma, phi3, zephyr, alpaca } as const;

export type BuiltinTemplateName = keyof typeof BUILTIN_TEMPLATES;
