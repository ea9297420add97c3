// Interop: panva's openid-client (a certified OpenID Connect relying party library) runs the
// authorization code + PKCE flow against a real `portcullis serve`, validating everything it
// validates for any provider: discovery, the RFC 9207 iss parameter, state, the ID token
// (signature via JWKS, iss, aud, nonce, at_hash), the token response and userinfo.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as client from 'openid-client';
import * as jose from 'jose';
import { Browser, Portcullis } from './harness.mjs';

const REDIRECT = 'http://127.0.0.1:8976/callback';
const EMAIL = 'ada@example.com';
const PASSWORD = 'correct horse battery staple';

let server;
let issuer;
let registered;

before(async () => {
  server = new Portcullis();
  const ws = server.cli(['workspace', 'create', 'acme', '--name', 'Acme']);
  server.cli(['user', 'create', '--email', EMAIL, '--name', 'Ada Lovelace', '--password-stdin'], `${PASSWORD}\n`);
  server.cli(['member', 'add', '--workspace', 'acme', '--email', EMAIL, '--permissions', 'contacts:read contacts:write']);
  registered = server.cli([
    'client', 'create', '--name', 'Interop RP', '--redirect-uri', REDIRECT,
    '--scope', 'openid profile email offline_access contacts:read contacts:write',
  ]);
  registered.workspace_id = ws.id;
  issuer = await server.start();
});

after(async () => {
  await server?.stop();
});

async function configuration() {
  return client.discovery(new URL(issuer), registered.client_id, registered.client_secret, undefined, {
    execute: [client.allowInsecureRequests], // the test server is plain http on loopback
  });
}

async function runFlow(config, scope) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope,
    state,
    nonce,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  });
  const callback = await new Browser(issuer).authorize(url.href, { email: EMAIL, password: PASSWORD });
  return { callback: new URL(callback), verifier, state, nonce };
}

test('discovery is accepted by openid-client', async () => {
  const config = await configuration();
  const md = config.serverMetadata();
  assert.equal(md.issuer, issuer);
  assert.deepEqual(md.code_challenge_methods_supported, ['S256']);
  assert.equal(md.authorization_response_iss_parameter_supported, true);
});

test('authorization code + PKCE: tokens, ID token and userinfo validate', async () => {
  const config = await configuration();
  const { callback, verifier, state, nonce } = await runFlow(config, 'openid profile email contacts:read');
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.equal(tokens.scope, 'contacts:read email openid profile');
  assert.ok(tokens.refresh_token?.startsWith('pcl_rt_'));
  const id = tokens.claims();
  assert.equal(id.iss, issuer);
  assert.equal(id.aud, registered.client_id);

  // The access token is an RFC 9068 JWT that an independent library verifies against our JWKS.
  const jwks = jose.createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri));
  const { payload, protectedHeader } = await jose.jwtVerify(tokens.access_token, jwks, {
    issuer,
    audience: `${issuer}/api`,
    typ: 'at+jwt',
    algorithms: ['ES256'],
  });
  assert.equal(protectedHeader.typ, 'at+jwt');
  assert.equal(payload.client_id, registered.client_id);
  assert.equal(payload.workspace_id, registered.workspace_id);
  assert.equal(payload.sub, id.sub);

  const info = await client.fetchUserInfo(config, tokens.access_token, id.sub);
  assert.equal(info.email, EMAIL);
  assert.equal(info.name, 'Ada Lovelace');
});

test('a wrong PKCE verifier is refused with invalid_grant', async () => {
  const config = await configuration();
  const { callback, state } = await runFlow(config, 'contacts:read');
  await assert.rejects(
    client.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: client.randomPKCECodeVerifier(),
      expectedState: state,
    }),
    (err) => err.error === 'invalid_grant',
  );
});

test('a callback from another issuer is rejected by the client (RFC 9207 iss)', async () => {
  const config = await configuration();
  const { callback, verifier, state } = await runFlow(config, 'contacts:read');
  callback.searchParams.set('iss', 'https://attacker.example');
  await assert.rejects(
    client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state }),
    (err) => /"iss" \(issuer\) response parameter/.test(err.cause?.message ?? ''),
  );
});
