// Test helper: one libnetwork-style call to the plugin's unix socket, as dockerd makes it.
import { request } from 'node:http';

export interface PluginReply {
  status: number;
  contentType: string | undefined;
  body: Record<string, unknown>;
}

export function callPlugin(
  socketPath: string,
  method: string,
  body: unknown,
  contentType: string | null = 'application/vnd.docker.plugins.v1.2+json',
): Promise<PluginReply> {
  const data = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = {
      Host: 'plugin.moby.localhost',
      Accept: 'application/vnd.docker.plugins.v1.2+json',
      'content-length': Buffer.byteLength(data),
    };
    if (contentType) headers['content-type'] = contentType;
    const req = request({ socketPath, path: `/${method}`, method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
      });
      res.on('end', () => {
        try {
          resolve({
            status: res.statusCode ?? 0,
            contentType: res.headers['content-type'],
            body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
          });
        } catch (e) {
          reject(new Error(`${method}: non-JSON reply ${res.statusCode}: ${text}`, { cause: e }));
        }
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}
