// Interop: the official MCP TypeScript SDK (@modelcontextprotocol/sdk) against `/mcp` of a real
// `portcullis serve`. The SDK's client discovers everything itself from the 401: the protected
// resource metadata (RFC 9728), our authorization server metadata (RFC 8414), then runs
// authorization code + PKCE (as a pre-registered public client, and as one that registers itself
// with RFC 7591), and calls tools within the granted
// scopes. A call beyond them gets the 403 insufficient_scope challenge the SDK steps up on.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { Browser, Portcullis, httpsDocuments } from './harness.mjs';

const REDIRECT = 'http://127.0.0.1:8977/mcp-callback';
const EMAIL = 'ada@example.com';
const PASSWORD = 'correct horse battery staple';
const ALL = 'contacts:read contacts:write contacts:delete messages:read messages:write broadcasts:read broadcasts:write flows:read flows:write flows:execute';

let server;
let issuer;
let clientId;
let documents;
const DOC_PATH = '/oauth/mcp-client.json';

before(async () => {
  server = new Portcullis();
  server.cli(['workspace', 'create', 'acme', '--name', 'Acme']);
  server.cli(['user', 'create', '--email', EMAIL, '--name', 'Ada Lovelace', '--password-stdin'], `${PASSWORD}\n`);
  // Ada may read and write contacts and read messages: that is all an app can get from her.
  server.cli(['member', 'add', '--workspace', 'acme', '--email', EMAIL, '--permissions', 'contacts:read contacts:write messages:read']);
  clientId = server.cli(['client', 'create', '--name', 'MCP client', '--public', '--redirect-uri', REDIRECT, '--scope', ALL]).client_id;
  // The client's own site, serving its Client ID Metadata Document over https (a test CA that
  // the server is told to trust, on a loopback address it is allowed to fetch from).
  documents = await httpsDocuments({
    [DOC_PATH]: (origin) => ({
      client_id: `${origin}${DOC_PATH}`,
      client_name: 'MCP SDK (metadata document)',
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  });
  issuer = await server.start([], {
    PORTCULLIS_CLIENT_METADATA_ALLOW_PRIVATE: 'true',
    PORTCULLIS_CLIENT_METADATA_CA_FILE: documents.caFile,
  });
});

after(async () => {
  await server?.stop();
  await documents?.close();
});

/** The SDK's OAuthClientProvider for a pre-registered public client; "redirecting" records the URL. */
class Provider {
  constructor() {
    this.authorizationUrls = [];
  }
  get redirectUrl() {
    return REDIRECT;
  }
  get clientMetadata() {
    return { client_name: 'MCP client', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  clientInformation() {
    return { client_id: clientId };
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
  }
  redirectToAuthorization(url) {
    this.authorizationUrls.push(url);
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
}

test('the MCP SDK authorizes from a 401 and calls tools within its scopes', async () => {
  const provider = new Provider();
  const mcpUrl = new URL(`${issuer}/mcp`);

  // 1. Unauthenticated connect: the SDK follows the 401 to our metadata and "redirects".
  const first = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
  await assert.rejects(new Client({ name: 'interop', version: '1.0.0' }).connect(first), UnauthorizedError);
  assert.equal(provider.authorizationUrls.length, 1);
  const authUrl = provider.authorizationUrls[0];
  assert.equal(authUrl.origin + authUrl.pathname, `${issuer}/oauth2/authorize`, 'found through RFC 9728 then RFC 8414');
  assert.equal(authUrl.searchParams.get('client_id'), clientId);
  assert.equal(authUrl.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(authUrl.searchParams.get('resource'), `${issuer}/mcp`);
  assert.equal(authUrl.searchParams.get('scope'), ALL, "the PRM's scopes_supported");

  // 2. The user signs in and allows; the SDK redeems the code (PKCE, public client).
  const callback = new URL(await new Browser(issuer).authorize(authUrl.href, { email: EMAIL, password: PASSWORD }));
  assert.equal(callback.searchParams.get('iss'), issuer);
  await first.finishAuth(callback.searchParams.get('code'));
  const tokens = provider.tokens();
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.deepEqual(tokens.scope.split(' ').sort(), ['contacts:read', 'contacts:write', 'messages:read'], 'narrowed to what Ada holds');

  // 3. Connected: tools/list shows only what the token's scopes allow.
  const client = new Client({ name: 'interop', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider }));
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ['create_contact', 'get_contact', 'list_contacts', 'list_messages', 'update_contact']);
  const create = tools.find((t) => t.name === 'create_contact');
  assert.deepEqual(create.inputSchema.required, ['name']);

  // 4. Calls within scope.
  const created = await client.callTool({ name: 'create_contact', arguments: { name: 'Grace Hopper', email: 'grace@example.com' } });
  assert.notEqual(created.isError, true, JSON.stringify(created));
  const id = created.structuredContent.id;
  assert.match(id, /^ctc_/);
  const listed = await client.callTool({ name: 'list_contacts', arguments: {} });
  assert.deepEqual(listed.structuredContent.contacts.map((c) => c.email), ['grace@example.com']);
  const bad = await client.callTool({ name: 'create_contact', arguments: { name: 'X', phone: 'not a phone' } });
  assert.equal(bad.isError, true, 'validation errors are tool results');

  // 5. Beyond scope: 403 insufficient_scope naming contacts:delete. The SDK recognises the
  //    challenge and tries to step up (here by refreshing its token, which keeps the granted
  //    scopes), then gives up: the call does not go through.
  const refused = await client.callTool({ name: 'delete_contact', arguments: { id } }).then(() => null, (e) => e);
  assert.equal(refused?.code, 403, String(refused));
  assert.match(refused.message, /after trying upscoping/);
  const still = await client.callTool({ name: 'get_contact', arguments: { id } });
  assert.equal(still.structuredContent.name, 'Grace Hopper', 'nothing was deleted');
  await client.close();
});

/** A provider with no client yet: the SDK registers one itself (RFC 7591) and keeps it. */
class RegisteringProvider extends Provider {
  get clientMetadata() {
    return { client_name: 'MCP SDK (self-registered)', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  clientInformation() {
    return this.registered;
  }
  saveClientInformation(info) {
    this.registered = info;
  }
}

test('the MCP SDK registers itself (RFC 7591), authorizes with resource, calls tools and refreshes', async () => {
  const provider = new RegisteringProvider();
  const mcpUrl = new URL(`${issuer}/mcp`);

  const first = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
  await assert.rejects(new Client({ name: 'interop', version: '1.0.0' }).connect(first), UnauthorizedError);
  const info = provider.clientInformation();
  assert.ok(info?.client_id, 'registered through the registration_endpoint of our metadata');
  assert.notEqual(info.client_id, clientId);
  assert.equal(info.client_secret, undefined, 'a public client');
  const authUrl = provider.authorizationUrls[0];
  assert.equal(authUrl.searchParams.get('client_id'), info.client_id);
  assert.equal(authUrl.searchParams.get('resource'), `${issuer}/mcp`);

  // The user allows; the SDK redeems the code (PKCE, public client).
  const callback = new URL(await new Browser(issuer).authorize(authUrl.href, { email: EMAIL, password: PASSWORD }));
  await first.finishAuth(callback.searchParams.get('code'));
  const tokens = provider.tokens();
  const aud = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url')).aud;
  assert.equal(aud, `${issuer}/mcp`, 'audience-restricted to the MCP endpoint (RFC 8707)');
  assert.ok(tokens.refresh_token);

  const client = new Client({ name: 'interop', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider }));
  const listed = await client.callTool({ name: 'list_contacts', arguments: {} });
  assert.notEqual(listed.isError, true, JSON.stringify(listed));
  await client.close();

  // Refresh through the SDK: a new access token for the same resource, the refresh token rotated.
  const result = await auth(provider, { serverUrl: mcpUrl });
  assert.equal(result, 'AUTHORIZED');
  const refreshed = provider.tokens();
  assert.notEqual(refreshed.access_token, tokens.access_token);
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'refresh tokens rotate');
  const again = new Client({ name: 'interop', version: '1.0.0' });
  await again.connect(new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider }));
  const still = await again.callTool({ name: 'list_contacts', arguments: {} });
  assert.notEqual(still.isError, true);
  await again.close();
});

/** A provider whose client_id is the URL of its metadata document (no registration at all). */
class MetadataDocumentProvider extends RegisteringProvider {
  get clientMetadataUrl() {
    return `${documents.origin}${DOC_PATH}`;
  }
}

test('the MCP SDK uses a Client ID Metadata Document, authorizes, calls tools and refreshes', async () => {
  const provider = new MetadataDocumentProvider();
  const mcpUrl = new URL(`${issuer}/mcp`);
  const metadata = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
  assert.equal(metadata.client_id_metadata_document_supported, true);

  const first = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
  await assert.rejects(new Client({ name: 'interop', version: '1.0.0' }).connect(first), UnauthorizedError);
  const authUrl = provider.authorizationUrls[0];
  assert.equal(authUrl.searchParams.get('client_id'), provider.clientMetadataUrl, 'the URL is the client_id');
  assert.equal(authUrl.searchParams.get('resource'), `${issuer}/mcp`);

  // Our server fetches the document when the authorization request arrives.
  const browser = new Browser(issuer);
  const callback = new URL(await browser.authorize(authUrl.href, { email: EMAIL, password: PASSWORD }));
  assert.ok(documents.fetched.includes(DOC_PATH), 'the document was fetched');
  await first.finishAuth(callback.searchParams.get('code'));
  const tokens = provider.tokens();
  const claims = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url'));
  assert.equal(claims.client_id, provider.clientMetadataUrl);
  assert.equal(claims.aud, `${issuer}/mcp`);

  const client = new Client({ name: 'interop', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider }));
  const listed = await client.callTool({ name: 'list_contacts', arguments: {} });
  assert.notEqual(listed.isError, true, JSON.stringify(listed));
  await client.close();

  assert.equal(await auth(provider, { serverUrl: mcpUrl }), 'AUTHORIZED');
  assert.notEqual(provider.tokens().refresh_token, tokens.refresh_token, 'refresh tokens rotate');

  // A document URL that does not exist is refused at the authorization endpoint (never redirected).
  const bogus = new URL(authUrl);
  bogus.searchParams.set('client_id', `${documents.origin}/nothing-here.json`);
  const res = await new Browser(issuer).fetch(bogus.href);
  assert.equal(res.status, 401);
  assert.match(await res.text(), /client metadata document/);
});
