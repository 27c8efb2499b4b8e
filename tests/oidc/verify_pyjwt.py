"""Verifies a token Sesame minted with code that is not ours: PyJWT's PyJWKClient, found through the discovery
document. Usage: verify_pyjwt.py ISSUER TOKEN AUDIENCE. Prints the claims (JSON) and exits 0 when the token verifies;
prints the reason and exits 1 when it does not. Run by tests/it/oidc_issuer.rs."""

import json
import sys
import urllib.request

import jwt


def main() -> int:
    issuer, token, audience = sys.argv[1:4]
    with urllib.request.urlopen(issuer + "/.well-known/openid-configuration", timeout=10) as resp:
        config = json.load(resp)
    if config["issuer"] != issuer:
        print(f"discovery names issuer {config['issuer']!r}, not {issuer!r}")
        return 1
    try:
        client = jwt.PyJWKClient(config["jwks_uri"], cache_keys=False)
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=config["id_token_signing_alg_values_supported"],
            audience=audience,
            issuer=issuer,
            options={"require": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"]},
        )
    except jwt.PyJWTError as e:
        print(f"{type(e).__name__}: {e}")
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
