// Who may talk to a Studio: the browser tab it opened, not a web page on another site. Host must be
// the address the Studio listens on or a loopback name (a DNS-rebinding page sends its own host
// name), and an Origin, when sent, must be that same host (a cross-site fetch or form carries its
// site's). The --token check is the server's Bearer check (ServeOptions.apiKey).
import type { IncomingMessage } from 'node:http';
import { ApiError } from './errors.js';

export interface StudioGuardOptions {
  /** the host names and host:port values requests may address besides loopback ('*': any, for a 0.0.0.0 bind, which --token protects) */
  allowedHosts: ReadonlySet<string>;
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

/** The Host header without its port: `127.0.0.1:7860` -> `127.0.0.1`, `[::1]:80` -> `[::1]`. */
function hostName(host: string): string {
  return host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0];
}

function hostAllowed(host: string, allowed: ReadonlySet<string>): boolean {
  const name = hostName(host.toLowerCase());
  return allowed.has('*') || LOOPBACK_NAMES.has(name) || allowed.has(name) || allowed.has(host.toLowerCase());
}

/** 403 for a request addressed to another host name or sent from another origin. */
export function checkHostAndOrigin(req: IncomingMessage, o: StudioGuardOptions): void {
  const host = req.headers.host;
  if (!host || !hostAllowed(host, o.allowedHosts)) {
    throw new ApiError(403, `Host '${host ?? ''}' is not this Studio's address; open the URL kestrel studio printed`, null, 'bad_host');
  }
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${host}`) {
    throw new ApiError(403, `cross-origin request from '${origin}' refused: the Studio answers only pages it served (http://${host})`, null, 'bad_origin');
  }
}
