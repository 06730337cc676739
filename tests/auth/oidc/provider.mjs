// A real OpenID Connect provider (npm oidc-provider) for the identity tests.
// Usage: node provider.mjs <config.json>; config: {port, issuer, jwks: {keys: [private JWK]},
// clients: [...], accounts: {id: {claims}}, codeTtl}. Prints "ready" once listening.
// The built-in development interactions serve the login and consent forms the tests submit.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = config.accounts;

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: config.jwks,
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false, // put the requested claims in the ID token (what the registry reads)
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true }, clientCredentials: { enabled: true } },
  ttl: { AuthorizationCode: config.codeTtl || 60, IdToken: 600, AccessToken: 600, Interaction: 600,
         Session: 600, Grant: 600, ClientCredentials: 600 },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
  async loadExistingGrant(ctx) {
    // consent is given once, on the consent form; later logins reuse it
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.listen(config.port, '127.0.0.1', () => console.log('ready'));
