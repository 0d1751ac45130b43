#!/usr/bin/env node
// An OTLP receiver that shares no code with Loupe: it decodes requests with
// the upstream opentelemetry-proto .proto files shipped inside npm packages
// of opentelemetry-js (never with Loupe's exporters/otlp/proto), through
// @grpc/grpc-js, @grpc/proto-loader and protobufjs. Loupe's tests send it
// requests and read back what it decoded.
//
//   node receiver.js --out FILE [--grpc-port N] [--http-port N] [--protos SET]
//                    [--fail-with-status N] [--grpc-code CODE] [--retry-after S]
//                    [--fail-first K] [--hang] [--partial-success N]
//
// Serves, on 127.0.0.1 only:
//   OTLP/gRPC  TraceService/Export, MetricsService/Export and
//              LogsService/Export (paths taken from the upstream service
//              definitions)
//   OTLP/HTTP  POST /v1/traces, /v1/metrics and /v1/logs, Content-Type
//              application/x-protobuf, Content-Encoding gzip or none
// Port 0 (the default) picks a free port. Once both listen it prints one
// line on stdout:  READY grpc=PORT http=PORT
//
// Every request becomes one JSON line appended to --out before the answer is
// sent (so a client that got its answer finds the line already written):
//   seq            1, 2, ... over both transports and signals
//   transport      "grpc" | "http"
//   signal         "traces" | "metrics" | "logs" | null (unknown HTTP path)
//   path, headers  request path; HTTP headers, or gRPC custom metadata
//                  (-bin values as hex; grpc-js keeps content-type,
//                  grpc-encoding and the like to itself)
//   contentEncoding  HTTP Content-Encoding (null for gRPC: grpc-js
//                  decompresses messages before the handler sees them)
//   wireBytes      HTTP body size as received (null for gRPC)
//   bodyBytes      size of the decompressed protobuf body
//   outcome        "ok" | "failed" (fault injected) | "hung" | "rejected"
//   status         HTTP status sent (null when hung); grpcCode for gRPC
//   schema         which .proto set decoded it
//   request        the decoded Export*ServiceRequest: protobufjs toObject
//                  with camelCase names, 64-bit integers as decimal strings,
//                  enums as their upstream names, bytes as lowercase hex,
//                  absent fields absent, oneofs naming their arm ("value")
//   unknownFields  fields present on the wire that the .proto set does not
//                  declare: [{path, field, wireType, ...raw value}]
//   decodeError    when the body did not decode
//
// Fault modes, for the exporters' retry tests:
//   --fail-with-status N  answer every request (or the first K, see
//                         --fail-first) with HTTP status N and a
//                         google.rpc.Status body; over gRPC with the status
//                         code mapped from N (grpcCodeForHttp below), or the
//                         one given by --grpc-code (number or name).
//   --retry-after S       with a failure: HTTP "Retry-After: S" header; gRPC
//                         a google.rpc.RetryInfo{retry_delay: S seconds} in
//                         the grpc-status-details-bin trailer (OTLP spec,
//                         "Throttling").
//   --fail-first K        inject the fault only into requests 1..K (counted
//                         over both transports and signals); later ones
//                         succeed. Without --fail-with-status or --hang it
//                         fails them with 503.
//   --hang                read and log the request, then never answer (the
//                         client's deadline must end it); with --fail-first K
//                         only the first K hang.
//   --partial-success N   answer success with partial_success
//                         {rejected_spans|rejected_data_points: N,
//                         error_message: "rejected by test receiver"}.
//
// SIGTERM or SIGINT closes everything and exits 0.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const zlib = require('zlib');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

// ---- command line ---------------------------------------------------------

