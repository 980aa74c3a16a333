"""Put opentelemetry-proto's generated modules back if another package overwrote them.

xds-protos (Envoy's API, which the gateway's configuration is checked against) ships its own, older
copy of OpenTelemetry's generated protos at the same paths as opentelemetry-proto
(`opentelemetry/proto/common/v1/common_pb2.py`, ...). Whichever pip installs last wins, and pip's
order is not ours to choose: with xds-protos' copy, the OTLP trace exporter cannot import
(`InstrumentationScope` is missing). Run after every install (make install, the image build); it
reinstalls the same opentelemetry-proto, without its dependencies, only when its files are not there.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys


def shadowed() -> bool:
    try:
        from opentelemetry.proto.common.v1 import common_pb2
    except ImportError:
        return True
    return not hasattr(common_pb2, "InstrumentationScope")


def main() -> int:
    if not shadowed():
        return 0
    version = importlib.metadata.version("opentelemetry-proto")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
         f"opentelemetry-proto=={version}"],
        check=True,
    )
    print(f"reinstalled opentelemetry-proto {version} over xds-protos' older copy of its modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
