// Starts a real `portcullis serve` on a fresh SQLite file and drives its admin CLI, so the
// interop tests exercise the binary exactly as an operator would.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export const BIN = process.env.PORTCULLIS_BIN || new URL('../target/debug/portcullis', import.meta.url).pathname;

export class Portcullis {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'portcullis-interop-'));
    this.databaseUrl = `sqlite://${join(this.dir, 'interop.db')}`;
  }

  /** Runs an admin command with --json and returns its JSON output. */
  cli(args, stdin) {
    const r = spawnSync(BIN, ['--database-url', this.databaseUrl, ...args, '--json'], { input: stdin, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`portcullis ${args.join(' ')} failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  /** Starts `serve` on a free port (with extra flags and environment); resolves with the issuer once it listens. */
  async start(args = [], env = {}) {
    this.proc = spawn(BIN, ['--database-url', this.databaseUrl, 'serve', '--bind', '127.0.0.1:0', ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, PORTCULLIS_LOG: 'info', ...env },
    });
    const lines = createInterface({ input: this.proc.stderr });
    this.issuer = await new Promise((resolve, reject) => {
      this.proc.once('exit', (code) => reject(new Error(`portcullis exited early (${code})`)));
      lines.on('line', (line) => {
        try {
          const log = JSON.parse(line);
          if (log.message === 'portcullis listening') resolve(log.issuer);
        } catch {
          /* not a log line */
        }
      });
    });
    return this.issuer;
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc.once('exit', r));
      this.proc.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A scripted browser: keeps cookies, never follows redirects, fills our login and consent forms. */
export class Browser {
  constructor(base) {
    this.base = base;
    this.cookies = new Map();
  }

  async fetch(url, init = {}) {
    const headers = new Headers(init.headers || {});
    if (this.cookies.size) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(new URL(url, this.base), { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      this.cookies.set(pair.slice(0, i), pair.slice(i + 1));
    }
    return res;
  }

  static hidden(html, name) {
    const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
    if (!m) throw new Error(`no ${name} field in page`);
    return m[1];
  }

  async post(path, fields) {
    return this.fetch(path, { method: 'POST', body: new URLSearchParams(fields) });
  }

  /** From an authorization URL to the client callback URL: sign in, then Allow. */
  async authorize(authorizationUrl, { email, password, allow = true }) {
    let res = await this.fetch(authorizationUrl);
    let location = res.headers.get('location');
    if (location?.startsWith('/login')) {
      const html = await (await this.fetch(location)).text();
      res = await this.post('/login', { email, password, csrf: Browser.hidden(html, 'csrf'), req: Browser.hidden(html, 'req') });
      location = res.headers.get('location');
    }
    if (location?.startsWith('/consent')) {
      const page = await this.fetch(location);
      if (page.status === 303) return page.headers.get('location'); // remembered consent
      const html = await page.text();
      const workspace = html.match(/<option value="([^"]*)"/)[1];
      res = await this.post('/consent', {
        csrf: Browser.hidden(html, 'csrf'),
        req: Browser.hidden(html, 'req'),
        workspace,
        decision: allow ? 'allow' : 'deny',
      });
      location = res.headers.get('location');
    }
    if (res.status !== 303 || !location) throw new Error(`unexpected response ${res.status}`);
    return location;
  }

  /** Opens the device verification URI, signs in if asked, and answers the consent page. */
  async approveDevice(verificationUriComplete, { email, password, allow = true }) {
    let res = await this.fetch(verificationUriComplete);
    if (res.status === 303) {
      const login = res.headers.get('location');
      const html = await (await this.fetch(login)).text();
      res = await this.post('/login', { email, password, csrf: Browser.hidden(html, 'csrf'), next: Browser.hidden(html, 'next') });
      res = await this.fetch(res.headers.get('location'));
    }
    const html = await res.text();
    const workspace = html.match(/<option value="([^"]*)"/)[1];
    res = await this.post('/device', {
      csrf: Browser.hidden(html, 'csrf'),
      user_code: Browser.hidden(html, 'user_code'),
      workspace,
      decision: allow ? 'allow' : 'deny',
    });
    return res.headers.get('location');
  }
}

/**
 * A local https server (a test CA and a certificate for 127.0.0.1, made with the openssl CLI)
 * serving `routes` (path → JSON document). Resolves with { origin, caFile, close }.
 */
export async function httpsDocuments(routes) {
  const { execFileSync } = await import('node:child_process');
  const { readFileSync, writeFileSync } = await import('node:fs');
  const https = await import('node:https');
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-tls-'));
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=interop-ca');
  ssl('req', ...ec, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n');
  ssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '2', '-extfile', 'ext.cnf');
  const fetched = [];
  const server = https.createServer({ key: readFileSync(join(dir, 'leaf.key')), cert: readFileSync(join(dir, 'leaf.pem')) }, (req, res) => {
    const make = routes[req.url];
    fetched.push(req.url);
    if (!make) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' }).end(JSON.stringify(make(origin)));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `https://127.0.0.1:${server.address().port}`;
  return {
    origin,
    caFile: join(dir, 'ca.pem'),
    fetched,
    close: async () => {
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