// The .proto sets this receiver knows. Both are copies of upstream
// opentelemetry-proto shipped inside opentelemetry-js packages:
//   exporter-trace-otlp-grpc (0.27.0): the pre-1.0 generation with
//     InstrumentationLibrary(Spans|Metrics) at the fields that are now
//     scope_spans/scope_metrics, DoubleHistogram at Metric field 9, and no
//     attributes/flags/min/max on histogram points: what an older collector
//     understands.
//   otlp-grpc-exporter-base (0.34.0): the InstrumentationScope generation,
//     with Histogram/HistogramDataPoint including attributes, min and max.
const PROTO_SETS = {
  'exporter-trace-otlp-grpc': '@opentelemetry/exporter-trace-otlp-grpc/build/protos',
  'otlp-grpc-exporter-base': '@opentelemetry/otlp-grpc-exporter-base/build/protos',
};

function usage(message) {
  process.stderr.write(`receiver.js: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = {
    out: null,
    grpcPort: 0,
    httpPort: 0,
    protos: 'exporter-trace-otlp-grpc',
    failWithStatus: null,
    grpcCode: null,
    retryAfter: null,
    failFirst: null,
    hang: false,
    partialSuccess: null,
  };
  const intArg = (name, value, min) => {
    const n = Number(value);
    if (value === undefined || !Number.isInteger(n) || n < min) {
      usage(`${name} needs an integer >= ${min}`);
    }
    return n;
  };
  for (let i = 2; i < argv.length; ++i) {
    const flag = argv[i];
    const next = () => argv[++i];
    switch (flag) {
      case '--out': options.out = next(); break;
      case '--grpc-port': options.grpcPort = intArg(flag, next(), 0); break;
      case '--http-port': options.httpPort = intArg(flag, next(), 0); break;
      case '--protos': options.protos = next(); break;
      case '--fail-with-status': options.failWithStatus = intArg(flag, next(), 100); break;
      case '--grpc-code': options.grpcCode = next(); break;
      case '--retry-after': options.retryAfter = intArg(flag, next(), 0); break;
      case '--fail-first': options.failFirst = intArg(flag, next(), 0); break;
      case '--hang': options.hang = true; break;
      case '--partial-success': options.partialSuccess = intArg(flag, next(), 0); break;
      default: usage(`unknown flag ${flag}`);
    }
  }
  if (!options.out) usage('--out FILE is required');
  if (options.failFirst !== null && options.failWithStatus === null && !options.hang) {
    options.failWithStatus = 503;
  }
  if (options.grpcCode !== null) {
    const code = /^\d+$/.test(options.grpcCode) ? Number(options.grpcCode)
                                                : grpc.status[options.grpcCode];
    if (code === undefined) usage(`unknown gRPC code ${options.grpcCode}`);
    options.grpcCode = code;
  }
  return options;
}

const options = parseArgs(process.argv);

function protoDir(set) {
  if (PROTO_SETS[set]) {
    return path.join(__dirname, 'node_modules', PROTO_SETS[set]);
  }
  return path.resolve(set);
}

const PROTO_DIR = protoDir(options.protos);
if (!fs.existsSync(PROTO_DIR)) {
  usage(`no .proto files at ${PROTO_DIR} (run "npm ci" in ${__dirname})`);
}

// ---- schemas ---------------------------------------------------------------

const SERVICE_FILES = [
  'opentelemetry/proto/collector/trace/v1/trace_service.proto',
  'opentelemetry/proto/collector/metrics/v1/metrics_service.proto',
  'opentelemetry/proto/collector/logs/v1/logs_service.proto',
];

const root = new protobuf.Root();
root.resolvePath = (origin, target) => path.join(PROTO_DIR, target);
root.loadSync(SERVICE_FILES);
root.resolveAll();

const SIGNALS = {
  traces: {
    service: 'opentelemetry.proto.collector.trace.v1.TraceService',
    request: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest'),
    response: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse'),
    httpPath: '/v1/traces',
  },
  metrics: {
    service: 'opentelemetry.proto.collector.metrics.v1.MetricsService',
    request: root.lookupType('opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest'),
    response: root.lookupType('opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceResponse'),
    httpPath: '/v1/metrics',
  },
  logs: {
    service: 'opentelemetry.proto.collector.logs.v1.LogsService',
    request: root.lookupType('opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest'),
    response: root.lookupType('opentelemetry.proto.collector.logs.v1.ExportLogsServiceResponse'),
    httpPath: '/v1/logs',
  },
};

// google.rpc.Status and RetryInfo (googleapis google/rpc/status.proto,
// error_details.proto): not OTLP messages, but what OTLP error answers carry.
const rpcRoot = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
            Duration: { fields: { seconds: { type: 'int64', id: 1 }, nanos: { type: 'int32', id: 2 } } },
          },
        },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: 'int32', id: 1 },
                message: { type: 'string', id: 2 },
                details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
              },
            },
            RetryInfo: { fields: { retry_delay: { type: 'google.protobuf.Duration', id: 1 } } },
          },
        },
      },
    },
  },
});
const RpcStatus = rpcRoot.lookupType('google.rpc.Status');
const RetryInfo = rpcRoot.lookupType('google.rpc.RetryInfo');

// ---- decoding --------------------------------------------------------------

// Replaces every byte array with its lowercase hex, recursively.
function hexBytes(value) {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (Array.isArray(value)) return value.map(hexBytes);
  if (value !== null && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = hexBytes(v);
    return out;
  }
  return value;
}

// The raw value of one field the schema does not declare.
function readRaw(reader, wireType) {
  switch (wireType) {
    case 0: return { varint: reader.uint64().toString() };
    case 1: {
      const bytes = Buffer.from(reader.buf.subarray(reader.pos, reader.pos + 8));
      reader.skip(8);
      return { hex: bytes.toString('hex'), fixed64: bytes.readBigUInt64LE().toString(),
               double: bytes.readDoubleLE() };
    }
    case 2: return { hex: Buffer.from(reader.bytes()).toString('hex') };
    case 5: {
      const bytes = Buffer.from(reader.buf.subarray(reader.pos, reader.pos + 4));
      reader.skip(4);
      return { hex: bytes.toString('hex'), fixed32: bytes.readUInt32LE(),
               float: bytes.readFloatLE() };
    }
    default:
      reader.skipType(wireType);
      return {};
  }
}

// Walks the wire format next to the schema and lists what protobufjs would
// silently skip: fields whose numbers the loaded .proto files do not know.
function unknownFields(type, buffer, where, out) {
  const reader = protobuf.Reader.create(buffer);
  const seen = {};
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const id = tag >>> 3;
    const wireType = tag & 7;
    const field = type.fieldsById[id];
    if (!field) {
      out.push({ path: where, field: id, wireType, ...readRaw(reader, wireType) });
      continue;
    }
    if (wireType === 2 && field.resolvedType instanceof protobuf.Type) {
      const index = seen[id] = (seen[id] ?? -1) + 1;
      const child = `${where}.${field.name}${field.repeated ? `[${index}]` : ''}`;
      unknownFields(field.resolvedType, reader.bytes(), child, out);
    } else {
      reader.skipType(wireType);
    }
  }
  return out;
}

function decode(signal, body) {
  const type = SIGNALS[signal].request;
  const message = type.decode(body);
  const request = type.toObject(message, {
    longs: String, enums: String, defaults: false, oneofs: true, json: true,
  });
  return { request: hexBytes(request), unknownFields: unknownFields(type, body, '', []) };
}

// ---- answers ---------------------------------------------------------------

let sequence = 0;

// Which fault, if any, this request gets.
function faultFor(seq) {
  if (options.failFirst !== null && seq > options.failFirst) return null;
  if (options.hang) return 'hang';
  if (options.failWithStatus !== null) return 'fail';
  return null;
}

// The HTTP status of a failure over gRPC, following gRPC's own
// HTTP-to-status table where it has one (doc/http-grpc-status-mapping.md)
// and OTLP's retry rules otherwise (429 is RESOURCE_EXHAUSTED, 504 a
// DEADLINE_EXCEEDED).
function grpcCodeForHttp(status) {
  if (options.grpcCode !== null) return options.grpcCode;
  switch (status) {
    case 400: return grpc.status.INVALID_ARGUMENT;
    case 401: return grpc.status.UNAUTHENTICATED;
    case 403: return grpc.status.PERMISSION_DENIED;
    case 404: return grpc.status.UNIMPLEMENTED;
    case 429: return grpc.status.RESOURCE_EXHAUSTED;
    case 500: return grpc.status.INTERNAL;
    case 501: return grpc.status.UNIMPLEMENTED;
    case 502: case 503: return grpc.status.UNAVAILABLE;
    case 504: return grpc.status.DEADLINE_EXCEEDED;
    default: return grpc.status.UNKNOWN;
  }
}

function rpcStatusBytes(code, message, withRetryInfo) {
  const details = [];
  if (withRetryInfo && options.retryAfter !== null) {
    details.push({
      type_url: 'type.googleapis.com/google.rpc.RetryInfo',
      value: RetryInfo.encode({ retry_delay: { seconds: options.retryAfter, nanos: 0 } }).finish(),
    });
  }
  return Buffer.from(RpcStatus.encode({ code, message, details }).finish());
}

// Export*ServiceResponse. partial_success (field 1, {int64 rejected = 1;
// string error_message = 2}) postdates both upstream .proto sets, so it is
// written with protobufjs' Writer when asked for.
function successBody(signal) {
  if (options.partialSuccess === null) {
    return Buffer.from(SIGNALS[signal].response.encode({}).finish());
  }
  const inner = protobuf.Writer.create()
    .uint32((1 << 3) | 0).int64(options.partialSuccess)
    .uint32((2 << 3) | 2).string('rejected by test receiver')
    .finish();
  return Buffer.from(protobuf.Writer.create().uint32((1 << 3) | 2).bytes(inner).finish());
}

function record(entry) {
  fs.appendFileSync(options.out, JSON.stringify(entry) + '\n');
}

function headersOf(metadata) {
  const out = {};
  for (const [k, v] of Object.entries(metadata)) {
    out[k] = v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v;
  }
  return out;
}

// Decodes, records, and says how to answer.
function handle(transport, signal, reqPath, headers, contentEncoding, wireBytes, body) {
  const seq = ++sequence;
  const entry = {
    seq, transport, signal, path: reqPath, headers, contentEncoding,
    wireBytes, bodyBytes: body ? body.length : null, schema: options.protos,
  };
  if (body && signal) {
    try {
      Object.assign(entry, decode(signal, body));
    } catch (e) {
      entry.decodeError = String(e && e.message ? e.message : e);
    }
  }
  const fault = faultFor(seq);
  if (fault === 'hang') {
    entry.outcome = 'hung';
  } else if (fault === 'fail') {
    entry.outcome = 'failed';
  } else if (entry.decodeError || entry.error) {
    entry.outcome = 'rejected';
  } else {
    entry.outcome = 'ok';
  }
  return entry;
}

// ---- OTLP/HTTP -------------------------------------------------------------

const MAX_BODY = 64 * 1024 * 1024;
const hungSockets = new Set();

function httpAnswer(res, status, body, extraHeaders = {}) {
  res.writeHead(status, {
    'Content-Type': 'application/x-protobuf',
    'Content-Length': body.length,
    ...extraHeaders,
  });
  res.end(body);
}

const httpServer = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  });
  req.on('end', () => {
    const signal = Object.keys(SIGNALS).find((s) => SIGNALS[s].httpPath === req.url) ?? null;
    const encoding = (req.headers['content-encoding'] || '').toLowerCase() || null;
    const wire = Buffer.concat(chunks);
    let body = null;
    let error = null;
    let status = 200;
    if (req.method !== 'POST' || signal === null) {
      status = 404; error = `no OTLP endpoint at ${req.method} ${req.url}`;
    } else if (size > MAX_BODY) {
      status = 413; error = 'body too large';
    } else if ((req.headers['content-type'] || '').split(';')[0].trim() !== 'application/x-protobuf') {
      status = 415; error = `unsupported Content-Type ${req.headers['content-type']}`;
    } else if (encoding === 'gzip') {
      try {
        body = zlib.gunzipSync(wire);
      } catch (e) {
        status = 400; error = `bad gzip body: ${e.message}`;
      }
    } else if (encoding === null || encoding === 'identity') {
      body = wire;
    } else {
      status = 415; error = `unsupported Content-Encoding ${encoding}`;
    }
    const entry = handle('http', signal, req.url, headersOf(req.headers), encoding, wire.length, body);
    if (error) {
      entry.error = error;
      if (entry.outcome === 'ok') entry.outcome = 'rejected';
    }
    if (entry.outcome === 'hung') {
      entry.status = null;
      record(entry);
      hungSockets.add(req.socket);
      req.socket.on('close', () => hungSockets.delete(req.socket));
      return;
    }
    if (entry.outcome === 'failed') status = options.failWithStatus;
    else if (entry.outcome === 'rejected' && status === 200) status = 400;
    entry.status = status;
    record(entry);
    if (status === 200) {
      httpAnswer(res, 200, successBody(signal));
      return;
    }
    const message = entry.outcome === 'failed' ? 'fault injected by test receiver'
                                               : (entry.error || entry.decodeError);
    const headers = {};
    if (entry.outcome === 'failed' && options.retryAfter !== null) {
      headers['Retry-After'] = String(options.retryAfter);
    }
    httpAnswer(res, status, rpcStatusBytes(grpcCodeForHttp(status), message, false), headers);
  });
});

// ---- OTLP/gRPC -------------------------------------------------------------

const packageDefinition = protoLoader.loadSync(SERVICE_FILES, { includeDirs: [PROTO_DIR] });
const grpcServer = new grpc.Server();
const pendingCalls = new Set();

for (const signal of Object.keys(SIGNALS)) {
  const upstream = packageDefinition[SIGNALS[signal].service];
  if (!upstream || !upstream.Export) throw new Error(`no ${SIGNALS[signal].service}/Export`);
  // The method path comes from the upstream service definition; the body is
  // taken raw so unknown fields can be listed, and answers are encoded here
  // (partial_success is not in these .proto sets).
  const service = {
    Export: {
      ...upstream.Export,
      requestDeserialize: (buffer) => buffer,
      responseSerialize: (buffer) => buffer,
    },
  };
  grpcServer.addService(service, {
    Export: (call, callback) => {
      const entry = handle('grpc', signal, upstream.Export.path,
                           headersOf(call.metadata.getMap()), null, null, call.request);
      if (entry.outcome === 'hung') {
        entry.status = null;
        record(entry);
        pendingCalls.add(call);
        call.on('cancelled', () => pendingCalls.delete(call));
        return;
      }
      if (entry.outcome === 'ok') {
        entry.grpcCode = grpc.status.OK;
        record(entry);
        callback(null, successBody(signal));
        return;
      }
      const code = entry.outcome === 'failed' ? grpcCodeForHttp(options.failWithStatus)
                                              : grpc.status.INVALID_ARGUMENT;
      const message = entry.outcome === 'failed' ? 'fault injected by test receiver'
                                                 : entry.decodeError;
      entry.grpcCode = code;
      record(entry);
      const trailers = new grpc.Metadata();
      trailers.set('grpc-status-details-bin',
                   rpcStatusBytes(code, message, entry.outcome === 'failed'));
      callback({ code, details: message, metadata: trailers });
    },
  });
}

// ---- start and stop --------------------------------------------------------

function listenHttp() {
  return new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.httpPort, '127.0.0.1', () => resolve(httpServer.address().port));
  });
}

function listenGrpc() {
  return new Promise((resolve, reject) => {
    grpcServer.bindAsync(`127.0.0.1:${options.grpcPort}`, grpc.ServerCredentials.createInsecure(),
                         (error, port) => (error ? reject(error) : resolve(port)));
  });
}

function shutdown() {
  for (const socket of hungSockets) socket.destroy();
  grpcServer.forceShutdown();
  httpServer.close();
  httpServer.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

Promise.all([listenGrpc(), listenHttp()]).then(
  ([grpcPort, httpPort]) => {
    fs.writeFileSync(options.out, '', { flag: 'a' });
    process.stdout.write(`READY grpc=${grpcPort} http=${httpPort}\n`);
  },
  (error) => {
    process.stderr.write(`receiver.js: cannot listen: ${error.message}\n`);
    process.exit(1);
  });
