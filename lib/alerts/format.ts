// How a notice reads on each channel: a JSON body Slack incoming webhooks accept (`text` as the
// fallback line, `blocks` for the layout, and the alert's fields under `tenantsafe` for any other
// receiver), and a plain-text e-mail. Also what makes an error message safe to send.
import type { AlertKind, AlertNotice, AlertRunRef } from './types';

const kindTitles: Record<AlertKind, (n: { database: string; tenantId?: string; backupId?: string }) => string> = {
  tenantBackup: (n) => `Tenant backup of ${n.tenantId} (${n.database})`,
  tenantBackupsAll: (n) => `Tenant backups of ${n.database}`,
  fullBackup: (n) => `Full backup of ${n.database}`,
  verifyBackup: (n) => `Verification of backup ${n.backupId} (${n.database})`,
  verifyRecentBackups: (n) => `Scheduled verification of ${n.database}`,
  walArchiver: (n) => `WAL archiving of ${n.database}`,
  changeLog: (n) => `Change log of ${n.database}`,
  tenantRestore: (n) => `Restore of tenant ${n.tenantId} (${n.database})`,
  applyRetention: (n) => `Retention of ${n.database}`,
  drDrill: (n) => `DR drill of ${n.database}`,
};

export function alertTitle(kind: AlertKind, n: { database: string; tenantId?: string; backupId?: string }): string {
  return kindTitles[kind](n);
}

/** The run in the Temporal Web UI. */
export function runUrl(uiUrl: string, namespace: string, workflowId: string, runId: string): string {
  return `${uiUrl}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}/${encodeURIComponent(runId)}/history`;
}

const maxMessage = 1500;

/**
 * An error message fit to leave the system: the secrets of the config (passwords, tokens, webhook
 * URLs) and URL credentials masked, values PostgreSQL may quote from a row (`Key (..)=(..)`,
 * `Failing row contains (..)`, DETAIL lines) cut, and at most 1500 characters.
 */
export function sanitizeMessage(message: string, secrets: string[]): string {
  let m = message;
  for (const secret of secrets.filter((s) => s.length >= 4).sort((a, b) => b.length - a.length)) m = m.split(secret).join('***');
  m = m
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:@/\s]+):[^@/\s]*@/gi, '$1:***@')
    .replace(/\b(password|passwd|pwd|token|secret)(\s*[=:]\s*)("[^"]*"|'[^']*'|\S+)/gi, '$1$2***')
    .replace(/\b(Key \([^)]*\))=\((?:[^()]|\([^()]*\))*\)/g, '$1=(…)')
    .replace(/Failing row contains \((?:[^()]|\([^()]*\))*\)/g, 'Failing row contains (…)')
    .replace(/\n?DETAIL:[^\n]*/g, '');
  return m.length > maxMessage ? m.slice(0, maxMessage - 1) + '…' : m;
}

function headline(n: AlertNotice): string {
  if (n.event === 'resolved') return `RESOLVED: ${n.title} succeeded again`;
  if (n.summary) return `FAILING: ${n.title}: ${n.summary.failed} of ${n.summary.total} failed`;
  return `FAILING: ${n.title} failed`;
}

/** The one line that stands for the notice (Slack's `text`, the e-mail's subject). */
export function noticeLine(n: AlertNotice): string {
  const error = n.event === 'failing' && n.error && !n.summary ? `: ${n.error.type ? `${n.error.type}: ` : ''}${firstLine(n.error.message, 200)}` : '';
  return `${headline(n)}${error}`;
}

function firstLine(s: string, max: number): string {
  const line = s.split('\n')[0];
  return line.length > max ? line.slice(0, max - 1) + '…' : line;
}

/** The facts of a notice, label → value, in the order people read them. */
function facts(n: AlertNotice): [string, string][] {
  const out: [string, string][] = [
    ['Alert', n.alertKey],
    ['Database', n.database],
  ];
  if (n.tenantId) out.push(['Tenant', n.tenantId]);
  if (n.backupId) out.push(['Backup', n.backupId]);
  out.push(['Workflow', `${n.run.workflowType} ${n.run.workflowId}`], ['Run', n.run.runId]);
  if (n.error?.type) out.push(['Error type', n.error.type]);
  out.push(['Failing since', n.openedAt]);
  if (n.event === 'resolved') out.push(['Resolved at', n.resolvedAt ?? ''], ['Failures while open', String(n.failures)]);
  return out;
}

