// Where the API's secrets come from: files and the environment, never the command line (argv is readable by every
// user of the machine through /proc and ps). Shared by `bees api`, `bees agent` and the CLI client.
import { readFileSync } from 'node:fs';

/** The environment variables, one place so usage texts and code agree. */
export const ENV = {
  token: 'BEES_API_TOKEN',
  readToken: 'BEES_API_READ_TOKEN',
  ca: 'BEES_API_CA',
} as const;

export const TOKEN_ON_ARGV = `--token is not accepted: a token on the command line is visible to every user in ps; use --token-file FILE or $${ENV.token}`;

/** A token file: its first line, trimmed. Empty or unreadable is an error naming the file. */
export function readTokenFile(file: string, what = 'token file'): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const token = text.split('\n')[0]!.trim();
  if (!token) throw new Error(`${what} ${file} is empty`);
  return token;
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export interface ServerSecretArgs {
  tokenFile?: string | undefined;
  readTokenFile?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
}

export interface ServerSecrets {
  token?: string;
  readToken?: string;
  tls?: { cert: Buffer; key: Buffer };
}

/** A server's token, read-only token and TLS pair: files first, then the environment. */
export function serverSecrets(args: ServerSecretArgs, env: NodeJS.ProcessEnv): ServerSecrets {
  const token = args.tokenFile !== undefined ? readTokenFile(args.tokenFile) : env[ENV.token] || undefined;
  const readToken =
    args.readTokenFile !== undefined ? readTokenFile(args.readTokenFile, 'read token file') : env[ENV.readToken] || undefined;
  if (!!args.tlsCert !== !!args.tlsKey) throw new Error('--tls-cert and --tls-key go together');
  const tls =
    args.tlsCert && args.tlsKey ? { cert: readPem(args.tlsCert, 'TLS certificate'), key: readPem(args.tlsKey, 'TLS key') } : undefined;
  return { ...(token ? { token } : {}), ...(readToken ? { readToken } : {}), ...(tls ? { tls } : {}) };
}

/** A client's token and CA: --token-file, then $BEES_API_TOKEN; --ca FILE, then $BEES_API_CA (a file). */
export function clientSecrets(
  args: { tokenFile?: string | undefined; ca?: string | undefined },
  env: NodeJS.ProcessEnv,
): { token?: string; ca?: Buffer } {
  const token = args.tokenFile !== undefined ? readTokenFile(args.tokenFile) : env[ENV.token] || undefined;
  const caFile = args.ca ?? (env[ENV.ca] || undefined);
  const ca = caFile ? readPem(caFile, 'CA file') : undefined;
  return { ...(token ? { token } : {}), ...(ca ? { ca } : {}) };
}
