"""Errors a handler raises to answer a caller, turned into gRPC statuses by the service interceptor.

Each names what was wrong, so that through Envoy a client gets a JSON body like
`{"code": 3, "message": "email: not a valid email address", "details": [BadRequest...]}`.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


class ServiceError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, field: str | None = None, reason: str | None = None, domain: str = "copytrade") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.description = message
        # A machine-readable cause (google.rpc.ErrorInfo), e.g. NEEDS_RELOGIN, for callers to act on.
        self.reason = reason
        self.domain = domain

    def to_status(self) -> grpc.Status:
        details = []
        if self.field is not None:
            violation = error_details_pb2.BadRequest.FieldViolation(field=self.field, description=self.description)
            packed = any_pb2.Any()
            packed.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
            details.append(packed)
        if self.reason is not None:
            packed = any_pb2.Any()
            packed.Pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=self.domain))
            details.append(packed)
        status = status_pb2.Status(code=self.code.value[0], message=str(self), details=details)
        return rpc_status.to_status(status)


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


# grpc's StatusCode and google.rpc.Code share numbers; keep one import path honest about it.
assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT
