"""Drives Sesame's Vault-Transit API with hvac, the most used Vault client: every endpoint the issue lists.

Usage: hvac_drive.py URL TOKEN NAMESPACE. Prints one line per step and exits non-zero on the first failure.
"""
import base64
import sys

import hvac
from hvac.exceptions import Forbidden, InvalidPath, InvalidRequest

url, token, namespace = sys.argv[1], sys.argv[2], sys.argv[3]
client = hvac.Client(url=url, token=token, namespace=namespace)
t = client.secrets.transit


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def step(name, ok):
    if not ok:
        print(f"FAIL {name}")
        sys.exit(1)
    print(f"ok {name}")


step("health", client.sys.read_health_status(method="GET")["initialized"] is True)
step("lookup-self", "policies" in client.auth.token.lookup_self()["data"])
step("is_authenticated", client.is_authenticated())
mounts = client.sys.list_mounted_secrets_engines()
step("list mounts", "transit/" in mounts["data"])
client.sys.enable_secrets_engine(backend_type="transit", path="hvac-mount")
step("enable mount", "hvac-mount/" in client.sys.list_mounted_secrets_engines()["data"])

t.create_key(name="hv")
key = t.read_key(name="hv")["data"]
step("create+read", key["type"] == "aes256-gcm96" and key["latest_version"] == 1)
step("list keys", "hv" in t.list_keys()["data"]["keys"])
ct = t.encrypt_data(name="hv", plaintext=b64(b"hvac says hi"))["data"]["ciphertext"]
step("encrypt", ct.startswith("vault:v1:"))
pt = t.decrypt_data(name="hv", ciphertext=ct)["data"]["plaintext"]
step("decrypt", base64.b64decode(pt) == b"hvac says hi")
t.rotate_key(name="hv")
step("rotate", t.read_key(name="hv")["data"]["latest_version"] == 2)
rw = t.rewrap_data(name="hv", ciphertext=ct)["data"]["ciphertext"]
step("rewrap", rw.startswith("vault:v2:"))
t.update_key_configuration(name="hv", min_decryption_version=2, deletion_allowed=True)
step("config", t.read_key(name="hv")["data"]["min_decryption_version"] == 2)
try:
    t.decrypt_data(name="hv", ciphertext=ct)
    step("too old refused", False)
except InvalidRequest as e:
    step("too old refused", "disallowed by policy" in str(e))
batch = t.encrypt_data(
    name="hv",
    batch_input=[{"plaintext": b64(b"a"), "reference": "r1"}, {"plaintext": b64(b"b"), "reference": "r2"}],
)["data"]["batch_results"]
step("batch encrypt", [r["reference"] for r in batch] == ["r1", "r2"])
dec = t.decrypt_data(name="hv", batch_input=[{"ciphertext": r["ciphertext"]} for r in batch])["data"]["batch_results"]
step("batch decrypt", [base64.b64decode(r["plaintext"]) for r in dec] == [b"a", b"b"])
dk = t.generate_data_key(name="hv", key_type="plaintext")["data"]
step("datakey", len(base64.b64decode(dk["plaintext"])) == 32 and dk["ciphertext"].startswith("vault:v2:"))
mac = t.generate_hmac(name="hv", hash_input=b64(b"m"))["data"]["hmac"]
step("hmac", mac.startswith("vault:v2:"))
step("verify hmac", t.verify_signed_data(name="hv", hash_input=b64(b"m"), hmac=mac)["data"]["valid"] is True)
rnd = t.generate_random_bytes(n_bytes=24)["data"]["random_bytes"]
step("random", len(base64.b64decode(rnd)) == 24)
digest = t.hash_data(hash_input=b64(b"abc"), algorithm="sha2-256")["data"]["sum"]
step("hash", digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
t.create_key(name="hv-sign", key_type="ed25519")
sig = t.sign_data(name="hv-sign", hash_input=b64(b"doc"))["data"]["signature"]
step("sign", sig.startswith("vault:v1:"))
step("verify", t.verify_signed_data(name="hv-sign", hash_input=b64(b"doc"), signature=sig)["data"]["valid"] is True)
t.create_key(name="hv-ec", key_type="ecdsa-p256")
sig = t.sign_data(name="hv-ec", hash_input=b64(b"doc"))["data"]["signature"]
step("verify ecdsa", t.verify_signed_data(name="hv-ec", hash_input=b64(b"doc"), signature=sig)["data"]["valid"])
t.create_key(name="hv-x", exportable=True, key_type="chacha20-poly1305")
exp = t.export_key(name="hv-x", key_type="encryption-key")["data"]["keys"]
step("export", len(base64.b64decode(exp["1"])) == 32)
t.create_key(name="hv", mount_point="hvac-mount")
ct2 = t.encrypt_data(name="hv", plaintext=b64(b"m2"), mount_point="hvac-mount")["data"]["ciphertext"]
step("other mount", base64.b64decode(t.decrypt_data(name="hv", ciphertext=ct2, mount_point="hvac-mount")["data"]["plaintext"]) == b"m2")
t.delete_key(name="hv")
try:
    t.read_key(name="hv")
    step("delete", False)
except InvalidPath:
    step("delete", True)
bad = hvac.Client(url=url, token="sesame_0000000000000000000000000000000000000000000", namespace=namespace)
try:
    bad.secrets.transit.encrypt_data(name="hv2", plaintext=b64(b"x"))
    step("bad token refused", False)
except Forbidden:
    step("bad token refused", True)
print("done")
