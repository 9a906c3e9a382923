// A third-party OAuth 2.0 authorization server (the `oidc-provider` package) for scopegate's
// end-to-end tests (tests/thirdparty_as.rs). Loopback only, keys generated in memory.
//
// Usage: node server.mjs [PORT] [--exit-on-stdin-close]   (PORT 0 or none: ephemeral)
// Prints one line `READY <issuer>` once it listens, then logs nothing else on stdout.
//
// Clients (client_secret_basic):
//   app / app-secret               client_credentials, authorization_code, refresh_token;
//                                  scopes read write mcp (plus openid)
//   scopegate / scopegate-secret   no grants: introspects tokens for the resource server
// Resource indicators (RFC 8707), each with scopes read write mcp:
//   https://api.scopegate.test           JWT access tokens (RFC 9068, typ at+jwt), RS256
//   https://api-es.scopegate.test        JWT access tokens, ES256
//   https://other.scopegate.test         JWT access tokens for another resource server
//   https://opaque.scopegate.test        opaque access tokens (for introspection)
//   https://opaque-other.scopegate.test  opaque access tokens for another resource server
//   http://127.0.0.1:PORT/...            any loopback resource (a scopegate proxy a test
//                                        started): JWT access tokens, RS256
// Dynamic client registration (RFC 7591) is open, so `scopegate token` registers native
// clients with loopback redirect URIs (any port matches, RFC 8252 §7.3).
// Logins are approved automatically as account "alice" (GET /interaction/:uid), so an
// authorization-code flow needs no browser. DPoP (RFC 9449) is on: a token request with a
// proof gets a DPoP-bound token (dpop-client.mjs makes such requests and proofs).

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

// stdout carries only the READY line; every log goes to stderr.
const printReady = (line) => process.stdout.write(`${line}\n`);
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

const SCOPES = 'read write mcp';
const RESOURCE_SERVERS = {
  'https://api.scopegate.test': { format: 'jwt', alg: 'RS256' },
  'https://api-es.scopegate.test': { format: 'jwt', alg: 'ES256' },
  'https://other.scopegate.test': { format: 'jwt', alg: 'RS256' },
  'https://opaque.scopegate.test': { format: 'opaque' },
  'https://opaque-other.scopegate.test': { format: 'opaque' },
};

// A scopegate proxy under test serves its protected resources on 127.0.0.1.
function resourceServer(indicator) {
  if (RESOURCE_SERVERS[indicator]) return RESOURCE_SERVERS[indicator];
  try {
    const url = new URL(indicator);
    if (url.protocol === 'http:' && url.hostname === '127.0.0.1' && !url.hash) return { format: 'jwt', alg: 'RS256' };
  } catch {
    // not a URL: no such resource server
  }
  return undefined;
}

function noOutboundNetwork() {
  throw new Error('this test authorization server makes no outbound requests');
}
// oidc-provider fetches remote documents (a client's jwks_uri, request_uri, ...) with the
// options of its `httpOptions` helper: below, every such request is aborted before it starts
// and no host name resolves. No configured client needs a remote document anyway.
globalThis.fetch = noOutboundNetwork;
function refuseOutbound() {
  return {
    signal: AbortSignal.abort(new Error('outbound requests are disabled')),
    dnsLookup: (_host, _options, callback) => callback(new Error('outbound requests are disabled')),
  };
}

function signingKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return [
    { ...rsa.privateKey.export({ format: 'jwk' }), kid: `rsa-${crypto.randomUUID()}`, use: 'sig', alg: 'RS256' },
    { ...ec.privateKey.export({ format: 'jwk' }), kid: `ec-${crypto.randomUUID()}`, use: 'sig', alg: 'ES256' },
  ];
}

function configuration() {
  return {
    clients: [
      {
        client_id: 'app',
        client_secret: 'app-secret',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ['https://app.scopegate.test/callback'],
        scope: `openid ${SCOPES}`,
      },
      {
        client_id: 'scopegate',
        client_secret: 'scopegate-secret',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
    ],
    jwks: { keys: signingKeys() },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    scopes: ['openid', 'offline_access', ...SCOPES.split(' ')],
    enabledJWA: { dPoPSigningAlgValues: ['ES256', 'PS256', 'RS256', 'EdDSA'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // The resource server's own client, or the client the token was issued to.
        allowedPolicy: async (_ctx, client, token) => client.clientId === 'scopegate' || client.clientId === token.clientId,
      },
      revocation: { enabled: true },
      registration: { enabled: true },
      // RFC 9449: a token request with a DPoP proof gets a token bound to its key (`cnf.jkt`
      // in JWT access tokens and in introspection answers).
      dPoP: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          const server = resourceServer(resourceIndicator);
          if (!server) throw new errors.InvalidTarget();
          return {
            scope: SCOPES,
            audience: resourceIndicator,
            accessTokenTTL: 600,
            accessTokenFormat: server.format,
            ...(server.alg ? { jwt: { sign: { alg: server.alg } } } : {}),
          };
        },
      },
    },
    // Every authorization-code grant of a client allowed to refresh gets a refresh token.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    httpOptions: refuseOutbound,
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
    ttl: {
      AccessToken: 600,
      ClientCredentials: 600,
      AuthorizationCode: 60,
      Grant: 3600,
      Interaction: 600,
      RefreshToken: 3600,
      Session: 3600,
    },
  };
}

// Approves every interaction: login as "alice", then consent to everything asked for.
function autoApprove(provider) {
  return async (ctx, next) => {
    const match = /^\/interaction\/([^/]+)$/.exec(ctx.path);
    if (!match || ctx.method !== 'GET') return next();
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const { prompt, params, session } = details;
    let result;
    if (prompt.name === 'login') {
      result = { login: { accountId: 'alice' } };
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const missing = prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      result = { consent: { grantId: await grant.save() } };
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
    ctx.status = 303;
    ctx.redirect(returnTo);
  };
}

const portArg = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? '0';
const requested = /^[0-9]{1,5}$/.test(portArg) ? Number(portArg) : -1;
if (requested < 0 || requested > 65535) {
  console.error(`usage: node server.mjs [PORT] [--exit-on-stdin-close]; got ${portArg}`);
  process.exit(2);
}

const server = http.createServer();
server.on('error', (error) => {
  console.error(`authorization server failed: ${error.message}`);
  process.exit(1);
});
server.listen(requested, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration());
  provider.use(autoApprove(provider));
  provider.on('server_error', (_ctx, error) => console.error('server_error', error));
  server.on('request', provider.callback());
  printReady(`READY ${issuer}`);
});

// With --exit-on-stdin-close (the tests pass it), a parent that dies without killing this
// process still stops it: its end of the stdin pipe closes.
if (process.argv.includes('--exit-on-stdin-close')) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
