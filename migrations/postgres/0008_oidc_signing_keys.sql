-- The OIDC issuer's signing keys, shared by every replica. The private key is sealed under the oidc-signing DEK scope
-- (associated data: kid and alg); the public key is kept as its JWK. `active_ms` is when the key starts signing: a
-- key is published from its creation, ahead of that time. Unique, so two replicas rotating at once make one key.

CREATE TABLE oidc_signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    sealed      BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL,
    active_ms   BIGINT NOT NULL UNIQUE
);
