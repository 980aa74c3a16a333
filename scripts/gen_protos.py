"""Generate the Python API package and Envoy's descriptor set from protos/, in one step
(`--check`: regenerate aside and fail if what is in place differs).

Both outputs come from the same .proto files in the same run, so they cannot drift apart:
- Python messages, stubs and type stubs into `copytrade/<service>/v1/` (imported by every service);
- `build/api.binpb`, the FileDescriptorSet (with imports and google/rpc error types) that Envoy's
  gRPC-JSON transcoder reads;
- `build/openapi.json`, the OpenAPI 3 document of the REST routes (gateway.openapi), with the
  .proto comments as descriptions, served at `/openapi.json` and `/docs`.

grpc_tools.protoc is used for both because buf's built-in Python plugin needs a protoc binary that
grpcio-tools does not ship; `buf lint` and `buf breaking` still check the same files.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
THIRD_PARTY = ROOT / "third_party" / "googleapis"
DESCRIPTOR_SET = ROOT / "build" / "api.binpb"
OPENAPI_DOCUMENT = ROOT / "build" / "openapi.json"
# The error types Envoy needs to turn a rich gRPC status into JSON (see ENVOY_GRPC_NOTES 1.4).
ERROR_PROTOS = ("google/rpc/status.proto", "google/rpc/error_details.proto")


def _protoc_include() -> str:
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


def _run(args: list[str]) -> None:
    code = protoc.main(["grpc_tools.protoc", *args])
    if code != 0:
        sys.exit(f"protoc failed ({code}) for: {' '.join(args)}")


def _ensure_packages(out_root: Path, proto_files: list[Path]) -> None:
    # Generated modules import each other absolutely (`from copytrade.auth.v1 import ...`), so every
    # folder on the way must be a regular package for setuptools and mypy to find it.
    for proto in proto_files:
        folder = out_root / proto.relative_to(PROTO_ROOT).parent
        while folder != out_root:
            (folder / "__init__.py").touch()
            folder = folder.parent


def generate(out_root: Path, descriptor_set: Path, openapi_document: Path) -> list[str]:
    """Every output, under `out_root` (the Python package) and at the two paths given."""
    proto_files = sorted(PROTO_ROOT.rglob("*.proto"))
    if not proto_files:
        sys.exit(f"no .proto files under {PROTO_ROOT}")
    rel = [str(p.relative_to(PROTO_ROOT)) for p in proto_files]
    includes = [f"-I{PROTO_ROOT}", f"-I{THIRD_PARTY}", f"-I{_protoc_include()}"]

    _run([*includes, f"--python_out={out_root}", f"--pyi_out={out_root}", f"--grpc_python_out={out_root}", *rel])
    _ensure_packages(out_root, proto_files)

    descriptor_set.parent.mkdir(parents=True, exist_ok=True)
    _run([*includes, "--include_imports", f"--descriptor_set_out={descriptor_set}", *rel, *ERROR_PROTOS])
    _write_openapi(includes, rel, openapi_document)
    return rel


def check() -> int:
    """Regenerate into a scratch folder and compare with what is in place: 0 when identical."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        generate(root, root / "api.binpb", root / "openapi.json")
        fresh = {path.relative_to(root): path.read_bytes() for path in (root / "copytrade").rglob("*") if path.is_file()}
        fresh[DESCRIPTOR_SET.relative_to(ROOT)] = (root / "api.binpb").read_bytes()
        fresh[OPENAPI_DOCUMENT.relative_to(ROOT)] = (root / "openapi.json").read_bytes()
    stale = [str(rel) for rel, content in sorted(fresh.items()) if not (ROOT / rel).is_file() or (ROOT / rel).read_bytes() != content]
    if stale:
        print("generated code is not what protos/ gives now; run `make gen`:", *stale, sep="\n  ")
        return 1
    print(f"generated code, {DESCRIPTOR_SET.relative_to(ROOT)} and {OPENAPI_DOCUMENT.relative_to(ROOT)} match protos/")
    return 0


def main() -> None:
    if "--check" in sys.argv[1:]:
        sys.exit(check())
    rel = generate(ROOT, DESCRIPTOR_SET, OPENAPI_DOCUMENT)
    print(
        f"generated {len(rel)} protos into copytrade/, {DESCRIPTOR_SET.relative_to(ROOT)} "
        f"and {OPENAPI_DOCUMENT.relative_to(ROOT)}"
    )


def _write_openapi(includes: list[str], rel: list[str], openapi_document: Path) -> None:
    # The same set as Envoy's plus source info, whose comments become the document's descriptions
    # (Envoy's own set goes without them: it needs none and loads faster).
    from google.protobuf import descriptor_pb2

    sys.path.insert(0, str(ROOT))
    from copytrade.core.settings import VERSION
    from gateway.openapi import build_openapi

    with tempfile.TemporaryDirectory() as scratch:
        with_comments = Path(scratch) / "api-with-comments.binpb"
        _run([*includes, "--include_imports", "--include_source_info", f"--descriptor_set_out={with_comments}", *rel])
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(with_comments.read_bytes())
    document = build_openapi(descriptor_set, version=VERSION)
    openapi_document.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
