"""Test helpers for bytecode images: a real registry on loopback, a local
Sigstore (CA, CT log, Rekor) and cosign-format signers. Test-only code."""
