// A hospital's identity provider for the single sign-on tests: panva's oidc-provider on a
// free loopback port, with its development sign-in and consent pages (any password).
// Reads one JSON object on stdin: {client: {...client metadata}, accounts: {sub: claims}}.
// Prints the issuer URL on its first line once it listens.
import http from 'node:http';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const setup = JSON.parse(readFileSync(0, 'utf8'));
const server = http.createServer();

server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [setup.client],
    async findAccount(ctx, sub) {
      // Every sub signs in (the development pages take any name): the hub decides.
      const claims = setup.accounts[sub] || {};
      return { accountId: sub, claims: async () => ({ ...claims, sub }) };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    pkce: { required: () => true },
    cookies: { keys: ['a-test-only-cookie-key'] },
  });
  server.on('request', provider.callback());
  process.stdout.write(`${issuer}\n`);
});
