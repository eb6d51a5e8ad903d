"""A gRPC echo server and client for Strait's end-to-end tests.

Bytes in, bytes out: the generic handler API with identity (de)serialisers, so
no .proto file or code generation is needed.

  echo.py server          listen on 127.0.0.1:0, print the port, serve
  echo.py client ADDR     call every method at ADDR, print the results as JSON
"""

import json
import sys
from concurrent import futures

import grpc

SERVICE = "strait.test.Echo"
NO_PROXY = [("grpc.enable_http_proxy", 0)]


def _echo_metadata(context):
    """Sends the client's x-client-* metadata back as initial metadata."""
    seen = [
        ("x-seen-" + k[len("x-client-"):], v)
        for k, v in context.invocation_metadata()
        if k.startswith("x-client-")
    ]
    context.send_initial_metadata(seen)


def unary(request, context):
    _echo_metadata(context)
    context.set_trailing_metadata([("x-echo-trailer", "unary-done")])
    return b"echo:" + request


def stream(request, context):
    _echo_metadata(context)
    context.set_trailing_metadata([("x-echo-trailer", "stream-done")])
    for i in range(int(request)):
        yield b"item-%d" % i


def not_found(request, context):
    context.set_trailing_metadata([("x-echo-trailer", "not-found")])
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())


def stream_then_fail(request, context):
    context.set_trailing_metadata([("x-echo-trailer", "failed-late")])
    yield b"first"
    yield b"second"
    context.abort(grpc.StatusCode.NOT_FOUND, "gone after two")


def serve():
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Big": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req * 2),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "NotFound": grpc.unary_unary_rpc_method_handler(not_found),
            "StreamThenFail": grpc.unary_stream_rpc_method_handler(stream_then_fail),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    # Serve until the test closes our stdin (or kills us).
    sys.stdin.read()
    server.stop(0)


def _md(metadata):
    return sorted([k, v] for k, v in (metadata or ()) if k.startswith("x-"))


def _error(e):
    return {
        "code": e.code().name,
        "details": e.details(),
        "trailing": _md(e.trailing_metadata()),
    }


def client(addr):
    out = {}
    with grpc.insecure_channel(addr, options=NO_PROXY) as ch:
        path = "/%s/" % SERVICE

        resp, call = ch.unary_unary(path + "Unary").with_call(
            b"hello", metadata=[("x-client-id", "c-1")], timeout=10
        )
        out["unary"] = {
            "payload": resp.decode(),
            "code": call.code().name,
            "initial": _md(call.initial_metadata()),
            "trailing": _md(call.trailing_metadata()),
        }

        big = bytes(range(256)) * 4096  # 1 MiB, every byte value
        resp = ch.unary_unary(path + "Big")(big, timeout=20)
        out["big"] = {"len": len(resp), "intact": resp == big * 2}

        call = ch.unary_stream(path + "Stream")(
            b"5", metadata=[("x-client-id", "c-2")], timeout=10
        )
        items = [m.decode() for m in call]
        out["stream"] = {
            "items": items,
            "code": call.code().name,
            "initial": _md(call.initial_metadata()),
            "trailing": _md(call.trailing_metadata()),
        }

        try:
            ch.unary_unary(path + "NotFound")(b"widget", timeout=10)
            out["not_found"] = {"code": "OK"}
        except grpc.RpcError as e:
            out["not_found"] = _error(e)

        call = ch.unary_stream(path + "StreamThenFail")(b"", timeout=10)
        items = []
        try:
            for m in call:
                items.append(m.decode())
            out["stream_then_fail"] = {"items": items, "code": "OK"}
        except grpc.RpcError as e:
            out["stream_then_fail"] = dict(_error(e), items=items)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        serve()
    elif sys.argv[1:2] == ["client"] and len(sys.argv) == 3:
        client(sys.argv[2])
    else:
        sys.exit(__doc__)
