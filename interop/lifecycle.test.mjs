// Interop for the token lifecycle: openid-client refreshes (rotation), revokes (RFC 7009) and
// introspects (RFC 7662), runs client credentials, and completes the device authorization grant
// (RFC 8628) with its own poller, against a real `portcullis serve`.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as client from 'openid-client';
import { Browser, Portcullis } from './harness.mjs';

const REDIRECT = 'http://127.0.0.1:8976/callback';
const EMAIL = 'grace@example.com';
const PASSWORD = 'correct horse battery staple';
const insecure = { execute: [client.allowInsecureRequests] };

let server;
let issuer;
let web;
let machine;
let device;

before(async () => {
  server = new Portcullis();
  server.cli(['workspace', 'create', 'acme']);
  server.cli(['user', 'create', '--email', EMAIL, '--password-stdin'], `${PASSWORD}\n`);
  server.cli(['member', 'add', '--workspace', 'acme', '--email', EMAIL, '--permissions', 'contacts:read contacts:write']);
  web = server.cli(['client', 'create', '--name', 'Web', '--redirect-uri', REDIRECT, '--scope', 'openid contacts:read contacts:write']);
  machine = server.cli([
    'client', 'create', '--name', 'Sync', '--scope', 'contacts:read', '--grant-type', 'client_credentials', '--workspace', 'acme',
  ]);
  device = server.cli([
    'client', 'create', '--name', 'TV app', '--public', '--scope', 'contacts:read',
    '--grant-type', 'urn:ietf:params:oauth:grant-type:device_code', '--grant-type', 'refresh_token',
  ]);
  issuer = await server.start();
});

after(async () => {
  await server?.stop();
});

async function webTokens(config) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid contacts:read contacts:write',
    state,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  });
  const callback = await new Browser(issuer).authorize(url.href, { email: EMAIL, password: PASSWORD });
  return client.authorizationCodeGrant(config, new URL(callback), { pkceCodeVerifier: verifier, expectedState: state });
}

test('refresh rotates, introspection and revocation work', async () => {
  const config = await client.discovery(new URL(issuer), web.client_id, web.client_secret, undefined, insecure);
  const first = await webTokens(config);

  const second = await client.refreshTokenGrant(config, first.refresh_token);
  assert.notEqual(second.refresh_token, first.refresh_token, 'rotated');
  const narrowed = await client.refreshTokenGrant(config, second.refresh_token, { scope: 'contacts:read' });
  assert.equal(narrowed.scope, 'contacts:read');

  const live = await client.tokenIntrospection(config, narrowed.access_token);
  assert.equal(live.active, true);
  assert.equal(live.client_id, web.client_id);
  assert.equal(live.scope, 'contacts:read');

  // Replaying a consumed refresh token (well after its use) is refused...
  await new Promise((r) => setTimeout(r, 2100));
  await assert.rejects(client.refreshTokenGrant(config, first.refresh_token), (e) => e.error === 'invalid_grant');
  // ...and revokes the whole family.
  assert.equal((await client.tokenIntrospection(config, narrowed.access_token)).active, false);

  const fresh = await webTokens(config);
  await client.tokenRevocation(config, fresh.refresh_token);
  assert.equal((await client.tokenIntrospection(config, fresh.access_token)).active, false);
  await assert.rejects(client.refreshTokenGrant(config, fresh.refresh_token), (e) => e.error === 'invalid_grant');
});

test('client credentials', async () => {
  const config = await client.discovery(new URL(issuer), machine.client_id, machine.client_secret, undefined, insecure);
  const t = await client.clientCredentialsGrant(config, { scope: 'contacts:read' });
  assert.equal(t.scope, 'contacts:read');
  assert.equal(t.refresh_token, undefined);
  await assert.rejects(client.clientCredentialsGrant(config, { scope: 'contacts:write' }), (e) => e.error === 'invalid_scope');
});

test('device authorization grant with openid-client polling', async () => {
  const config = await client.discovery(new URL(issuer), device.client_id, undefined, client.None(), insecure);
  const d = await client.initiateDeviceAuthorization(config, { scope: 'contacts:read' });
  assert.match(d.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
  const polling = client.pollDeviceAuthorizationGrant(config, d);
  const done = await new Browser(issuer).approveDevice(d.verification_uri_complete, { email: EMAIL, password: PASSWORD });
  assert.equal(done, '/device/done?result=approved');
  const t = await polling;
  assert.equal(t.scope, 'contacts:read');
  assert.ok(t.refresh_token.startsWith('pcl_rt_'));
});
