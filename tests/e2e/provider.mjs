// An independent OpenID Provider for portcullis' end-to-end tests, on the OpenID Certified
// `oidc-provider` package (pinned in package.json / package-lock.json).
//
// - Issuer `http://127.0.0.1:<port>` (loopback only).
// - One confidential client (`client_secret_basic`), authorization code flow, PKCE required.
// - devInteractions: any username logs in (the password is not checked), then a consent form.
// - Claims: sub (= the username), email, email_verified, name, preferred_username, groups
//   (usernames starting with `admin` are in group `admins`). `groups` is tied to the `openid`
//   scope, so it is always in the ID token; `email` and `profile` claims follow the provider's
//   default (conformIdTokenClaims): userinfo only, so the relying party must complete the
//   identity from the userinfo endpoint.
// - RP-initiated logout (end_session) with a confirmation form.
// - The signing key comes from --key-file: an RSA private JWK, generated and written there
//   when the file does not exist yet. A new file on restart means a new key (and key id).
//
// Usage: node provider.mjs --port N --key-file PATH --redirect-uri URI [--redirect-uri URI]
//          [--post-logout-redirect-uri URI ...] [--client-id ID]
//        The client secret is read from the environment variable E2E_CLIENT_SECRET.
// Prints one line `ready <issuer> kid=<kid>` on stdout once it accepts connections.
//
// Runtime: every oidc-provider 9.x release targets Node.js 22 LTS and warns "Unsupported
// runtime" on Node.js 20 (a warning only); the suite runs and passes on Node.js 20.20.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string' },
      'key-file': { type: 'string' },
      'client-id': { type: 'string', default: 'portcullis' },
      'redirect-uri': { type: 'string', multiple: true, default: [] },
      'post-logout-redirect-uri': { type: 'string', multiple: true, default: [] },
    },
    strict: true,
  }));
} catch (e) {
  fail(e.message);
}

const port = Number.parseInt(args.port ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) fail('--port N is required');
if (!args['key-file']) fail('--key-file PATH is required');
if (args['redirect-uri'].length === 0) fail('at least one --redirect-uri is required');
const clientSecret = process.env.E2E_CLIENT_SECRET;
if (!clientSecret) fail('E2E_CLIENT_SECRET is not set');

/** The signing key: loaded from the key file, or generated and saved there. */
function signingKey(path) {
  if (existsSync(path)) {
    return JSON.parse(readFileSync(path, 'utf8'));
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = {
    ...privateKey.export({ format: 'jwk' }),
    kid: `e2e-${randomBytes(8).toString('hex')}`,
    alg: 'RS256',
    use: 'sig',
  };
  writeFileSync(path, JSON.stringify(jwk), { mode: 0o600 });
  return jwk;
}

const key = signingKey(args['key-file']);
const issuer = `http://127.0.0.1:${port}`;

function claimsOf(username) {
  return {
    sub: username,
    email: `${username}@example.test`,
    email_verified: true,
    name: `E2E ${username}`,
    preferred_username: username,
    groups: username.startsWith('admin') ? ['admins'] : [],
  };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: args['client-id'],
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: args['redirect-uri'],
      post_logout_redirect_uris: args['post-logout-redirect-uri'],
    },
  ],
  jwks: { keys: [key] },
  pkce: { required: () => true },
  claims: {
    openid: ['sub', 'groups'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  // Fixed, obviously fake cookie keys (test fixture only).
  cookies: { keys: ['e2e-only-cookie-key-not-a-secret'] },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return claimsOf(id);
      },
    };
  },
});

provider.on('server_error', (_ctx, err) => {
  process.stderr.write(`provider.mjs: server_error: ${err?.stack ?? err}\n`);
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer} kid=${key.kid}\n`);
});
server.on('error', (e) => fail(`listen: ${e.message}`));

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
