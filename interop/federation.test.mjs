// Interop for issue 4: a CI job exchanges its OIDC ID token (signed by a local issuer with jose)
// for a service token through openid-client's generic grant (RFC 8693); an API key mints a
// service token over the admin API; jose verifies both against our JWKS.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import * as client from 'openid-client';
import { SignJWT, createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import { Portcullis } from './harness.mjs';

const SUBJECT = 'repo:acme/app:ref:refs/heads/main';
const insecure = { execute: [client.allowInsecureRequests] };

let server;
let issuer;
let ci; // the external OIDC issuer
let ciKey;
let ciServer;
let ciClient;
let apiKey;

before(async () => {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  ciKey = privateKey;
  const jwk = { ...(await exportJWK(publicKey)), kid: 'ci-1', alg: 'ES256', use: 'sig' };
  const http = createServer((req, res) => {
    const body =
      req.url === '/.well-known/openid-configuration'
        ? { issuer: ci, jwks_uri: `${ci}/jwks` }
        : req.url === '/jwks'
          ? { keys: [jwk] }
          : null;
    res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body ?? {}));
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  ci = `http://127.0.0.1:${http.address().port}`;
  ciServer = http;

  server = new Portcullis();
  server.cli(['workspace', 'create', 'acme']);
  server.cli([
    'trust-policy', 'create', '--workspace', 'acme', '--name', 'deploys', '--issuer', ci, '--audience', 'portcullis',
    '--subject', SUBJECT, '--claim', 'repository_owner=acme', '--scope', 'contacts:read contacts:write', '--max-ttl', '10m',
  ]);
  ciClient = server.cli([
    'client', 'create', '--name', 'CI', '--public', '--scope', 'contacts:read',
    '--grant-type', 'urn:ietf:params:oauth:grant-type:token-exchange',
  ]);
  apiKey = server.cli(['key', 'create', '--workspace', 'acme', '--name', 'deployer', '--scope', 'tokens:mint contacts:read']);
  issuer = await server.start();
});

after(async () => {
  await server?.stop();
  ciServer?.close();
});

function idToken({ sub = SUBJECT, ...claims } = {}) {
  return new SignJWT({ repository_owner: 'acme', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'ci-1' })
    .setIssuer(ci)
    .setAudience('portcullis')
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(ciKey);
}

async function verifyServiceToken(token) {
  const config = await client.discovery(new URL(issuer), ciClient.client_id, undefined, client.None(), insecure);
  const jwks = createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience: `${issuer}/api`,
    typ: 'at+jwt',
  });
  assert.equal(protectedHeader.alg, 'ES256');
  assert.equal(payload.token_use, 'service');
  return payload;
}

test('openid-client exchanges a CI ID token for a service token (RFC 8693)', async () => {
  const config = await client.discovery(new URL(issuer), ciClient.client_id, undefined, client.None(), insecure);
  assert.ok(config.serverMetadata().grant_types_supported.includes('urn:ietf:params:oauth:grant-type:token-exchange'));
  const tokens = await client.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:token-exchange', {
    subject_token: await idToken(),
    subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
    scope: 'contacts:read',
  });
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.equal(tokens.issued_token_type, 'urn:ietf:params:oauth:token-type:access_token');
  assert.equal(tokens.expires_in, 600);
  assert.equal(tokens.scope, 'contacts:read');
  const payload = await verifyServiceToken(tokens.access_token);
  assert.equal(payload.sub, SUBJECT);
  assert.match(payload.minted_by, /^tp_/);

  // A token from the right issuer but the wrong repository is refused with an RFC 8693 error.
  await assert.rejects(
    client.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:token-exchange', {
      subject_token: await idToken({ sub: 'repo:evil/app:ref:refs/heads/main' }),
      subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
    }),
    (e) => e.error === 'invalid_request',
  );
});

test('an API key mints a service token over the admin API; jose verifies it', async () => {
  const res = await fetch(`${issuer}/api/v1/service-tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey.secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ scope: 'contacts:read', ttl: '5m' }),
  });
  assert.equal(res.status, 201);
  const t = await res.json();
  assert.equal(t.expires_in, 300);
  const payload = await verifyServiceToken(t.access_token);
  assert.equal(payload.minted_by, apiKey.id);
  assert.equal(payload.scope, 'contacts:read');

  const denied = await fetch(`${issuer}/api/v1/service-tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey.secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ scope: 'contacts:write' }),
  });
  assert.equal(denied.status, 403);
  assert.equal(denied.headers.get('content-type'), 'application/problem+json');
});
