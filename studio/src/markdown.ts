// Assistant text as HTML: marked renders the markdown, highlight.js colours fenced code (a small
// set of common languages keeps the bundle small), DOMPurify removes anything a model could inject.
import DOMPurify from 'dompurify';
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import javascript from 'highlight.js/lib/languages/javascript';
import json from 'highlight.js/lib/languages/json';
import python from 'highlight.js/lib/languages/python';
import typescript from 'highlight.js/lib/languages/typescript';
import { Marked } from 'marked';

for (const [name, lang] of Object.entries({ bash, javascript, json, python, typescript })) hljs.registerLanguage(name, lang);

const marked = new Marked({
  gfm: true,
  renderer: {
    code({ text, lang }) {
      const known = lang && hljs.getLanguage(lang);
      const html = known ? hljs.highlight(text, { language: lang }).value : hljs.highlightAuto(text).value;
      return `<pre><code class="hljs">${html}</code></pre>`;
    },
  },
});

/** Sanitized HTML for a (possibly half-streamed) markdown text. */
export function renderMarkdown(text: string): string {
  return DOMPurify.sanitize(marked.parse(text, { async: false }));
}
