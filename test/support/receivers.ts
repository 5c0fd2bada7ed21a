// Real receivers for the pushed alerts: an HTTP server that records every request (and can answer
// the first N with 503, or not listen at all until told to), and an SMTP server (the smtp-server
// package) that keeps every mail it accepts (and can refuse the first N with a temporary error).
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface WebhookRequest {
  headers: http.IncomingHttpHeaders;
  body: any;
}

export interface WebhookReceiver {
  url: string;
  /** the requests it accepted (2xx) */
  received: WebhookRequest[];
  /** every request that reached it, accepted or not */
  attempts: number;
  /** answer the next n requests with 503 */
  failNext(n: number): void;
  /** start listening (when created with listening: false) */
  listen(): Promise<void>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(opts: { failFirst?: number; listening?: boolean; path?: string } = {}): Promise<WebhookReceiver> {
  let failing = opts.failFirst ?? 0;
  const received: WebhookRequest[] = [];
  const state = { attempts: 0 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      state.attempts++;
      if (failing > 0) {
        failing--;
        res.writeHead(503, { 'content-type': 'text/plain' }).end('try later');
        return;
      }
      received.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  // a port of our own, released again when the receiver starts "down"
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  let listening = true;
  if (opts.listening === false) {
    await new Promise((resolve) => server.close(resolve));
    listening = false;
  }
  return {
    url: `http://127.0.0.1:${port}${opts.path ?? '/hooks/T000/B000/secret-hook-path'}`,
    received,
    get attempts() {
      return state.attempts;
    },
    failNext(n: number) {
      failing = n;
    },
    async listen() {
      if (listening) return;
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
      listening = true;
    },
    async close() {
      if (!listening) return;
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      listening = false;
    },
  };
}

export interface ReceivedMail {
  from: string;
  to: string[];
  /** headers, lower-case names, unfolded */
  headers: Record<string, string>;
  subject: string;
  body: string;
  raw: string;
}

export interface SmtpReceiver {
  host: string;
  port: number;
  received: ReceivedMail[];
  attempts: number;
  /** refuse the next n mails with 451 (a temporary failure) */
  failNext(n: number): void;
  /** the user and password it insists on, when given */
  auth?: { user: string; password: string };
  close(): Promise<void>;
}

function parseMail(raw: string): { headers: Record<string, string>; body: string } {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const headers: Record<string, string> = {};
  for (const line of head.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = raw.slice(split + 4);
  if (/quoted-printable/i.test(headers['content-transfer-encoding'] ?? '')) {
    body = Buffer.from(body.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
  } else if (/base64/i.test(headers['content-transfer-encoding'] ?? '')) {
    body = Buffer.from(body, 'base64').toString('utf8');
  }
  return { headers, body };
}

/** An encoded-word subject (=?UTF-8?Q?...?=) back to text. */
function decodeSubject(s: string): string {
  return s.replace(/=\?UTF-8\?([QB])\?([^?]*)\?=\s*/gi, (_, enc: string, text: string) =>
    enc.toUpperCase() === 'B' ? Buffer.from(text, 'base64').toString('utf8') : Buffer.from(text.replace(/_/g, ' ').replace(/=([0-9A-F]{2})/gi, (__, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8'),
  );
}

export async function startSmtpReceiver(opts: { failFirst?: number; auth?: { user: string; password: string } } = {}): Promise<SmtpReceiver> {
  let failing = opts.failFirst ?? 0;
  const received: ReceivedMail[] = [];
  const state = { attempts: 0 };
  const server = new SMTPServer({
    disabledCommands: opts.auth ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
    authOptional: !opts.auth,
    allowInsecureAuth: true,
    logger: false,
    onAuth(auth, _session, callback) {
      if (opts.auth && auth.username === opts.auth.user && auth.password === opts.auth.password) callback(null, { user: auth.username });
      else callback(new Error('Invalid username or password'));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        state.attempts++;
        if (failing > 0) {
          failing--;
          const err = new Error('try again later') as Error & { responseCode: number };
          err.responseCode = 451;
          callback(err);
          return;
        }
        const raw = Buffer.concat(chunks).toString('utf8');
        const { headers, body } = parseMail(raw);
        received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          headers,
          subject: decodeSubject(headers.subject ?? ''),
          body,
          raw,
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    received,
    get attempts() {
      return state.attempts;
    },
    failNext(n: number) {
      failing = n;
    },
    auth: opts.auth,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
