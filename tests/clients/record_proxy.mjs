#!/usr/bin/env node
// Recording HTTP proxy: forwards every request to an upstream base URL, streams the response
// back unchanged (SSE included), and writes each request as one numbered JSON file.
//
// Usage: node record_proxy.mjs --port PORT --upstream http://127.0.0.1:18080 --out DIR
//        [--host 127.0.0.1] [--log FILE] [--max-tokens N] [--inject JSON] [--script FILE]
//
// --port 0 takes a free port; the first log line says which ("listening on http://H:PORT -> ...").
//
// --max-tokens N: clamps the generation limit of the request *forwarded* upstream (max_tokens,
// max_output_tokens, max_completion_tokens, n_predict in a JSON body) to at most N; the recorded
// request stays as the client sent it. For random test models: llama-server's -n is only a
// default, a client's max_tokens (Claude Code sends 32000) overrides it.
// --inject JSON: a JSON object whose keys are set (shallow) in every forwarded JSON object body,
// e.g. '{"logit_bias":{"151645":7}}' (llama-server: /v1/chat/completions and /v1/responses pass
// it through) or '{"stop_sequences":["e","a"]}' (/v1/messages keeps only stop_sequences,
// temperature, top_p, top_k): makes a random model end its turn early with a normal stop reason
// instead of hitting the token limit (Claude Code treats stop_reason "max_tokens" as an error).
// Both leave the recording alone; each record notes what was changed in "proxy_forwarded".
// --script FILE: canned replies, to make a CLI call its tools with a model that never would.
// FILE is JSON: {"replies": [{"path": "/v1/messages", "status": 200,
//   "content_type": "text/event-stream", "sse": [["event name" or null, {data}], ...]}
//   or "body": "raw text" instead of "sse"; optional "headers_delay_ms" (wait before sending
//   the status line) and "body_delay_ms" (wait between the headers and the body), to see how a
//   client reacts to a slow first byte or an idle stream]}. The replies are used in order, each
// once: a POST whose path (without query) equals the next reply's path gets that reply instead
// of being forwarded (the record then has "response.scripted": true); the rest is forwarded.
//
// Each request becomes DIR/NNNN.json:
//   { "seq", "time", "method", "path" (with query), "headers" (auth values -> "REDACTED"),
//     "body" (parsed JSON, else "body_text" / "body_base64"; a gzip/deflate/br Content-Encoding
//     is undone for the record and noted as "body_content_encoding"; zstd is not, Node 20 lacks it),
//     "response": { "status", "headers", "duration_ms", "bytes", "body_text" (first 64 KiB) } }
// The response part is added once the upstream reply has finished (the file is rewritten then);
// a file without "response" means the client or upstream went away mid-request.
// One line per request goes to stderr (or --log FILE). Plain Node >= 18, no dependencies.
// Bodies are recorded as sent; only header values are redacted (see SECRET_HEADERS).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

function parseArgs(argv) {
  const a = { host: '127.0.0.1', port: 0, upstream: '', out: '', log: '', maxTokens: 0, inject: null, script: null };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--port') { a.port = Number(v); i++; }
    else if (k === '--host') { a.host = v; i++; }
    else if (k === '--upstream') { a.upstream = v; i++; }
    else if (k === '--out') { a.out = v; i++; }
    else if (k === '--log') { a.log = v; i++; }
    else if (k === '--max-tokens') { a.maxTokens = Number(v); i++; }
    else if (k === '--inject') { a.inject = JSON.parse(v); i++; }
    else if (k === '--script') { a.script = JSON.parse(fs.readFileSync(v, 'utf8')).replies; i++; }
    else if (k === '-h' || k === '--help') {
      console.log('usage: record_proxy.mjs --port PORT --upstream URL --out DIR [--host H] [--log FILE] [--max-tokens N] [--inject JSON] [--script FILE]');
      process.exit(0);
    } else { console.error(`record_proxy: unknown argument ${k}`); process.exit(2); }
  }
  if (!a.upstream || !a.out || !Number.isInteger(a.port)) {
    console.error('record_proxy: --port, --upstream and --out are required');
    process.exit(2);
  }
  return a;
}