function summaryLines(n: AlertNotice): string[] {
  if (!n.summary) return [];
  const shown = n.summary.items.map((i) => `${i.id}: ${i.type ? `${i.type}: ` : ''}${firstLine(i.error, 300)}`);
  const more = n.summary.failed - n.summary.items.length;
  return more > 0 ? [...shown, `… and ${more} more`] : shown;
}

/** Slack's mrkdwn treats &, < and > as control characters. */
const slackEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const slackCode = (s: string) => '```' + slackEscape(s).replace(/```/g, "'''") + '```';

/** The JSON body of the webhook. */
export function webhookPayload(n: AlertNotice): Record<string, unknown> {
  const line = noticeLine(n);
  const emoji = n.event === 'failing' ? ':rotating_light:' : ':white_check_mark:';
  const fields = facts(n).slice(0, 10).map(([label, value]) => ({ type: 'mrkdwn', text: `*${label}*\n${slackEscape(value).slice(0, 1900)}` }));
  const blocks: Record<string, unknown>[] = [
    { type: 'header', text: { type: 'plain_text', text: firstLine(headline(n), 150) } },
    { type: 'section', fields },
  ];
  if (n.event === 'failing' && n.error && !n.summary) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: slackCode(n.error.message).slice(0, 2900) } });
  const summary = summaryLines(n);
  if (n.event === 'failing' && summary.length) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: slackCode(summary.join('\n')).slice(0, 2900) } });
  const links = [n.run.url && `<${n.run.url}|Open the run in the Temporal Web UI>`, n.openedBy?.url && `<${n.openedBy.url}|the run that failed>`].filter(Boolean);
  if (links.length) blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: links.join(' · ') }] });
  return {
    text: `${emoji} ${slackEscape(line)}`,
    blocks,
    tenantsafe: {
      noticeId: n.noticeId,
      event: n.event,
      alertKey: n.alertKey,
      kind: n.kind,
      title: n.title,
      database: n.database,
      tenantId: n.tenantId ?? null,
      backupId: n.backupId ?? null,
      workflowId: n.run.workflowId,
      runId: n.run.runId,
      workflowType: n.run.workflowType,
      runUrl: n.run.url ?? null,
      openedBy: n.openedBy ?? null,
      errorType: n.error?.type ?? null,
      errorMessage: n.error?.message ?? null,
      summary: n.summary ?? null,
      openedAt: n.openedAt,
      resolvedAt: n.resolvedAt ?? null,
      failures: n.failures,
    },
  };
}

export interface EmailContent {
  subject: string;
  text: string;
  messageId: string;
  /** a resolved notice answers its failing one, so mail clients thread them */
  inReplyTo?: string;
}

/** The e-mail's Message-ID of a notice (stable: a resend is recognisably the same mail). */
export const messageIdOf = (noticeId: string) => `<${noticeId}@tenantsafe>`;

export function emailContent(n: AlertNotice): EmailContent {
  const width = Math.max(...facts(n).map(([label]) => label.length));
  const lines = [noticeLine(n), '', ...facts(n).map(([label, value]) => `${(label + ':').padEnd(width + 2)}${value}`)];
  if (n.event === 'failing' && n.error && !n.summary) lines.push('', 'Error:', n.error.message);
  const summary = summaryLines(n);
  if (n.event === 'failing' && summary.length) lines.push('', `Failures (${n.summary!.failed} of ${n.summary!.total}):`, ...summary.map((s) => `  ${s}`));
  const link = (label: string, r?: AlertRunRef) => (r?.url ? [`${label}: ${r.url}`] : []);
  const links = [...link('The run in the Temporal Web UI', n.run), ...link('The run that failed', n.openedBy)];
  if (links.length) lines.push('', ...links);
  lines.push('', n.event === 'failing' ? 'One notice per failure: a resolved notice follows when the job next succeeds.' : 'Resolved: the job succeeded again.', 'Runbook: docs/runbooks/alerts.md');
  return {
    subject: `[tenantsafe] ${noticeLine(n).replace(/[\r\n]+/g, ' ')}`,
    text: lines.join('\n') + '\n',
    messageId: messageIdOf(n.noticeId),
    ...(n.event === 'resolved' ? { inReplyTo: messageIdOf(n.noticeId.replace(/\.resolved$/, '.failing')) } : {}),
  };
}
