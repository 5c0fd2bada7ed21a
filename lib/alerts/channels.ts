// The two ways a notice leaves: an HTTP POST of JSON (Slack-compatible) and an e-mail over SMTP
// (nodemailer). One attempt each, bounded by the configured timeout; the caller retries.
import { createTransport } from 'nodemailer';
import type { AlertsConfig } from '../config';
import { emailContent, webhookPayload } from './format';
import type { AlertChannel, AlertNotice } from './types';

export function configuredChannels(config: AlertsConfig): AlertChannel[] {
  return [...(config.webhook ? (['webhook'] as const) : []), ...(config.email ? (['email'] as const) : [])];
}

/** Sends one notice on one channel; throws when it was not accepted. */
export async function sendNotice(config: AlertsConfig, channel: AlertChannel, notice: AlertNotice): Promise<void> {
  if (channel === 'webhook') return postWebhook(config, notice);
  return sendEmail(config, notice);
}

async function postWebhook(config: AlertsConfig, notice: AlertNotice): Promise<void> {
  const { url, headers } = config.webhook!;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'tenantsafe', 'x-tenantsafe-notice': notice.noticeId, ...headers },
      body: JSON.stringify(webhookPayload(notice)),
      signal: AbortSignal.timeout(config.timeoutMs),
      redirect: 'error',
    });
  } catch (err) {
    // never the URL: a webhook's URL is its secret
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const why = e.name === 'TimeoutError' ? `no answer within ${config.timeoutMs} ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
    throw new Error(`webhook not reached: ${why}`);
  }
  const body = await res.text().catch(() => '');
  if (!res.ok) throw new Error(`webhook answered ${res.status} ${res.statusText}${body ? `: ${body.slice(0, 200)}` : ''}`);
}

async function sendEmail(config: AlertsConfig, notice: AlertNotice): Promise<void> {
  const { smtp, from, to } = config.email!;
  const transport = createTransport({
    host: smtp.host,
    port: smtp.port,
    secure: smtp.secure,
    ...(smtp.user !== undefined ? { auth: { user: smtp.user, pass: smtp.password ?? '' } } : {}),
    connectionTimeout: config.timeoutMs,
    greetingTimeout: config.timeoutMs,
    socketTimeout: config.timeoutMs,
  });
  const mail = emailContent(notice);
  try {
    await transport.sendMail({
      from,
      to,
      subject: mail.subject,
      text: mail.text,
      messageId: mail.messageId,
      ...(mail.inReplyTo ? { inReplyTo: mail.inReplyTo, references: [mail.inReplyTo] } : {}),
      headers: { 'X-Tenantsafe-Notice': notice.noticeId, 'X-Tenantsafe-Alert': notice.alertKey },
    });
  } finally {
    transport.close();
  }
}
