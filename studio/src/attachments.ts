// Files as context for a chat message: text files (text, markdown, code, JSON, CSV) read in the
// browser (a PDF's text layer through pdf.js), each wrapped with its name so the model knows which is
// which; what cannot go in as text (images for this text-only server, scanned PDFs without text,
// binaries) is refused with a reason, never dropped quietly.
import { pdfPages } from './pdf_text.ts';

export interface Attachment {
  name: string;
  /** the block that goes into the prompt: the file's text inside <file name="..."> tags */
  block: string;
  /** tokens of the block (null until the server counted them) */
  tokens: number | null;
}

const IMAGE = /\.(png|jpe?g|gif|webp|bmp)$/i;

/** The prompt block of a file, or a reason it cannot be one. */
export async function readAttachment(file: File): Promise<Attachment | { name: string; error: string }> {
  if (IMAGE.test(file.name) || file.type.startsWith('image/')) return { name: file.name, error: 'images need a model that takes them; the models served here read text only' };
  const named = (text: string): Attachment => ({ name: file.name, block: `<file name="${file.name.replace(/"/g, "'")}">\n${text}\n</file>\n`, tokens: null });
  if (/\.pdf$/i.test(file.name) || file.type === 'application/pdf') {
    let pages: string[];
    try {
      pages = await pdfPages(await file.arrayBuffer());
    } catch (e) {
      return { name: file.name, error: `cannot read this PDF: ${(e as Error).message}` };
    }
    if (!pages.some((p) => p)) return { name: file.name, error: 'this PDF has no text layer (a scan?); the models served here read text only' };
    return named(pages.join('\n\n'));
  }
  const text = await file.text();
  if (text.includes('\u0000')) return { name: file.name, error: 'this looks like a binary file, not text' };
  return named(text);
}

/** The user message with its attachments first. */
export const withAttachments = (text: string, files: Attachment[]): string => files.map((f) => f.block).join('') + text;