const args = parseArgs(process.argv);
const upstream = new URL(args.upstream);
// Path prefix of the upstream base URL (usually ""), prepended to each forwarded path.
const upstreamPrefix = upstream.pathname.replace(/\/+$/, '');
fs.mkdirSync(args.out, { recursive: true });
const logStream = args.log ? fs.createWriteStream(args.log, { flags: 'a' }) : process.stderr;
const log = (s) => logStream.write(s + '\n');

// Header names whose values are secrets (case-insensitive), plus anything that looks like one.
const SECRET_HEADERS = new Set([
  'authorization', 'proxy-authorization', 'x-api-key', 'api-key', 'cookie', 'set-cookie',
  'openai-api-key', 'x-goog-api-key', 'anthropic-api-key',
]);
const isSecretHeader = (name) =>
  SECRET_HEADERS.has(name) || /(^|-)(token|secret|api-key|apikey|auth)($|-)/.test(name);

// Hop-by-hop headers are not forwarded (RFC 9110 7.6.1).
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te',
  'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);

function redactHeaders(raw) {
  // rawHeaders keeps the client's spelling and order; record those.
  const out = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const value = isSecretHeader(name.toLowerCase()) ? 'REDACTED' : raw[i + 1];
    if (name in out) out[name] = [].concat(out[name], value);
    else out[name] = value;
  }
  return out;
}

const DECOMPRESS = { gzip: zlib.gunzipSync, 'x-gzip': zlib.gunzipSync, deflate: zlib.inflateSync,
  br: zlib.brotliDecompressSync };

function decodeBody(raw, contentType, contentEncoding) {
  if (raw.length === 0) return {};
  let buf = raw;
  const enc = (contentEncoding || '').trim().toLowerCase();
  let note = {};
  if (enc && enc !== 'identity') {
    if (!DECOMPRESS[enc]) return { body_content_encoding: enc, body_base64: raw.toString('base64') };
    try { buf = DECOMPRESS[enc](raw); note = { body_content_encoding: enc }; } catch {
      return { body_content_encoding: enc, body_base64: raw.toString('base64') };
    }
  }
  return { ...note, ...decodeText(buf, contentType) };
}

