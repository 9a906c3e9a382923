// A DPoP client made of third-party code (the `dpop` npm package, RFC 9449) for scopegate's
// interop test (tests/e2e/thirdparty_dpop.rs): for each key algorithm it asks the
// oidc-provider server (server.mjs) for a DPoP-bound token with a proof, then makes the proofs
// the test sends to scopegate — one good one and variants that must be refused.
//
// Usage: node dpop-client.mjs ISSUER RESOURCE API_URL
// Prints one JSON object on stdout: { "<alg>": { token_type, access_token, jkt, proofs } }.

import * as DPoP from 'dpop';

const [issuer, resource, apiUrl] = process.argv.slice(2);
if (!issuer || !resource || !apiUrl) {
  console.error('usage: node dpop-client.mjs ISSUER RESOURCE API_URL');
  process.exit(2);
}

const metadata = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
const tokenEndpoint = metadata.token_endpoint;

async function boundToken(keypair) {
  let nonce;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const response = await fetch(tokenEndpoint, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from('app:app-secret').toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
        dpop: await DPoP.generateProof(keypair, tokenEndpoint, 'POST', nonce),
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'read', resource }).toString(),
    });
    const body = await response.json();
    // RFC 9449 §8: a server may ask for a nonce first.
    if (response.status === 400 && body.error === 'use_dpop_nonce' && !nonce) {
      nonce = response.headers.get('dpop-nonce');
      continue;
    }
    if (response.status !== 200) throw new Error(`token endpoint: ${response.status} ${JSON.stringify(body)}`);
    return body;
  }
  throw new Error('token endpoint kept asking for a nonce');
}

// Changes one character in the middle of a segment (0 header, 1 payload, 2 signature),
// keeping it base64url.
function tamper(jws, segment) {
  const parts = jws.split('.');
  const text = parts[segment];
  const at = Math.floor(text.length / 2);
  const swapped = text[at] === 'A' ? 'B' : 'A';
  parts[segment] = text.slice(0, at) + swapped + text.slice(at + 1);
  return parts.join('.');
}

// The payload re-encoded with `claims` changed, the original signature kept.
function rewritePayload(jws, claims) {
  const [header, payload, signature] = jws.split('.');
  const decoded = JSON.parse(Buffer.from(payload, 'base64url').toString());
  const changed = Buffer.from(JSON.stringify({ ...decoded, ...claims })).toString('base64url');
  return [header, changed, signature].join('.');
}

const out = {};
// Not `Ed25519`: version 2 of the package names it by its RFC 9864 `alg`, which neither
// oidc-provider 8 nor scopegate (`EdDSA`) accepts yet.
for (const alg of ['ES256', 'PS256', 'RS256']) {
  const keypair = await DPoP.generateKeyPair(alg);
  const answer = await boundToken(keypair);
  const token = answer.access_token;
  const proof = (overrides = {}) =>
    DPoP.generateProof(
      overrides.keypair ?? keypair,
      overrides.htu ?? apiUrl,
      overrides.htm ?? 'GET',
      undefined,
      'token' in overrides ? overrides.token : token,
    );
  out[alg] = {
    token_type: answer.token_type,
    access_token: token,
    jkt: await DPoP.calculateThumbprint(keypair.publicKey),
    proofs: {
      good: await proof(),
      wrong_htu: await proof({ htu: `${apiUrl}/elsewhere` }),
      wrong_htm: await proof({ htm: 'DELETE' }),
      no_ath: await proof({ token: undefined }),
      other_token: await proof({ token: `${token}x` }),
      other_key: await proof({ keypair: await DPoP.generateKeyPair(alg) }),
      tampered_signature: tamper(await proof(), 2),
      tampered_payload: rewritePayload(await proof(), { jti: 'forged-jti' }),
    },
  };
}
process.stdout.write(`${JSON.stringify(out)}\n`);
