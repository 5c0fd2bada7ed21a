// How every tenantsafe process (CLI, worker, dashboard) reaches Temporal: the address, TLS with the
// files read here (a secured cluster, mutual TLS, Temporal Cloud) and an API key.
import * as fs from 'node:fs';
import type { Config } from '../lib/config';
import { ErrorType, TenantsafeError } from '../lib/errors';

export interface TemporalConnectionOptions {
  address: string;
  tls?: boolean | { serverNameOverride?: string; serverRootCACertificate?: Buffer; clientCertPair?: { crt: Buffer; key: Buffer } };
  apiKey?: string;
}

/** Options both the client's Connection and the worker's NativeConnection take. */
export function temporalConnectionOptions(temporal: Config['temporal']): TemporalConnectionOptions {
  const t = temporal.tls;
  const read = (key: string, file: string) => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new TenantsafeError(ErrorType.BadConfig, `temporal.tls.${key}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`, `Point temporal.tls.${key} at a readable PEM file.`);
    }
  };
  const tls = t
    ? {
        ...(t.serverName ? { serverNameOverride: t.serverName } : {}),
        ...(t.caFile ? { serverRootCACertificate: read('ca', t.caFile) } : {}),
        ...(t.clientCertFile && t.clientKeyFile ? { clientCertPair: { crt: read('clientCert', t.clientCertFile), key: read('clientKey', t.clientKeyFile) } } : {}),
      }
    : undefined;
  return {
    address: temporal.address,
    // an API key goes only over TLS (Temporal Cloud requires it)
    ...(tls ? { tls } : temporal.apiKey ? { tls: true } : {}),
    ...(temporal.apiKey ? { apiKey: temporal.apiKey } : {}),
  };
}
