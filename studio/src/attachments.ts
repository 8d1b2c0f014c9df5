// Files as context for a chat message: text files (text, markdown, code, JSON, CSV) read in the
// browser, each wrapped with its name so the model knows which is which; what cannot go in as text
// (images for this text-only server, PDFs, binaries) is refused with a reason, never dropped quietly.

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
  if (/\.pdf$/i.test(file.name)) return { name: file.name, error: 'PDF text extraction is not available; paste the text instead' };
  const text = await file.text();
  if (text.includes('\u0000')) return { name: file.name, error: 'this looks like a binary file, not text' };
  return { name: file.name, block: `<file name="${file.name.replace(/"/g, "'")}">\n${text}\n</file>\n`, tokens: null };
}

/** The user message with its attachments first. */
export const withAttachments = (text: string, files: Attachment[]): string => files.map((f) => f.block).join('') + text;
