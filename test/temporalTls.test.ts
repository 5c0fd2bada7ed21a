// Temporal over TLS, as a secured cluster or Temporal Cloud is reached: the dev server behind a
// TLS terminator that demands a client certificate (mutual TLS, ALPN h2), a worker and the CLI
// configured with temporal.tls running a tenant backup through it; the refusal without a client
// certificate; and `temporal setup` registering the search attributes in a namespace that lacks them.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { Connection } from '@temporalio/client';
import Long from 'long';
import { createTestEnv, runCli, type TestEnv } from './support/env';
import { testStack } from './support/stack';

/** A CA, a server certificate for localhost and a client certificate, made with openssl. */
function makeCertificates(dir: string): Record<'ca' | 'caKey' | 'serverCert' | 'serverKey' | 'clientCert' | 'clientKey', string> {
  const f = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=tenantsafe test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  for (const [name, ext] of [['server', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'], ['client', 'extendedKeyUsage=clientAuth']] as const) {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=tenantsafe ${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    fs.writeFileSync(f(`${name}.ext`), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n${ext}\n`);
    openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-out', f(`${name}.pem`), '-extfile', f(`${name}.ext`));
  }
  return { ca: f('ca.pem'), caKey: f('ca.key'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}

/** Terminates mutual TLS (h2) in front of a plaintext gRPC server, counting the connections it let through. */
async function startTlsTerminator(upstream: string, certs: ReturnType<typeof makeCertificates>): Promise<{ address: string; accepted: () => number; close: () => Promise<void> }> {
  const [host, port] = [upstream.slice(0, upstream.lastIndexOf(':')), Number(upstream.slice(upstream.lastIndexOf(':') + 1))];
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = tls.createServer(
    { key: fs.readFileSync(certs.serverKey), cert: fs.readFileSync(certs.serverCert), ca: fs.readFileSync(certs.ca), requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] },
    (client) => {
      accepted++;
      const backend = net.connect(port, host);
      for (const s of [client, backend]) {
        sockets.add(s);
        s.on('error', () => undefined).on('close', () => sockets.delete(s));
      }
      client.pipe(backend).pipe(client);
    },
  );
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    accepted: () => accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('Temporal over TLS', function () {
  this.timeout(180_000);
  let dir: string;
  let certs: ReturnType<typeof makeCertificates>;
  let terminator: Awaited<ReturnType<typeof startTlsTerminator>>;
  let env: TestEnv;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantsafe-tls-'));
    certs = makeCertificates(dir);
    terminator = await startTlsTerminator((await testStack()).temporalAddress, certs);
    env = await createTestEnv('local', {
      configure: (doc) => {
        doc.temporal.address = terminator.address;
        doc.temporal.tls = { ca: certs.ca, clientCert: certs.clientCert, clientKey: certs.clientKey, serverName: 'localhost' };
      },
    });
    await env.startWorker();
  });
  after(async () => {
    await env?.close();
    await terminator?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs a tenant backup with the worker and the CLI both on mutual TLS', async () => {
    const before = terminator.accepted();
    const res = await runCli(['backup', 'tenant', 'acme', '--wait', '--json'], { configFile: env.configFile });
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.json().status, 'completed');
    assert.ok(terminator.accepted() > before, 'the CLI came through the TLS terminator');
  });

  it('says what to check when the server wants a client certificate it did not get', async () => {
    const file = env.writeConfig('no-client-cert.yaml', (d) => (d.temporal.tls = { ca: certs.ca, serverName: 'localhost' }));
    const res = await runCli(['backup', 'tenant', 'acme', '--json'], { configFile: file, timeoutMs: 60_000 });
    assert.equal(res.code, 1, res.stderr);
    assert.match(JSON.parse(res.stderr).error, /Cannot reach Temporal at 127\.0\.0\.1:\d+ over TLS: .*HINT: Check temporal\.address, temporal\.tls/s);
    const unreadable = env.writeConfig('missing-ca.yaml', (d) => (d.temporal.tls = { ca: path.join(dir, 'nope.pem') }));
    const bad = await runCli(['backup', 'tenant', 'acme', '--json'], { configFile: unreadable });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(JSON.parse(bad.stderr).error, /temporal\.tls\.ca: cannot read .*nope\.pem \(ENOENT\).*HINT:/s);
  });

  it('registers the search attributes in a namespace that lacks them, once', async () => {
    const stack = await testStack();
    const namespace = `tenantsafe-setup-${randomBytes(3).toString('hex')}`;
    const connection = await Connection.connect({ address: stack.temporalAddress });
    try {
      await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: { seconds: Long.fromNumber(86_400) } });
      const file = env.writeConfig('setup.yaml', (d) => (d.temporal.namespace = namespace));
      let first: ReturnType<Awaited<ReturnType<typeof runCli>>['json']> | undefined;
      for (let i = 0; i < 30 && !first; i++) {
        // a new namespace takes a moment to be known to every service of the server
        const res = await runCli(['temporal', 'setup', '--json'], { configFile: file });
        if (res.code === 0) first = res.json();
        else await new Promise((r) => setTimeout(r, 500));
      }
      assert.deepEqual(first, { registered: ['TenantId', 'BackupKind', 'Database'], present: [] });
      const again = await runCli(['temporal', 'setup', '--json'], { configFile: file });
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(again.json(), { registered: [], present: ['TenantId', 'BackupKind', 'Database'] });
    } finally {
      await connection.close();
    }
  });
});
