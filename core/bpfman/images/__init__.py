"""Bytecode images: the bpfman image spec, pulls, a verified cache, builds.

The spec (upstream bpfman, reference/upstream-bpfman.md §4): an OCI or
Docker v2 image (or a multi-arch index of them) whose first layer is a
tar+gzip holding the ELF object as its first regular file, and whose config
labels describe it: ``io.ebpf.programs`` (JSON: function name -> program
type) and ``io.ebpf.maps`` (JSON: map name -> map type). Images made for
bpfman 0.3 carry single-program labels (``io.ebpf.bpf_function_name``,
``io.ebpf.program_type``...) instead; they are read as a one-program image.

Pull: resolve the reference to a digest by hashing the manifest ourselves,
pick the host's platform from an index, verify the signature of that digest
(`bpfman.images.signing`) *before* reading the config or layer, then fetch every
blob by digest and check it. Nothing reaches the cache until everything
checked out, so a failed pull leaves no entry behind.

Cache (under ``<state_dir>/images``): ``blobs/sha256/<hex>`` hold manifests,
configs and layers by digest; ``entries/<key>.json`` maps a reference to the
digests it resolved to, the labels and the verification verdict. Every read
recomputes the digest of every blob it uses; a mismatch removes the entry and
fails (`ImageError`, reason ``cache_corrupted``). The object handed to libbpf
is re-extracted from the verified layer on every load, so what was verified
is what is loaded.

Modules: `spec` (labels, layer, build and push), `oci` (registry client),
`signing` (sigstore and cosign verification), `cache`, `service` (the
`image.*` methods), `config`. The wire types are in `bpfman.model`.
"""