function decodeText(buf, contentType) {
  const text = buf.toString('utf8');
  if (/json/i.test(contentType || '') || /^\s*[[{]/.test(text)) {
    try { return { body: JSON.parse(text) }; } catch { /* fall through */ }
  }
  if (Buffer.from(text, 'utf8').equals(buf)) return { body_text: text };
  return { body_base64: buf.toString('base64') };
}

const LIMIT_KEYS = ['max_tokens', 'max_output_tokens', 'max_completion_tokens', 'n_predict'];

// The body to forward: the client's bytes, or a modified copy (--max-tokens, --inject);
// `changes` collects what was changed, for the record.
function forwardBody(buf, parsed, changes) {
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return buf;
  if (!args.maxTokens && !args.inject) return buf;
  const copy = { ...parsed };
  if (args.maxTokens) {
    for (const k of LIMIT_KEYS) {
      if (typeof copy[k] === 'number' && copy[k] > args.maxTokens) {
        changes[k] = args.maxTokens;
        copy[k] = args.maxTokens;
      }
    }
  }
  if (args.inject) {
    for (const [k, v] of Object.entries(args.inject)) { changes[k] = v; copy[k] = v; }
  }
  return Object.keys(changes).length ? Buffer.from(JSON.stringify(copy)) : buf;
}

// How much of each upstream response body the record keeps (the client gets all of it).
const RESPONSE_KEEP = 64 * 1024;

// The next canned reply (--script) if it is for this request, else null.
let scriptPos = 0;
function takeScripted(req) {
  if (!args.script || scriptPos >= args.script.length || req.method !== 'POST') return null;
  const r = args.script[scriptPos];
  if (new URL(req.url, 'http://x').pathname !== r.path) return null;
  scriptPos++;
  let body = r.body ?? '';
  if (r.sse) {
    body = r.sse.map(([ev, data]) =>
      (ev ? `event: ${ev}\n` : '') + `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`).join('');
  }
  return { status: r.status ?? 200, contentType: r.content_type ?? 'text/event-stream', body,
    headersDelay: r.headers_delay_ms ?? 0, bodyDelay: r.body_delay_ms ?? 0 };
}

let seq = 0;

const server = http.createServer((req, res) => {
  const n = ++seq;
  const started = Date.now();
  const file = path.join(args.out, String(n).padStart(4, '0') + '.json');
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const rawBody = Buffer.concat(chunks);
    const decoded = decodeBody(rawBody, req.headers['content-type'], req.headers['content-encoding']);
    const changes = {};
    const body = forwardBody(rawBody, decoded.body, changes);
    const forwardedPlain = body !== rawBody; // a modified copy is sent uncompressed
    const record = {
      seq: n,
      time: new Date(started).toISOString(),
      method: req.method,
      path: req.url,
      http_version: req.httpVersion,
      headers: redactHeaders(req.rawHeaders),
      ...decoded,
    };
    if (Object.keys(changes).length) record.proxy_forwarded = changes;
    const write = () => fs.writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
    write();

    const canned = takeScripted(req);
    if (canned) {
      const which = scriptPos;
      const finish = () => {
        res.end(canned.body);
        record.response = { status: canned.status, scripted: true, duration_ms: Date.now() - started,
          bytes: Buffer.byteLength(canned.body), body_text: canned.body };
        write();
        log(`[proxy] #${n} ${req.method} ${req.url} -> ${canned.status} scripted reply ${which}` +
            (res.destroyed ? ' (client had gone)' : ''));
      };
      setTimeout(() => {
        if (res.destroyed) { finish(); return; }
        res.writeHead(canned.status, { 'content-type': canned.contentType, 'cache-control': 'no-cache' });
        res.flushHeaders();
        setTimeout(finish, canned.bodyDelay);
      }, canned.headersDelay);
      return;
    }

    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (!HOP.has(k)) headers[k] = v;
    }
    headers.host = upstream.host;
    if (forwardedPlain) delete headers['content-encoding'];
    if (body.length || 'content-length' in headers) headers['content-length'] = String(body.length);

    const up = http.request({
      protocol: upstream.protocol,
      hostname: upstream.hostname,
      port: upstream.port || 80,
      method: req.method,
      path: upstreamPrefix + req.url,
      headers,
    }, (upRes) => {
      // Pass status and headers through; stream the body chunk by chunk (no buffering, so SSE
      // events reach the client as the upstream writes them).
      const outHeaders = {};
      for (const [k, v] of Object.entries(upRes.headers)) {
        if (!HOP.has(k)) outHeaders[k] = v;
      }
      res.writeHead(upRes.statusCode, upRes.statusMessage, outHeaders);
      res.flushHeaders();
      let bytes = 0;
      const kept = [];
      upRes.on('data', (c) => {
        if (bytes < RESPONSE_KEEP) kept.push(c.subarray(0, RESPONSE_KEEP - bytes));
        bytes += c.length;
        res.write(c);
      });
      upRes.on('end', () => {
        res.end();
        record.response = {
          status: upRes.statusCode,
          headers: upRes.headers,
          duration_ms: Date.now() - started,
          bytes,
        };
        // The reply as received (SSE events included), for reading, not byte-exact.
        record.response.body_text = Buffer.concat(kept).toString('utf8');
        if (bytes > RESPONSE_KEEP) record.response.body_truncated = true;
        write();
        log(`[proxy] #${n} ${req.method} ${req.url} -> ${upRes.statusCode} ` +
            `${bytes}B ${Date.now() - started}ms`);
      });
      upRes.on('error', (e) => { log(`[proxy] #${n} upstream stream error: ${e.message}`); res.destroy(e); });
    });
    up.on('error', (e) => {
      log(`[proxy] #${n} ${req.method} ${req.url} -> upstream error: ${e.message}`);
      record.response = { error: e.message, duration_ms: Date.now() - started };
      write();
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { type: 'proxy_error', message: e.message } }));
      } else {
        res.destroy(e);
      }
    });
    // If the client disconnects early (e.g. aborts a stream), abort the upstream request too.
    res.on('close', () => { if (!res.writableFinished) up.destroy(); });
    up.end(body);
  });
});

// Agent CLIs keep connections alive and may wait long for the first token: no server timeouts.
server.requestTimeout = 0;
server.headersTimeout = 0;
server.keepAliveTimeout = 65_000;
server.timeout = 0;

server.listen(args.port, args.host, () => {
  const addr = server.address();
  log(`[proxy] listening on http://${addr.address}:${addr.port} -> ${args.upstream}, recording to ${args.out}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { server.close(); process.exit(0); });
}
