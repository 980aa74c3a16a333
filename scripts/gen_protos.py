"""Generate the Python API package and Envoy's descriptor set from protos/, in one step.

Both outputs come from the same .proto files in the same run, so they cannot drift apart:
- Python messages, stubs and type stubs into `copytrade/<service>/v1/` (imported by every service);
- `build/api.binpb`, the FileDescriptorSet (with imports and google/rpc error types) that Envoy's
  gRPC-JSON transcoder reads.

grpc_tools.protoc is used for both because buf's built-in Python plugin needs a protoc binary that
grpcio-tools does not ship; `buf lint` and `buf breaking` still check the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
THIRD_PARTY = ROOT / "third_party" / "googleapis"
DESCRIPTOR_SET = ROOT / "build" / "api.binpb"
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


def main() -> None:
    proto_files = sorted(PROTO_ROOT.rglob("*.proto"))
    if not proto_files:
        sys.exit(f"no .proto files under {PROTO_ROOT}")
    rel = [str(p.relative_to(PROTO_ROOT)) for p in proto_files]
    includes = [f"-I{PROTO_ROOT}", f"-I{THIRD_PARTY}", f"-I{_protoc_include()}"]

    _run([*includes, f"--python_out={ROOT}", f"--pyi_out={ROOT}", f"--grpc_python_out={ROOT}", *rel])
    _ensure_packages(ROOT, proto_files)

    DESCRIPTOR_SET.parent.mkdir(exist_ok=True)
    _run(
        [
            *includes,
            "--include_imports",
            f"--descriptor_set_out={DESCRIPTOR_SET}",
            *rel,
            *ERROR_PROTOS,
        ]
    )
    print(f"generated {len(rel)} protos into copytrade/ and {DESCRIPTOR_SET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
