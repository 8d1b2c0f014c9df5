// A PDF's text for the chat's files-as-context, extracted in the browser by Mozilla's pdf.js
// (pdfjs-dist, loaded only when a PDF is attached, so the app's first load does not carry it; its
// worker is a file of the build that Vite names by URL).
// Pages are joined in order, each line break pdf.js marks kept; a PDF with no text layer (a scan)
// yields no text, which the caller reports instead of attaching an empty file.

import workerUrl from 'pdfjs-dist/build/pdf.worker.min.mjs?url';

/** The text of each page of the PDF in `data`, in order. */
export async function pdfPages(data: ArrayBuffer): Promise<string[]> {
  const pdfjs = await import('pdfjs-dist');
  pdfjs.GlobalWorkerOptions.workerSrc = workerUrl;
  const doc = await pdfjs.getDocument({ data: new Uint8Array(data), isEvalSupported: false }).promise;
  try {
    const pages: string[] = [];
    for (let i = 1; i <= doc.numPages; i++) {
      const content = await (await doc.getPage(i)).getTextContent();
      pages.push(content.items.map((it) => ('str' in it ? it.str + (it.hasEOL ? '\n' : '') : '')).join('').trim());
    }
    return pages;
  } finally {
    await doc.destroy();
  }
}
