/**
 * Responses the relay makes itself: status from the error table, `x-burrow-error: <CODE>`,
 * a short HTML page for browsers or JSON when the client asks for application/json.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ERRORS, type ErrorCode } from '@burrow/protocol';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ESCAPES[c] as string);

export function wantsJson(accept: string | undefined): boolean {
  return accept?.includes('application/json') === true;
}

export interface ErrorBody {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

export function renderError(code: ErrorCode, detail: string | undefined, json: boolean): ErrorBody {
  const spec = ERRORS[code];
  const status = spec.status === 499 ? 502 : spec.status;
  const message = detail ?? spec.title;
  if (json) {
    return {
      status,
      contentType: 'application/json; charset=utf-8',
      body: Buffer.from(JSON.stringify({ error: { code, status, title: spec.title, message } })),
    };
  }
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${status} ${escapeHtml(spec.title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}code{background:#f3f3f3;padding:.1em .3em}</style></head>
<body><h1>${status} ${escapeHtml(spec.title)}</h1><p>${escapeHtml(message)}</p><p><small>burrow relay · <code>${code}</code></small></p></body></html>
`;
  return { status, contentType: 'text/html; charset=utf-8', body: Buffer.from(html) };
}

/** Answers on a ServerResponse whose head has not been sent. */
export function sendError(
  req: IncomingMessage,
  res: ServerResponse,
  code: ErrorCode,
  detail?: string,
  closeConnection = false,
  extraHeaders?: Readonly<Record<string, string>>,
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const e = renderError(code, detail, wantsJson(req.headers.accept));
  const headers: Record<string, string | number> = {
    'content-type': e.contentType,
    'content-length': e.body.length,
    'cache-control': 'no-store',
    'x-burrow-error': code,
  };
  if (closeConnection) {
    headers.connection = 'close';
    // Read by buildRelay: requests pipelined behind this one are not processed.
    res.shouldKeepAlive = false;
  }
  if (extraHeaders !== undefined) Object.assign(headers, extraHeaders);
  res.writeHead(e.status, headers);
  res.end(req.method === 'HEAD' ? undefined : e.body);
}

/** The same answer as raw HTTP/1.1 bytes, for sockets taken over by an upgrade. */
export function rawErrorResponse(
  code: ErrorCode,
  detail: string | undefined,
  accept: string | undefined,
  extraHeaders?: Readonly<Record<string, string>>,
): Buffer {
  const e = renderError(code, detail, wantsJson(accept));
  let extra = '';
  for (const [name, value] of Object.entries(extraHeaders ?? {})) extra += `${name}: ${value}\r\n`;
  const head =
    `HTTP/1.1 ${e.status} ${ERRORS[code].title}\r\n` +
    `Content-Type: ${e.contentType}\r\nContent-Length: ${e.body.length}\r\nCache-Control: no-store\r\n` +
    `x-burrow-error: ${code}\r\n${extra}Connection: close\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), e.body]);
}
