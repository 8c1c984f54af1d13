// The web view's files, served by the API at /ui: a page, its script and style (core/ui/static, plain files a
// browser runs as they are), and the graph library from its npm package (no CDN: the view works on a machine
// without internet access). The files hold no data, so they are served without a token: a browser cannot put a
// bearer header on a page it navigates to. Everything the page shows comes from the API with the token the person
// enters (see static/app.js). A fixed list of paths, compared exactly: nothing else is exempt from authentication.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServerApp } from '../api/listen.js';

interface Asset {
  file: string;
  type: string;
}

const require = createRequire(import.meta.url);

/**
 * core/ui/static beside this module: in the source tree, and in dist/ when `npm run build` copied it there (what the
 * image ships). A dist/ compiled by tsc alone (the ./bees launcher) reads the checkout's copy, two levels up.
 */
const STATIC_DIR = [new URL('./static/', import.meta.url), new URL('../../../core/ui/static/', import.meta.url)]
  .map((u) => fileURLToPath(u))
  .find((dir) => existsSync(join(dir, 'index.html')));

function staticFile(name: string): string {
  if (!STATIC_DIR) throw new Error('the web view files (core/ui/static) are missing from this installation');
  return join(STATIC_DIR, name);
}

const ASSETS: Record<string, () => Asset> = {
  '/ui': () => ({ file: staticFile('index.html'), type: 'text/html; charset=utf-8' }),
  '/ui/': () => ({ file: staticFile('index.html'), type: 'text/html; charset=utf-8' }),
  '/ui/app.js': () => ({ file: staticFile('app.js'), type: 'text/javascript; charset=utf-8' }),
  '/ui/style.css': () => ({ file: staticFile('style.css'), type: 'text/css; charset=utf-8' }),
  '/ui/cytoscape.min.js': () => ({ file: require.resolve('cytoscape/dist/cytoscape.min.js'), type: 'text/javascript; charset=utf-8' }),
};

/**
 * The page may run its own script and the graph library, talk to this API and nothing else; no framing (no
 * clickjacking); no inline script, so injected markup cannot run.
 */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

/** Whether a request is for one of the web view's files: those need no token (they hold no data). */
export function isUiAsset(method: string, url: string): boolean {
  return (method === 'GET' || method === 'HEAD') && Object.hasOwn(ASSETS, url.split('?')[0]!);
}

export function uiRoutes(app: ServerApp): void {
  const cache = new Map<string, Buffer>();
  for (const [url, asset] of Object.entries(ASSETS)) {
    app.get(url, async (_req, reply) => {
      const { file, type } = asset();
      let body = cache.get(file);
      if (!body) {
        body = readFileSync(file);
        cache.set(file, body);
      }
      return reply.headers(SECURITY_HEADERS).type(type).send(body);
    });
  }
}
