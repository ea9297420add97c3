// Interop: panva's oauth4webapi, a DPoP-capable OAuth client library, gets DPoP-bound tokens from
// a real `portcullis serve` that requires DPoP nonces, and uses them: code + PKCE bound with
// dpop_jkt, the nonce retry the library is built for, a protected API call with a proof, a
// refresh (the public client's refresh token is bound to the key), and refusals without the key.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as oauth from 'oauth4webapi';
import * as jose from 'jose';
import { Browser, Portcullis } from './harness.mjs';

const REDIRECT = 'http://127.0.0.1:8978/callback';
const EMAIL = 'ada@example.com';
const PASSWORD = 'correct horse battery staple';
const insecure = { [oauth.allowInsecureRequests]: true }; // the test server is plain http on loopback

let server;
let issuer;
let clientId;

before(async () => {
  server = new Portcullis();
  server.cli(['workspace', 'create', 'acme', '--name', 'Acme']);
  server.cli(['user', 'create', '--email', EMAIL, '--name', 'Ada Lovelace', '--password-stdin'], `${PASSWORD}\n`);
  server.cli(['member', 'add', '--workspace', 'acme', '--email', EMAIL, '--permissions', 'contacts:read contacts:write']);
  clientId = server.cli(['client', 'create', '--name', 'DPoP app', '--public', '--dpop', '--redirect-uri', REDIRECT,
    '--scope', 'contacts:read offline_access', '--grant-type', 'authorization_code', '--grant-type', 'refresh_token']).client_id;
  issuer = await server.start(['--dpop-nonce', 'true']);
});

after(async () => {
  await server?.stop();
});

/** Runs `request`, retrying once when the server asks for a (new) DPoP nonce. */
async function withNonceRetry(request) {
  try {
    return await request();
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err;
    return request();
  }
}

test('oauth4webapi obtains and uses DPoP-bound tokens', async () => {
  const as = await oauth.processDiscoveryResponse(new URL(issuer), await oauth.discoveryRequest(new URL(issuer), insecure));
  assert.ok(as.dpop_signing_alg_values_supported.includes('ES256'));
  const client = { client_id: clientId };
  const keyPair = await oauth.generateKeyPair('ES256');
  const DPoP = oauth.DPoP(client, keyPair);

  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const url = new URL(as.authorization_endpoint);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', clientId);
  url.searchParams.set('redirect_uri', REDIRECT);
  url.searchParams.set('scope', 'contacts:read offline_access');
  url.searchParams.set('state', state);
  url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(verifier));
  url.searchParams.set('code_challenge_method', 'S256');
  url.searchParams.set('dpop_jkt', await jose.calculateJwkThumbprint(await jose.exportJWK(keyPair.publicKey)));
  const callback = new URL(await new Browser(issuer).authorize(url.href, { email: EMAIL, password: PASSWORD }));
  const params = oauth.validateAuthResponse(as, client, callback, state);

  // The first token request lacks the nonce; the library caches the one we send and retries.
  const tokens = await withNonceRetry(async () =>
    oauth.processAuthorizationCodeResponse(as, client,
      await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, REDIRECT, verifier, { DPoP, ...insecure })));
  assert.equal(tokens.token_type, 'dpop');
  const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(keyPair.publicKey));
  assert.equal(jose.decodeJwt(tokens.access_token).cnf.jkt, jkt);

  // The API with a proof for this request.
  const api = new URL(`${issuer}/api/v1/contacts`);
  const res = await withNonceRetry(() => oauth.protectedResourceRequest(tokens.access_token, 'GET', api, undefined, undefined, { DPoP, ...insecure }));
  assert.equal(res.status, 200);
  assert.ok(Array.isArray((await res.json()).contacts));

  // Without the key the token is worthless: as a bearer token, or with another key's proofs.
  const bearer = await fetch(api, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(bearer.status, 401);
  const thief = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
  await assert.rejects(
    withNonceRetry(() => oauth.protectedResourceRequest(tokens.access_token, 'GET', api, undefined, undefined, { DPoP: thief, ...insecure })),
    (err) => err instanceof oauth.WWWAuthenticateChallengeError && err.cause.some((c) => c.scheme === 'dpop' && c.parameters.error === 'invalid_dpop_proof'),
  );

  // Refresh: only with the same key.
  await assert.rejects(
    withNonceRetry(async () => oauth.processRefreshTokenResponse(as, client,
      await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token, { DPoP: thief, ...insecure }))),
    (err) => err instanceof oauth.ResponseBodyError && err.error === 'invalid_dpop_proof',
  );
  const refreshed = await withNonceRetry(async () => oauth.processRefreshTokenResponse(as, client,
    await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token, { DPoP, ...insecure })));
  assert.equal(refreshed.token_type, 'dpop');
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
  const again = await withNonceRetry(() => oauth.protectedResourceRequest(refreshed.access_token, 'GET', api, undefined, undefined, { DPoP, ...insecure }));
  assert.equal(again.status, 200);
});
