// Reading a byte range of an open file into memory that already exists (a typed array, a storage
// block): the one loop both the reference backend and the safetensors reader use, since one
// readSync may return fewer bytes than asked.
import { readSync } from 'node:fs';

/**
 * Fills dst with the bytes at `position` of fd; a file that ends first is an error giving the offset.
 * @example readFully(fd, new Uint8Array(8), 0) // a safetensors header length
 */
export function readFully(fd: number, dst: Uint8Array, position: number): void {
  let done = 0;
  while (done < dst.length) {
    const n = readSync(fd, dst, done, dst.length - done, position + done);
    if (n === 0) throw new Error(`unexpected end of file at offset ${position + done} (${dst.length - done} of ${dst.length} bytes missing)`);
    done += n;
  }
}
