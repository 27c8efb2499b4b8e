"""Writes the envelopes of ../envelope-spec/vectors/*.json into corpus/envelope_open/ as fuzzing seeds."""
import base64, glob, json, os, pathlib

here = pathlib.Path(__file__).parent
out = here / "corpus" / "envelope_open"
out.mkdir(parents=True, exist_ok=True)
for path in glob.glob(str(here.parent / "envelope-spec" / "vectors" / "*.json")):
    for i, v in enumerate(json.load(open(path))["vectors"]):
        if v.get("envelope"):
            (out / f"{pathlib.Path(path).stem}-{i}").write_bytes(bytes.fromhex(v["envelope"]))
        if v.get("text"):
            (out / f"{pathlib.Path(path).stem}-{i}-text").write_bytes(v["text"].encode())
print("seeded", len(list(out.iterdir())), "files")
