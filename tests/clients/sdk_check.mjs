#!/usr/bin/env node
// sdk_check.mjs: drives a server with the vendors' official SDKs, so that their own parsers and
// stream accumulators judge the wire format.
//
//   node tests/clients/sdk_check.mjs --base http://127.0.0.1:PORT --api messages|responses|chat
//        [--check NAME...] [--model ID] [--timeout S] [--verbose]
//        [--keepalive-words N] [--keepalive-max-gap S]
//
//   --api messages   Anthropic SDK (@anthropic-ai/sdk): client.messages.create / .stream / .countTokens
//   --api responses  OpenAI SDK (openai): client.responses.create / .stream / .inputTokens.count
//   --api chat       OpenAI SDK: client.chat.completions.create / .stream
//
// Checks (default: plain tool errors tokens; keepalive only when named):
//   plain      one short user turn, whole and streamed; usage present; the stream's event order
//   tool       a forced call of get_weather (by name and "any"/"required"), whole and streamed;
//              the arguments must match the tool's bounded schema
//   errors     bad requests -> 400 with the protocol's error shape, as the SDK parses it
//   tokens     the token-count endpoint agrees with usage.input_tokens of the same request served
//              (messages, responses; not defined for chat)
//   keepalive  raw fetch of a streaming request with a long prompt; reports the largest gap
//              between received bytes (the server must send SSE comments / ping events at least
//              every 5 s while it prefills); ok when that gap <= --keepalive-max-gap (default 6 s)
//
// Each check prints one JSON line {"check":NAME,"ok":BOOL,"detail":...} on stdout; the exit code is
// 1 when any check fails (2 for bad arguments). detail.cases lists each request with its verdict;
// a failed case has error.message (the first deviation, from the SDK or from these checks) and,
// for a stream the SDK rejected, error.wire (the first deviation found in the bytes themselves).
// The model id is --model, else the first id of GET /v1/models. Every request has a 120 s timeout
// (--timeout) and no retries (maxRetries: 0). --verbose writes each SSE message to stderr.
//
// How streams are judged: the SDK's own stream helper consumes the stream (messages.stream ->
// finalMessage(), responses.stream -> finalResponse(), chat.completions.stream ->
// finalChatCompletion()), and the client's fetch keeps a copy of the bytes, which are then checked
// against the documented event grammar (the helpers tolerate some omissions, e.g. a missing
// sequence_number or content_block index, and mutate the events they hand out):
//   messages:  every SSE message has "event: T" with data.type == T (the SDK drops unnamed ones);
//              message_start{message:{id,type,role,content:[],model,stop_reason:null,usage}}
//              (content_block_start{index:i} content_block_delta{index:i}* content_block_stop{index:i})
//              for i = 0,1,..; message_delta{delta:{stop_reason,stop_sequence},usage:{output_tokens}};
//              message_stop. ping events and ':' comments may come anywhere.
//   responses: response.created, response.in_progress, then per output item
//              output_item.added{output_index, item(status in_progress, id)} ... output_item.done,
//              then response.completed (or response.incomplete); every event has an increasing
//              sequence_number; item events carry output_index, item_id, content_index; text =
//              the deltas' concatenation everywhere it is repeated. Keepalives: ':' comments or
//              {"type":"keepalive"}; any other unknown event type makes the SDK throw.
//   chat:      chat.completion.chunk objects with one id; the first delta has role "assistant";
//              a tool call's first delta has id, type "function" and function.name; one
//              finish_reason; a usage chunk (stream_options.include_usage); "data: [DONE]" last.
// A reply whose output tokens reach the request's limit must say so: stop_reason "max_tokens",
// status "incomplete" with incomplete_details.reason "max_output_tokens", finish_reason "length".
// The tokens check for messages accepts a count equal to usage.input_tokens or to input_tokens +
// cache_read_input_tokens + cache_creation_input_tokens (Anthropic's input_tokens leaves out the
// cached part; detail.matched says which); for responses, usage.input_tokens includes
// input_tokens_details.cached_tokens, so the count must equal it.

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

// ---------------------------------------------------------------- arguments

function usage(msg) {
  if (msg) console.error(`sdk_check: ${msg}`);
  console.error('usage: node tests/clients/sdk_check.mjs --base http://127.0.0.1:PORT --api messages|responses|chat ' +
    '[--check plain|tool|errors|tokens|keepalive ...] [--model ID] [--timeout S] [--verbose] ' +
    '[--keepalive-words N] [--keepalive-max-gap S]');
  process.exit(2);
}

const ALL_CHECKS = ['plain', 'tool', 'errors', 'tokens', 'keepalive'];
const opts = { base: null, api: null, checks: [], model: null, timeout: 120, verbose: false,
  keepaliveWords: 6000, keepaliveMaxGap: 6 };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
    if (a === '--base') opts.base = val().replace(/\/+$/, '');
    else if (a === '--api') opts.api = val();
    else if (a === '--model') opts.model = val();
    else if (a === '--timeout') opts.timeout = Number(val());
    else if (a === '--verbose' || a === '-v') opts.verbose = true;
    else if (a === '--keepalive-words') opts.keepaliveWords = Number(val());
    else if (a === '--keepalive-max-gap') opts.keepaliveMaxGap = Number(val());
    else if (a === '--check') {
      // --check a b c   and   --check a --check b   and   --check a,b
      let n = 0;
      while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
        opts.checks.push(...argv[++i].split(',').filter(Boolean));
        n++;
      }
      if (!n) usage('--check needs a name');
    } else if (a === '-h' || a === '--help') usage();
    else usage(`unknown argument ${a}`);
  }
  if (!opts.base) usage('--base is required');
  if (!['messages', 'responses', 'chat'].includes(opts.api)) usage('--api must be messages, responses or chat');
  for (const c of opts.checks) if (!ALL_CHECKS.includes(c)) usage(`unknown check ${c}`);
  if (!opts.checks.length) opts.checks = ['plain', 'tool', 'errors', 'tokens'];
}
const TIMEOUT_MS = opts.timeout * 1000;

// ---------------------------------------------------------------- helpers

class CheckFailure extends Error {}
function need(cond, msg) { if (!cond) throw new CheckFailure(msg); }
const isInt = (v) => Number.isInteger(v);
const isNonNegInt = (v) => Number.isInteger(v) && v >= 0;
const isStr = (v) => typeof v === 'string';
const isNonEmptyStr = (v) => typeof v === 'string' && v.length > 0;
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const trunc = (s, n = 300) => (typeof s === 'string' && s.length > n ? s.slice(0, n) + `...(${s.length} chars)` : s);
function vlog(...a) { if (opts.verbose) console.error(...a); }

// The SDK clients get this fetch: it hands them the response untouched and keeps a copy of every
// text/event-stream body, so that the checks judge the bytes on the wire (the SDKs' stream
// helpers mutate the events they hand out, and drop some: pings, events without a name).
let lastStream = null;
async function recordingFetch(url, init) {
  const r = await fetch(url, init);
  if (!(r.headers.get('content-type') ?? '').includes('text/event-stream') || !r.body) return r;
  const [mine, theirs] = r.body.tee();
  const rec = { url: String(url), text: '' };
  rec.done = (async () => {
    const reader = mine.getReader();
    const dec = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        rec.text += dec.decode(value, { stream: true });
      }
    } catch (e) { rec.error = e; }
  })();
  lastStream = rec;
  const out = new Response(theirs, { status: r.status, statusText: r.statusText, headers: r.headers });
  Object.defineProperty(out, 'url', { value: r.url });
  return out;
}
// Runs an SDK stream helper (sdkPart), then checks the recorded bytes (wirePart(sse) -> events).
// When the SDK throws, the wire checks still run on what arrived, and the error carries their
// verdict in .wire (the first protocol deviation found in the bytes, or 'no deviation found').
async function sdkStream(sdkPart, wirePart) {
  lastStream = null;
  let final;
  try {
    final = await sdkPart();
  } catch (e) {
    if (lastStream) {
      try {
        const sse = await takeStream();
        wirePart(sse);
        e.wire = 'no deviation found in the bytes received';
      } catch (w) { e.wire = String(w.message); }
    }
    throw e;
  }
  const sse = await takeStream();
  return { final, ...wirePart(sse) };
}
async function takeStream() {
  const rec = lastStream;
  lastStream = null;
  need(rec, 'no event stream was recorded');
  await rec.done;
  return parseSSE(rec.text);
}
// SSE per the WHATWG rules the SDKs follow: blank line ends a message; ':' lines are comments.
function parseSSE(text) {
  const msgs = [];
  let comments = 0;
  let cur = { event: null, data: [] };
  for (let line of text.split('\n')) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '') {
      if (cur.event !== null || cur.data.length) msgs.push({ event: cur.event, data: cur.data.join('\n') });
      cur = { event: null, data: [] };
      continue;
    }
    if (line.startsWith(':')) { comments++; continue; }
    const k = line.indexOf(':');
    const field = k < 0 ? line : line.slice(0, k);
    let value = k < 0 ? '' : line.slice(k + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') cur.event = value;
    else if (field === 'data') cur.data.push(value);
  }
  const unterminated = cur.event !== null || cur.data.length > 0;
  if (unterminated) msgs.push({ event: cur.event, data: cur.data.join('\n') });
  for (const m of msgs) {
    if (m.data === '[DONE]') { m.done = true; continue; }
    try { m.json = JSON.parse(m.data); } catch { m.bad = true; }
    vlog('sse', m.event ?? '-', m.data);
  }
  return { msgs, comments, unterminated, bytes: text.length };
}

function describeError(e) {
  if (!e) return String(e);
  const o = { name: e.name || e.constructor?.name, message: trunc(String(e.message), 600) };
  if (e.status !== undefined) o.status = e.status;
  if (e.error !== undefined) o.body = e.error;
  if (e.cause) o.cause = trunc(String(e.cause?.message ?? e.cause), 300);
  if (e.wire !== undefined) o.wire = e.wire;
  if (!(e instanceof CheckFailure) && e.stack && !(e.status >= 400)) o.at = e.stack.split('\n').slice(1, 4).map((s) => s.trim());
  return o;
}

// A case is one request (or one request pair); a check is a list of cases.
async function runCase(name, fn) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    return { case: name, ok: true, ms: Date.now() - t0, ...(detail ?? {}) };
  } catch (e) {
    return { case: name, ok: false, ms: Date.now() - t0, error: describeError(e) };
  }
}

let anyFailed = false;
function report(check, ok, detail) {
  if (!ok) anyFailed = true;
  process.stdout.write(JSON.stringify({ check, ok, detail }) + '\n');
}

async function getModel() {
  if (opts.model) return opts.model;
  const r = await fetch(`${opts.base}/v1/models`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  if (!r.ok) throw new Error(`GET /v1/models: HTTP ${r.status}`);
  const j = await r.json();
  const id = j?.data?.[0]?.id ?? j?.models?.[0]?.id ?? j?.models?.[0]?.model;
  if (!isNonEmptyStr(id)) throw new Error(`GET /v1/models: no model id in ${trunc(JSON.stringify(j))}`);
  return id;
}

// The tool of the `tool` check: arguments are bounded, since the server's model may have random
// weights and writes whatever the grammar allows.
const WEATHER_SCHEMA = {
  type: 'object',
  properties: {
    city: { type: 'string', enum: ['Paris', 'Oslo'] },
    unit: { type: 'string', enum: ['c', 'f'] },
  },
  required: ['city', 'unit'],
};
const WEATHER_DESC = 'Get the current weather of a city.';
const TOOL_PROMPT = 'What is the weather in Paris, in celsius?';

function checkWeatherArgs(args, where) {
  need(isObj(args), `${where}: tool input is not an object: ${trunc(JSON.stringify(args))}`);
  need(['Paris', 'Oslo'].includes(args.city), `${where}: city ${JSON.stringify(args.city)} is not in the enum`);
  need(['c', 'f'].includes(args.unit), `${where}: unit ${JSON.stringify(args.unit)} is not in the enum`);
  const extra = Object.keys(args).filter((k) => k !== 'city' && k !== 'unit');
  return extra.length ? { extra_keys: extra } : {};
}
function parseArgs(s, where) {
  need(isStr(s), `${where}: arguments is not a string: ${typeof s}`);
  try { return JSON.parse(s); } catch { throw new CheckFailure(`${where}: arguments are not JSON: ${trunc(s)}`); }
}

// A long prompt of common words in random order (a fresh prefix each run, so no cache hit).
function longPrompt(words) {
  const vocab = ('time year people way day man thing woman life child world school state family student group ' +
    'country problem hand part place case week company system program question work government number night ' +
    'point home water room mother area money story fact month lot right study book eye job word business issue ' +
    'side kind head house service friend father power hour game line end member law car city community name ' +
    'president team minute idea kid body information back parent face others level office door health person ' +
    'art war history party result change morning reason research girl guy moment air teacher force education').split(' ');
  let seed = (Date.now() ^ (process.pid << 8)) >>> 0;
  const rnd = () => { seed = (seed * 1664525 + 1013904223) >>> 0; return seed; };
  const out = [];
  for (let i = 0; i < words; i++) out.push(vocab[rnd() % vocab.length]);
  return `Here is a list of words: ${out.join(' ')}. Say how many words there are.`;
}

// ---------------------------------------------------------------- Anthropic Messages

function anthropicClient() {
  return new Anthropic({ baseURL: opts.base, apiKey: 'sk-ant-none', maxRetries: 0, timeout: TIMEOUT_MS, fetch: recordingFetch });
}

function checkAnthropicUsage(u, where, { streamedStart = false } = {}) {
  need(isObj(u), `${where}: usage missing`);
  need(isInt(u.input_tokens) && (streamedStart || u.input_tokens > 0), `${where}: usage.input_tokens ${u.input_tokens}`);
  need(isNonNegInt(u.output_tokens), `${where}: usage.output_tokens ${u.output_tokens}`);
  need(isNonNegInt(u.cache_read_input_tokens), `${where}: usage.cache_read_input_tokens ${u.cache_read_input_tokens} (must be present)`);
  if (u.cache_creation_input_tokens != null) need(isNonNegInt(u.cache_creation_input_tokens), `${where}: usage.cache_creation_input_tokens ${u.cache_creation_input_tokens}`);
}

function checkAnthropicBlock(b, where) {
  need(isObj(b), `${where}: block is not an object`);
  switch (b.type) {
    case 'text': need(isStr(b.text), `${where}: text block without text`); break;
    case 'thinking': need(isStr(b.thinking), `${where}: thinking block without thinking`);
      need(isStr(b.signature), `${where}: thinking block without signature`); break;
    case 'redacted_thinking': need(isStr(b.data), `${where}: redacted_thinking without data`); break;
    case 'tool_use': need(isNonEmptyStr(b.id), `${where}: tool_use without id`);
      need(isNonEmptyStr(b.name), `${where}: tool_use without name`);
      need(isObj(b.input), `${where}: tool_use input is not an object`); break;
    default: need(false, `${where}: unknown content block type ${JSON.stringify(b.type)}`);
  }
}

function checkAnthropicMessage(m, where) {
  need(isObj(m), `${where}: not an object`);
  need(m.type === 'message', `${where}: type ${JSON.stringify(m.type)}, want "message"`);
  need(isNonEmptyStr(m.id), `${where}: id missing`);
  need(m.role === 'assistant', `${where}: role ${JSON.stringify(m.role)}`);
  need(isNonEmptyStr(m.model), `${where}: model missing`);
  need(Array.isArray(m.content), `${where}: content is not an array`);
  m.content.forEach((b, i) => checkAnthropicBlock(b, `${where}: content[${i}]`));
  need(['end_turn', 'max_tokens', 'stop_sequence', 'tool_use', 'pause_turn', 'refusal'].includes(m.stop_reason),
    `${where}: stop_reason ${JSON.stringify(m.stop_reason)}`);
  need('stop_sequence' in m, `${where}: stop_sequence field missing (null when none)`);
  checkAnthropicUsage(m.usage, where);
}

// Validates the raw event sequence of one Messages stream (ping events never reach here: the SDK
// drops them). Returns a summary.
function checkAnthropicEvents(events) {
  need(events.length > 0, 'stream: no events');
  const types = events.map((e) => e.type);
  need(types[0] === 'message_start', `stream: first event is ${types[0]}, want message_start`);
  const start = events[0].message;
  need(isObj(start), 'message_start: message missing');
  need(start.type === 'message' && start.role === 'assistant', 'message_start: message.type/role');
  need(isNonEmptyStr(start.id), 'message_start: message.id missing');
  need(Array.isArray(start.content) && start.content.length === 0, 'message_start: message.content must be []');
  need(isObj(start.usage), 'message_start: message.usage missing (the SDK crashes on message_delta without it)');
  need(isInt(start.usage.input_tokens), 'message_start: message.usage.input_tokens missing');
  need(isInt(start.usage.output_tokens), 'message_start: message.usage.output_tokens missing');
  let open = null; // {index, type}
  let next = 0;
  const blocks = [];
  let sawDelta = false;
  let i = 1;
  for (; i < events.length; i++) {
    const e = events[i];
    if (e.type === 'content_block_start') {
      need(!open, `event ${i}: content_block_start while block ${open?.index} is open`);
      need(e.index === next, `event ${i}: content_block_start.index ${e.index}, want ${next}`);
      need(isObj(e.content_block), `event ${i}: content_block missing`);
      const b = e.content_block;
      if (b.type === 'text') need(b.text === '', `event ${i}: text block must start with text ""`);
      else if (b.type === 'tool_use') {
        need(isNonEmptyStr(b.id) && isNonEmptyStr(b.name), `event ${i}: tool_use start needs id and name`);
        need(isObj(b.input), `event ${i}: tool_use start needs input {}`);
      } else if (b.type === 'thinking') need(isStr(b.thinking), `event ${i}: thinking start needs thinking ""`);
      else need(b.type === 'redacted_thinking', `event ${i}: unknown block type ${b.type}`);
      open = { index: e.index, type: b.type, deltas: 0, text: '' };
    } else if (e.type === 'content_block_delta') {
      need(open, `event ${i}: content_block_delta outside a block`);
      need(e.index === open.index, `event ${i}: content_block_delta.index ${e.index}, open block ${open.index}`);
      const d = e.delta;
      need(isObj(d), `event ${i}: delta missing`);
      const allowed = { text: ['text_delta', 'citations_delta'], tool_use: ['input_json_delta'],
        thinking: ['thinking_delta', 'signature_delta'], redacted_thinking: [] }[open.type];
      need(allowed.includes(d.type), `event ${i}: delta ${d.type} in a ${open.type} block`);
      if (d.type === 'text_delta') { need(isStr(d.text), `event ${i}: text_delta.text`); open.text += d.text; }
      if (d.type === 'input_json_delta') { need(isStr(d.partial_json), `event ${i}: input_json_delta.partial_json`); open.text += d.partial_json; }
      if (d.type === 'thinking_delta') { need(isStr(d.thinking), `event ${i}: thinking_delta.thinking`); open.text += d.thinking; }
      if (d.type === 'signature_delta') need(isStr(d.signature), `event ${i}: signature_delta.signature`);
      open.deltas++;
    } else if (e.type === 'content_block_stop') {
      need(open, `event ${i}: content_block_stop outside a block`);
      need(e.index === open.index, `event ${i}: content_block_stop.index ${e.index}, open block ${open.index}`);
      blocks.push(open); open = null; next++;
    } else if (e.type === 'message_delta') {
      need(!open, `event ${i}: message_delta while block ${open?.index} is open`);
      need(isObj(e.delta) && isStr(e.delta.stop_reason), `event ${i}: message_delta.delta.stop_reason missing`);
      need('stop_sequence' in e.delta, `event ${i}: message_delta.delta.stop_sequence missing (null when none)`);
      need(isObj(e.usage) && isNonNegInt(e.usage.output_tokens), `event ${i}: message_delta.usage.output_tokens missing (the SDK crashes without usage)`);
      sawDelta = true;
    } else if (e.type === 'message_stop') {
      break;
    } else {
      need(false, `event ${i}: unexpected event type ${JSON.stringify(e.type)}`);
    }
    if (sawDelta && e.type !== 'message_delta') need(false, `event ${i}: ${e.type} after message_delta`);
  }
  need(i < events.length, 'stream: no message_stop');
  need(i === events.length - 1, `stream: events after message_stop: ${types.slice(i + 1).join(',')}`);
  need(sawDelta, 'stream: no message_delta before message_stop');
  return { events: events.length, blocks: blocks.map((b) => ({ type: b.type, deltas: b.deltas, text: trunc(b.text, 80) })), start_usage: start.usage };
}

async function messagesStream(client, body) {
  return sdkStream(async () => {
    const stream = client.messages.stream(body);
    for await (const ev of stream) void ev; // the SDK's own accumulator runs on these
    return await stream.finalMessage();
  }, (sse) => messagesWire(sse));
}
function messagesWire(sse) {
  const events = [];
  const wire = { sse_messages: sse.msgs.length, pings: 0, comments: sse.comments };
  sse.msgs.forEach((m, i) => {
    if (m.done) { wire.done_sentinel = true; return; } // not part of the protocol; the SDK skips it (no event name)
    need(!m.bad, `sse message ${i}: data is not JSON: ${trunc(m.data)}`);
    need(m.event !== null, `sse message ${i} (type ${m.json?.type}): no "event:" line; the Anthropic SDK silently drops such messages`);
    need(m.event === m.json?.type, `sse message ${i}: "event: ${m.event}" but data.type ${JSON.stringify(m.json?.type)}`);
    if (m.event === 'ping') { wire.pings++; return; }
    events.push(m.json);
  });
  need(!sse.unterminated, 'sse: the last message is not ended by a blank line');
  return { events, wire, sum: checkAnthropicEvents(events) };
}

// A reply that used the whole budget must say so (clients continue or warn on it).
function anthropicLimit(m, limit, where) {
  if (m.usage.output_tokens >= limit) need(m.stop_reason === 'max_tokens', `${where}: output_tokens ${m.usage.output_tokens} reached max_tokens ${limit} but stop_reason is ${m.stop_reason}, want max_tokens`);
}
function responsesLimit(r, limit, where) {
  if (r.usage.output_tokens >= limit) {
    need(r.status === 'incomplete' && r.incomplete_details?.reason === 'max_output_tokens',
      `${where}: output_tokens ${r.usage.output_tokens} reached max_output_tokens ${limit} but status is ${r.status} (incomplete_details ${JSON.stringify(r.incomplete_details ?? null)}), want incomplete / max_output_tokens`);
  }
}
function chatLimit(finish, usage, limit, where) {
  if (usage && usage.completion_tokens >= limit) need(finish === 'length', `${where}: completion_tokens ${usage.completion_tokens} reached max_tokens ${limit} but finish_reason is ${finish}, want length`);
}

async function messagesPlain(client, model) {
  const body = { model, max_tokens: 32, temperature: 0, thinking: { type: 'disabled' },
    messages: [{ role: 'user', content: 'Say hello in five words.' }] };
  const cases = [];
  cases.push(await runCase('whole', async () => {
    const m = await client.messages.create(body);
    vlog('message', JSON.stringify(m));
    checkAnthropicMessage(m, 'message');
    anthropicLimit(m, body.max_tokens, 'message');
    return { stop_reason: m.stop_reason, usage: m.usage, content_types: m.content.map((b) => b.type),
      text: trunc(m.content.filter((b) => b.type === 'text').map((b) => b.text).join(''), 80) };
  }));
  cases.push(await runCase('stream', async () => {
    const { events, final, wire, sum } = await messagesStream(client, body);
    checkAnthropicMessage(final, 'finalMessage()');
    need(final.content.length === sum.blocks.length, `finalMessage() has ${final.content.length} blocks, the stream ${sum.blocks.length}`);
    const last = events.filter((e) => e.type === 'message_delta').at(-1);
    need(final.stop_reason === last.delta.stop_reason, 'finalMessage().stop_reason differs from message_delta');
    anthropicLimit(final, body.max_tokens, 'finalMessage()');
    return { ...sum, wire, stop_reason: final.stop_reason, usage: final.usage };
  }));
  return cases;
}

async function messagesTool(client, model) {
  const tools = [{ name: 'get_weather', description: WEATHER_DESC, input_schema: WEATHER_SCHEMA }];
  const cases = [];
  for (const [label, tool_choice] of [['named', { type: 'tool', name: 'get_weather' }], ['any', { type: 'any' }]]) {
    const body = { model, max_tokens: 200, temperature: 0, thinking: { type: 'disabled' }, tools, tool_choice,
      messages: [{ role: 'user', content: TOOL_PROMPT }] };
    const checkFinal = (m, where) => {
      checkAnthropicMessage(m, where);
      const uses = m.content.filter((b) => b.type === 'tool_use');
      need(uses.length >= 1, `${where}: no tool_use block (content types: ${m.content.map((b) => b.type).join(',') || 'none'})`);
      need(uses[0].name === 'get_weather', `${where}: tool_use.name ${uses[0].name}`);
      need(m.stop_reason === 'tool_use', `${where}: stop_reason ${m.stop_reason}, want tool_use`);
      return { id: uses[0].id, input: uses[0].input, ...checkWeatherArgs(uses[0].input, where), stop_reason: m.stop_reason,
        content_types: m.content.map((b) => b.type) };
    };
    cases.push(await runCase(`${label}/whole`, async () => {
      const m = await client.messages.create(body);
      vlog('message', JSON.stringify(m));
      return checkFinal(m, 'message');
    }));
    cases.push(await runCase(`${label}/stream`, async () => {
      const { final, wire, sum } = await messagesStream(client, body);
      const r = checkFinal(final, 'finalMessage()');
      const tb = sum.blocks.find((b) => b.type === 'tool_use');
      need(tb && tb.deltas > 0, 'stream: the tool_use block has no input_json_delta');
      return { ...r, events: sum.events, blocks: sum.blocks, wire };
    }));
  }
  return cases;
}

async function expectAnthropicError(fn) {
  try {
    const r = await fn();
    throw new CheckFailure(`no error; got ${trunc(JSON.stringify(r))}`);
  } catch (e) {
    if (e instanceof CheckFailure) throw e;
    need(e instanceof Anthropic.APIError && isInt(e.status), `not an API error: ${e?.name}: ${trunc(String(e?.message))}`);
    need(e.status >= 400 && e.status < 500, `HTTP ${e.status}, want 4xx`);
    need(e instanceof Anthropic.BadRequestError, `${e.constructor?.name} (HTTP ${e.status}), want BadRequestError (400)`);
    const b = e.error;
    need(isObj(b) && b.type === 'error', `body.type ${JSON.stringify(b?.type)}, want "error": ${trunc(JSON.stringify(b))}`);
    need(isObj(b.error) && b.error.type === 'invalid_request_error', `body.error.type ${JSON.stringify(b?.error?.type)}, want invalid_request_error`);
    need(isNonEmptyStr(b.error.message), 'body.error.message missing');
    return { status: e.status, body: b };
  }
}

async function messagesErrors(client, model) {
  const base = { model, max_tokens: 16 };
  const msgs = [{ role: 'user', content: 'Hi' }];
  return [
    await runCase('missing messages', () => expectAnthropicError(() => client.messages.create({ ...base }))),
    await runCase('negative max_tokens', () => expectAnthropicError(() => client.messages.create({ ...base, max_tokens: -1, messages: msgs }))),
    await runCase('unknown role', () => expectAnthropicError(() => client.messages.create({ ...base, messages: [{ role: 'wizard', content: 'Hi' }] }))),
    await runCase('stream: unknown role', () => expectAnthropicError(async () => {
      const s = client.messages.stream({ ...base, messages: [{ role: 'wizard', content: 'Hi' }] });
      return await s.finalMessage();
    })),
  ];
}

async function messagesTokens(client, model) {
  const variants = [
    ['text', { messages: [{ role: 'user', content: 'Count my tokens, please.' }] }],
    ['system+tools+turns', {
      system: 'You are a terse assistant.',
      tools: [{ name: 'get_weather', description: WEATHER_DESC, input_schema: WEATHER_SCHEMA }],
      messages: [
        { role: 'user', content: TOOL_PROMPT },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris', unit: 'c' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01', content: '21 C, sunny' }] },
      ],
    }],
  ];
  const cases = [];
  for (const [label, req] of variants) {
    cases.push(await runCase(label, async () => {
      const counted = await client.messages.countTokens({ model, thinking: { type: 'disabled' }, ...req });
      vlog('count_tokens', JSON.stringify(counted));
      need(isObj(counted) && isInt(counted.input_tokens) && counted.input_tokens > 0, `count_tokens: input_tokens ${JSON.stringify(counted?.input_tokens)}`);
      const m = await client.messages.create({ model, max_tokens: 16, temperature: 0, thinking: { type: 'disabled' }, ...req });
      need(isInt(m?.usage?.input_tokens), 'served: usage.input_tokens missing');
      // With a prefix cache, Anthropic's input_tokens counts only the uncached part; the total
      // prompt is input_tokens + cache_read_input_tokens + cache_creation_input_tokens.
      const u = m.usage;
      const total = u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0);
      need(counted.input_tokens === u.input_tokens || counted.input_tokens === total,
        `count_tokens says ${counted.input_tokens}, served usage ${JSON.stringify(u)}`);
      return { counted: counted.input_tokens, served_usage: u,
        matched: counted.input_tokens === u.input_tokens ? 'usage.input_tokens' : 'input_tokens + cache_read + cache_creation' };
    }));
  }
  return cases;
}

// ---------------------------------------------------------------- OpenAI common

function openaiClient() {
  return new OpenAI({ baseURL: `${opts.base}/v1`, apiKey: 'sk-none', maxRetries: 0, timeout: TIMEOUT_MS, fetch: recordingFetch });
}
const NO_THINK = { chat_template_kwargs: { enable_thinking: false } };

async function expectOpenAIError(fn) {
  try {
    const r = await fn();
    throw new CheckFailure(`no error; got ${trunc(JSON.stringify(r))}`);
  } catch (e) {
    if (e instanceof CheckFailure) throw e;
    need(e instanceof OpenAI.APIError && isInt(e.status), `not an API error: ${e?.name}: ${trunc(String(e?.message))}`);
    need(e.status >= 400 && e.status < 500, `HTTP ${e.status}, want 4xx`);
    need(e instanceof OpenAI.BadRequestError, `${e.constructor?.name} (HTTP ${e.status}), want BadRequestError (400)`);
    // The SDK sets e.error to the body's "error" member.
    need(isObj(e.error), `body has no "error" object`);
    need(isNonEmptyStr(e.error.message), 'error.message missing');
    need(isNonEmptyStr(e.error.type), `error.type ${JSON.stringify(e.error.type)} missing`);
    return { status: e.status, error: e.error };
  }
}

// ---------------------------------------------------------------- OpenAI Responses

function checkResponsesUsage(u, where) {
  need(isObj(u), `${where}: usage missing`);
  need(isInt(u.input_tokens) && u.input_tokens > 0, `${where}: usage.input_tokens ${u.input_tokens}`);
  need(isNonNegInt(u.output_tokens), `${where}: usage.output_tokens ${u.output_tokens}`);
  need(isNonNegInt(u.total_tokens), `${where}: usage.total_tokens ${u.total_tokens}`);
  need(isObj(u.input_tokens_details) && isNonNegInt(u.input_tokens_details.cached_tokens),
    `${where}: usage.input_tokens_details.cached_tokens missing`);
  if (u.output_tokens_details != null) need(isNonNegInt(u.output_tokens_details.reasoning_tokens), `${where}: usage.output_tokens_details.reasoning_tokens`);
}

function checkResponsesItem(it, where) {
  need(isObj(it), `${where}: not an object`);
  if (it.type === 'message') {
    need(isNonEmptyStr(it.id), `${where}: message without id`);
    need(it.role === 'assistant', `${where}: role ${it.role}`);
    need(Array.isArray(it.content), `${where}: content is not an array`);
    it.content.forEach((c, j) => {
      need(['output_text', 'refusal'].includes(c.type), `${where}: content[${j}].type ${c.type}`);
      if (c.type === 'output_text') {
        need(isStr(c.text), `${where}: content[${j}].text`);
        need(Array.isArray(c.annotations), `${where}: content[${j}].annotations must be an array`);
      }
    });
  } else if (it.type === 'function_call') {
    need(isNonEmptyStr(it.call_id), `${where}: function_call without call_id`);
    need(isNonEmptyStr(it.name), `${where}: function_call without name`);
    need(isStr(it.arguments), `${where}: function_call arguments must be a string`);
  } else if (it.type === 'reasoning') {
    need(isNonEmptyStr(it.id), `${where}: reasoning without id`);
    need(Array.isArray(it.summary), `${where}: reasoning.summary must be an array`);
  } else need(false, `${where}: unexpected output item type ${it.type}`);
}

function checkResponse(r, where) {
  need(isObj(r), `${where}: not an object`);
  need(r.object === 'response', `${where}: object ${JSON.stringify(r.object)}`);
  need(isNonEmptyStr(r.id), `${where}: id missing`);
  need(isNonEmptyStr(r.model), `${where}: model missing`);
  need(isInt(r.created_at), `${where}: created_at missing`);
  need(['completed', 'incomplete'].includes(r.status), `${where}: status ${JSON.stringify(r.status)}`);
  if (r.status === 'incomplete') need(isObj(r.incomplete_details) && isStr(r.incomplete_details.reason), `${where}: incomplete without incomplete_details.reason`);
  need(Array.isArray(r.output), `${where}: output is not an array`);
  r.output.forEach((it, i) => checkResponsesItem(it, `${where}: output[${i}]`));
  checkResponsesUsage(r.usage, where);
}

// Validates a Responses event sequence (as the SDK's stream handed it over). Returns a summary.
function checkResponsesEvents(events) {
  need(events.length >= 3, `stream: only ${events.length} events`);
  const types = events.map((e) => e.type);
  need(types[0] === 'response.created', `stream: first event ${types[0]}, want response.created`);
  need(types[1] === 'response.in_progress', `stream: second event ${types[1]}, want response.in_progress`);
  const created = events[0].response;
  need(isObj(created) && isNonEmptyStr(created.id), 'response.created: response.id missing');
  need(Array.isArray(created.output), 'response.created: response.output must be an array');
  need(['in_progress', 'queued'].includes(created.status), `response.created: status ${created.status}`);
  let seq = -1;
  events.forEach((e, i) => {
    need(isInt(e.sequence_number), `event ${i} (${e.type}): sequence_number missing`);
    need(e.sequence_number > seq, `event ${i} (${e.type}): sequence_number ${e.sequence_number} after ${seq}`);
    seq = e.sequence_number;
  });
  const last = events.at(-1);
  need(['response.completed', 'response.incomplete'].includes(last.type), `stream: last event ${last.type}, want response.completed`);
  need(last.response.id === created.id, 'terminal event: response.id differs from response.created');
  if (last.type === 'response.incomplete') need(last.response.status === 'incomplete', 'response.incomplete: status');
  else need(last.response.status === 'completed', `response.completed: status ${last.response.status}`);
  const items = [];
  let cur = null;
  for (let i = 2; i < events.length - 1; i++) {
    const e = events[i];
    const t = e.type;
    if (t === 'response.output_item.added') {
      need(!cur, `event ${i}: output_item.added while item ${cur?.index} is open`);
      need(e.output_index === items.length, `event ${i}: output_index ${e.output_index}, want ${items.length}`);
      need(isObj(e.item) && isStr(e.item.type), `event ${i}: item missing`);
      need(e.item.status === 'in_progress', `event ${i}: added item.status ${e.item.status}, want in_progress`);
      cur = { index: e.output_index, type: e.item.type, id: e.item.id, call_id: e.item.call_id, seq: [], text: '', parts: 0 };
      if (e.item.type === 'message') need(Array.isArray(e.item.content) && e.item.content.length === 0, `event ${i}: added message must have content []`);
      if (e.item.type === 'function_call') {
        need(isNonEmptyStr(e.item.call_id) && isNonEmptyStr(e.item.name), `event ${i}: added function_call needs call_id and name`);
        need(isStr(e.item.arguments), `event ${i}: added function_call needs arguments ""`);
      }
      continue;
    }
    need(cur, `event ${i}: ${t} outside an output item`);
    need(e.output_index === cur.index, `event ${i}: ${t}.output_index ${e.output_index}, open item ${cur.index}`);
    if (t !== 'response.output_item.done') need(e.item_id === cur.id, `event ${i}: ${t}.item_id ${e.item_id}, item id ${cur.id}`);
    cur.seq.push(t.replace(/^response\./, ''));
    if (t === 'response.content_part.added') {
      need(cur.type === 'message' || cur.type === 'reasoning', `event ${i}: content_part.added in a ${cur.type}`);
      need(e.content_index === cur.parts, `event ${i}: content_index ${e.content_index}, want ${cur.parts}`);
      need(isObj(e.part), `event ${i}: part missing`);
      if (e.part.type === 'output_text') need(e.part.text === '' && Array.isArray(e.part.annotations), `event ${i}: added output_text part must be {text:"", annotations:[]}`);
      cur.partOpen = true; cur.partText = '';
    } else if (t === 'response.output_text.delta') {
      need(cur.partOpen, `event ${i}: output_text.delta outside a content part`);
      need(e.content_index === cur.parts, `event ${i}: content_index ${e.content_index}`);
      need(isStr(e.delta), `event ${i}: delta not a string`);
      cur.partText += e.delta;
    } else if (t === 'response.output_text.done') {
      need(cur.partOpen, `event ${i}: output_text.done outside a content part`);
      need(e.text === cur.partText, `event ${i}: output_text.done.text differs from the deltas (${trunc(JSON.stringify(e.text), 80)} vs ${trunc(JSON.stringify(cur.partText), 80)})`);
      cur.textDone = true;
    } else if (t === 'response.content_part.done') {
      need(cur.partOpen, `event ${i}: content_part.done without content_part.added`);
      need(e.content_index === cur.parts, `event ${i}: content_index ${e.content_index}`);
      if (e.part?.type === 'output_text') {
        need(cur.textDone, `event ${i}: content_part.done before output_text.done`);
        need(e.part.text === cur.partText, `event ${i}: content_part.done.part.text differs from the deltas`);
      }
      cur.text += cur.partText; cur.parts++; cur.partOpen = false; cur.textDone = false;
    } else if (t === 'response.function_call_arguments.delta') {
      need(cur.type === 'function_call', `event ${i}: ${t} in a ${cur.type}`);
      need(isStr(e.delta), `event ${i}: delta not a string`);
      cur.text += e.delta;
    } else if (t === 'response.function_call_arguments.done') {
      need(cur.type === 'function_call', `event ${i}: ${t} in a ${cur.type}`);
      need(e.arguments === cur.text, `event ${i}: arguments.done differs from the deltas (${trunc(e.arguments, 80)} vs ${trunc(cur.text, 80)})`);
      cur.argsDone = true;
    } else if (t === 'response.output_item.done') {
      need(!cur.partOpen, `event ${i}: output_item.done while a content part is open`);
      need(isObj(e.item) && e.item.type === cur.type, `event ${i}: done item type ${e.item?.type}, added ${cur.type}`);
      need(e.item.id === cur.id, `event ${i}: done item id ${e.item.id}, added ${cur.id}`);
      need(['completed', 'incomplete'].includes(e.item.status), `event ${i}: done item.status ${e.item.status}`);
      checkResponsesItem(e.item, `event ${i}: output_item.done.item`);
      if (cur.type === 'message') {
        need(cur.parts >= 1, `event ${i}: message item without content parts`);
        const txt = e.item.content.filter((c) => c.type === 'output_text').map((c) => c.text).join('');
        need(txt === cur.text, `event ${i}: done message text differs from the deltas`);
      }
      if (cur.type === 'function_call') {
        need(cur.argsDone, `event ${i}: function_call done without function_call_arguments.done`);
        need(e.item.call_id === cur.call_id, `event ${i}: call_id changed (${cur.call_id} -> ${e.item.call_id})`);
        need(e.item.arguments === cur.text, `event ${i}: done arguments differ from the deltas`);
      }
      items.push({ ...cur, item: e.item });
      cur = null;
    } else if (/^response\.(reasoning|reasoning_text|reasoning_summary)/.test(t)) {
      need(cur.type === 'reasoning', `event ${i}: ${t} in a ${cur.type}`);
    } else {
      need(false, `event ${i}: unexpected event ${t}`);
    }
  }
  need(!cur, `stream: item ${cur?.index} never done`);
  const fin = last.response;
  need(Array.isArray(fin.output) && fin.output.length === items.length,
    `${last.type}: response.output has ${fin.output?.length} items, the stream had ${items.length}`);
  fin.output.forEach((it, k) => need(it.type === items[k].type && it.id === items[k].item.id, `${last.type}: output[${k}] differs from the streamed item`));
  checkResponsesUsage(fin.usage, last.type);
  return {
    events: events.length,
    items: items.map((it) => ({ type: it.type, events: compress(it.seq), text: trunc(it.text, 80) })),
    terminal: last.type,
  };
}
function compress(seq) { // ["a","b","b","b","c"] -> ["a","b*3","c"]
  const out = [];
  for (const s of seq) {
    const m = out.length && out.at(-1).match(/^(.*?)(?:\*(\d+))?$/);
    if (m && m[1] === s) out[out.length - 1] = `${s}*${Number(m[2] ?? 1) + 1}`;
    else out.push(s);
  }
  return out;
}

async function responsesStream(client, body) {
  return sdkStream(async () => {
    const stream = client.responses.stream(body);
    for await (const ev of stream) void ev; // the SDK's ResponseStream validates and accumulates these
    return await stream.finalResponse();
  }, (sse) => responsesWire(sse));
}
function responsesWire(sse) {
  const events = [];
  const wire = { sse_messages: sse.msgs.length, comments: sse.comments, keepalive_events: 0, unnamed: 0 };
  sse.msgs.forEach((m, i) => {
    need(!m.done, `sse message ${i}: [DONE] is not part of the Responses protocol`);
    need(!m.bad, `sse message ${i}: data is not JSON: ${trunc(m.data)}`);
    if (m.event === null) wire.unnamed++;
    else need(m.event === m.json?.type, `sse message ${i}: "event: ${m.event}" but data.type ${JSON.stringify(m.json?.type)}`);
    if (m.json?.type === 'keepalive') { wire.keepalive_events++; return; }
    events.push(m.json);
  });
  need(!sse.unterminated, 'sse: the last message is not ended by a blank line');
  return { events, wire, sum: checkResponsesEvents(events) };
}

async function responsesPlain(client, model) {
  const body = { model, input: 'Say hello in five words.', max_output_tokens: 32, temperature: 0, ...NO_THINK };
  const cases = [];
  cases.push(await runCase('whole', async () => {
    const r = await client.responses.create(body);
    vlog('response', JSON.stringify(r));
    checkResponse(r, 'response');
    need(r.output.some((it) => it.type === 'message'), 'response: no message output item');
    responsesLimit(r, body.max_output_tokens, 'response');
    return { status: r.status, usage: r.usage, output_types: r.output.map((it) => it.type), text: trunc(r.output_text, 80) };
  }));
  cases.push(await runCase('stream', async () => {
    const { events, final, wire, sum } = await responsesStream(client, body);
    need(sum.items.some((it) => it.type === 'message'), 'stream: no message output item');
    // The lifecycle the brief asks for, as a subsequence of the event types.
    const want = ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
      'response.output_text.done', 'response.output_item.done'];
    let k = 0;
    for (const e of events) if (k < want.length && e.type === want[k]) k++;
    need(k === want.length, `stream: lifecycle missing ${want[k]}`);
    checkResponse(final, 'finalResponse()');
    responsesLimit(final, body.max_output_tokens, 'finalResponse()');
    if (final.status === 'incomplete') need(sum.terminal === 'response.incomplete', `stream: an incomplete response must end with response.incomplete, not ${sum.terminal}`);
    return { ...sum, wire, status: final.status, usage: final.usage };
  }));
  return cases;
}

async function responsesTool(client, model) {
  const tools = [{ type: 'function', name: 'get_weather', description: WEATHER_DESC, parameters: WEATHER_SCHEMA, strict: false }];
  const cases = [];
  for (const [label, tool_choice] of [['named', { type: 'function', name: 'get_weather' }], ['required', 'required']]) {
    const body = { model, input: TOOL_PROMPT, tools, tool_choice, max_output_tokens: 200, temperature: 0, ...NO_THINK };
    const checkFinal = (r, where) => {
      checkResponse(r, where);
      const calls = r.output.filter((it) => it.type === 'function_call');
      need(calls.length >= 1, `${where}: no function_call item (output types: ${r.output.map((it) => it.type).join(',') || 'none'})`);
      need(calls[0].name === 'get_weather', `${where}: function_call.name ${calls[0].name}`);
      need(r.status === 'completed', `${where}: status ${r.status}`);
      const args = parseArgs(calls[0].arguments, where);
      return { call_id: calls[0].call_id, id: calls[0].id, arguments: calls[0].arguments, ...checkWeatherArgs(args, where),
        output_types: r.output.map((it) => it.type) };
    };
    cases.push(await runCase(`${label}/whole`, async () => {
      const r = await client.responses.create(body);
      vlog('response', JSON.stringify(r));
      return checkFinal(r, 'response');
    }));
    cases.push(await runCase(`${label}/stream`, async () => {
      const { final, wire, sum } = await responsesStream(client, body);
      need(sum.terminal === 'response.completed', `stream: ended with ${sum.terminal}`);
      const fc = sum.items.find((it) => it.type === 'function_call');
      need(fc, 'stream: no function_call item');
      need(fc.events.some((s) => s.startsWith('function_call_arguments.delta')), 'stream: no function_call_arguments.delta');
      return { ...checkFinal(final, 'finalResponse()'), events: sum.events, items: sum.items, wire };
    }));
  }
  return cases;
}

async function responsesErrors(client, model) {
  const base = { model, max_output_tokens: 16 };
  return [
    await runCase('missing input', () => expectOpenAIError(() => client.responses.create({ ...base }))),
    await runCase('negative max_output_tokens', () => expectOpenAIError(() => client.responses.create({ ...base, input: 'Hi', max_output_tokens: -1 }))),
    await runCase('unknown role', () => expectOpenAIError(() => client.responses.create({ ...base, input: [{ role: 'wizard', content: 'Hi' }] }))),
    await runCase('previous_response_id', async () => {
      const r = await expectOpenAIError(() => client.responses.create({ ...base, input: 'Hi', previous_response_id: 'resp_x' }));
      need(/input/i.test(r.error.message), `the message should ask for the full input: ${JSON.stringify(r.error.message)}`);
      return r;
    }),
    await runCase('stream: unknown role', () => expectOpenAIError(async () => {
      const s = client.responses.stream({ ...base, input: [{ role: 'wizard', content: 'Hi' }] });
      return await s.finalResponse();
    })),
  ];
}

async function responsesTokens(client, model) {
  const variants = [
    ['text', { input: 'Count my tokens, please.' }],
    ['instructions+tools+turns', {
      instructions: 'You are a terse assistant.',
      tools: [{ type: 'function', name: 'get_weather', description: WEATHER_DESC, parameters: WEATHER_SCHEMA, strict: false }],
      input: [
        { role: 'user', content: TOOL_PROMPT },
        { type: 'function_call', call_id: 'call_01', name: 'get_weather', arguments: '{"city":"Paris","unit":"c"}' },
        { type: 'function_call_output', call_id: 'call_01', output: '21 C, sunny' },
      ],
    }],
  ];
  const cases = [];
  for (const [label, req] of variants) {
    cases.push(await runCase(label, async () => {
      let counted;
      if (client.responses.inputTokens?.count) counted = await client.responses.inputTokens.count({ model, ...NO_THINK, ...req });
      else {
        const r = await fetch(`${opts.base}/v1/responses/input_tokens`, { method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model, ...NO_THINK, ...req }), signal: AbortSignal.timeout(TIMEOUT_MS) });
        need(r.ok, `POST /v1/responses/input_tokens: HTTP ${r.status}`);
        counted = await r.json();
      }
      vlog('input_tokens', JSON.stringify(counted));
      need(isObj(counted) && isInt(counted.input_tokens) && counted.input_tokens > 0, `input_tokens: ${trunc(JSON.stringify(counted))}`);
      if (counted.object !== undefined) need(counted.object === 'response.input_tokens', `input_tokens: object ${JSON.stringify(counted.object)}, want "response.input_tokens"`);
      const r = await client.responses.create({ model, max_output_tokens: 16, temperature: 0, ...NO_THINK, ...req });
      need(isInt(r?.usage?.input_tokens), 'served: usage.input_tokens missing');
      need(counted.input_tokens === r.usage.input_tokens, `input_tokens says ${counted.input_tokens}, served usage.input_tokens ${r.usage.input_tokens}`);
      return { counted: counted.input_tokens, served_usage: r.usage };
    }));
  }
  return cases;
}

// ---------------------------------------------------------------- OpenAI Chat Completions

function checkChatCompletion(c, where) {
  need(isObj(c), `${where}: not an object`);
  need(c.object === 'chat.completion', `${where}: object ${JSON.stringify(c.object)}`);
  need(isNonEmptyStr(c.id), `${where}: id missing`);
  need(Array.isArray(c.choices) && c.choices.length >= 1, `${where}: no choices`);
  const ch = c.choices[0];
  need(ch.index === 0, `${where}: choices[0].index ${ch.index}`);
  need(isObj(ch.message) && ch.message.role === 'assistant', `${where}: message.role ${ch.message?.role}`);
  need(ch.message.content === null || isStr(ch.message.content), `${where}: message.content must be a string or null`);
  need(['stop', 'length', 'tool_calls', 'content_filter', 'function_call'].includes(ch.finish_reason), `${where}: finish_reason ${ch.finish_reason}`);
  need(isObj(c.usage) && isInt(c.usage.prompt_tokens) && c.usage.prompt_tokens > 0, `${where}: usage.prompt_tokens ${c.usage?.prompt_tokens}`);
  need(isNonNegInt(c.usage.completion_tokens) && isNonNegInt(c.usage.total_tokens), `${where}: usage.completion_tokens/total_tokens`);
}

function checkChatChunks(chunks) {
  need(chunks.length > 0, 'stream: no chunks');
  const id = chunks[0].id;
  let finish = null, usage = null, content = '', firstChoice = true;
  const toolCalls = new Map();
  chunks.forEach((c, i) => {
    need(c.object === 'chat.completion.chunk', `chunk ${i}: object ${JSON.stringify(c.object)}`);
    need(c.id === id, `chunk ${i}: id ${c.id} differs from ${id}`);
    need(Array.isArray(c.choices), `chunk ${i}: choices is not an array`);
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      need(ch.index === 0, `chunk ${i}: choice index ${ch.index}`);
      need(finish === null, `chunk ${i}: choice chunk after finish_reason ${finish}`);
      const d = ch.delta ?? {};
      if (firstChoice) need(d.role === 'assistant', `chunk ${i}: the first delta must carry role "assistant" (the SDK's stream throws "missing role")`);
      firstChoice = false;
      if (d.role) need(d.role === 'assistant', `chunk ${i}: delta.role ${d.role}`);
      if (isStr(d.content)) content += d.content;
      for (const tc of d.tool_calls ?? []) {
        need(isInt(tc.index), `chunk ${i}: tool_calls[].index missing`);
        if (!toolCalls.has(tc.index)) {
          need(isNonEmptyStr(tc.id), `chunk ${i}: first delta of tool call ${tc.index} without id`);
          need(isNonEmptyStr(tc.function?.name), `chunk ${i}: first delta of tool call ${tc.index} without function.name`);
          need(tc.type === 'function', `chunk ${i}: first delta of tool call ${tc.index} without type "function" (the SDK's stream throws)`);
          toolCalls.set(tc.index, { id: tc.id, name: tc.function.name, arguments: '' });
        }
        if (isStr(tc.function?.arguments)) toolCalls.get(tc.index).arguments += tc.function.arguments;
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  });
  need(finish, 'stream: no chunk with a finish_reason');
  return { chunks: chunks.length, finish_reason: finish, usage, content: trunc(content, 80),
    tool_calls: [...toolCalls.values()] };
}

async function chatStream(client, body) {
  return sdkStream(async () => {
    const stream = client.chat.completions.stream({ ...body, stream_options: { include_usage: true } });
    for await (const c of stream) void c; // the SDK's ChatCompletionStream accumulates these
    return await stream.finalChatCompletion();
  }, (sse) => chatWire(sse));
}
function chatWire(sse) {
  const chunks = [];
  const wire = { sse_messages: sse.msgs.length, comments: sse.comments };
  sse.msgs.forEach((m, i) => {
    if (m.done) { need(i === sse.msgs.length - 1, `sse message ${i}: data after [DONE]`); wire.done_sentinel = true; return; }
    need(!m.bad, `sse message ${i}: data is not JSON: ${trunc(m.data)}`);
    chunks.push(m.json);
  });
  need(wire.done_sentinel, 'sse: no final "data: [DONE]"');
  need(!sse.unterminated, 'sse: the last message is not ended by a blank line');
  return { chunks, wire, sum: checkChatChunks(chunks) };
}

async function chatPlain(client, model) {
  const body = { model, max_tokens: 32, temperature: 0, messages: [{ role: 'user', content: 'Say hello in five words.' }], ...NO_THINK };
  return [
    await runCase('whole', async () => {
      const c = await client.chat.completions.create(body);
      vlog('completion', JSON.stringify(c));
      checkChatCompletion(c, 'completion');
      chatLimit(c.choices[0].finish_reason, c.usage, body.max_tokens, 'completion');
      return { finish_reason: c.choices[0].finish_reason, usage: c.usage, text: trunc(c.choices[0].message.content, 80) };
    }),
    await runCase('stream', async () => {
      const { final, wire, sum } = await chatStream(client, body);
      need(isObj(sum.usage) && isInt(sum.usage.prompt_tokens) && sum.usage.prompt_tokens > 0, 'stream: no usage chunk with prompt_tokens (stream_options.include_usage)');
      need(isObj(final) && final.choices?.[0]?.finish_reason === sum.finish_reason, 'finalChatCompletion(): finish_reason differs');
      chatLimit(sum.finish_reason, sum.usage, body.max_tokens, 'stream');
      return { ...sum, wire };
    }),
  ];
}

async function chatTool(client, model) {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: WEATHER_DESC, parameters: WEATHER_SCHEMA } }];
  const cases = [];
  for (const [label, tool_choice] of [['named', { type: 'function', function: { name: 'get_weather' } }], ['required', 'required']]) {
    const body = { model, max_tokens: 200, temperature: 0, tools, tool_choice, messages: [{ role: 'user', content: TOOL_PROMPT }], ...NO_THINK };
    cases.push(await runCase(`${label}/whole`, async () => {
      const c = await client.chat.completions.create(body);
      vlog('completion', JSON.stringify(c));
      checkChatCompletion(c, 'completion');
      const ch = c.choices[0];
      need(ch.finish_reason === 'tool_calls', `finish_reason ${ch.finish_reason}, want tool_calls`);
      const tc = ch.message.tool_calls?.[0];
      need(tc, 'message.tool_calls is empty');
      need(tc.type === 'function' && isNonEmptyStr(tc.id), `tool_calls[0]: type ${tc.type}, id ${tc.id}`);
      need(tc.function?.name === 'get_weather', `tool_calls[0].function.name ${tc.function?.name}`);
      const args = parseArgs(tc.function.arguments, 'tool_calls[0]');
      return { id: tc.id, arguments: tc.function.arguments, ...checkWeatherArgs(args, 'tool_calls[0]') };
    }));
    cases.push(await runCase(`${label}/stream`, async () => {
      const { final, wire, sum } = await chatStream(client, body);
      need(sum.finish_reason === 'tool_calls', `finish_reason ${sum.finish_reason}, want tool_calls`);
      need(sum.tool_calls.length >= 1, 'stream: no tool_calls deltas');
      const tc = sum.tool_calls[0];
      need(tc.name === 'get_weather', `stream: tool call name ${tc.name}`);
      const args = parseArgs(tc.arguments, 'stream tool call');
      const ftc = final.choices?.[0]?.message?.tool_calls?.[0];
      need(ftc && ftc.function.arguments === tc.arguments, 'finalChatCompletion(): tool call arguments differ from the deltas');
      return { ...sum, wire, ...checkWeatherArgs(args, 'stream tool call') };
    }));
  }
  return cases;
}

async function chatErrors(client, model) {
  const base = { model, max_tokens: 16 };
  return [
    await runCase('missing messages', () => expectOpenAIError(() => client.chat.completions.create({ ...base }))),
    // -1 is llama.cpp's "no limit" (its web UI sends it), which kvstash keeps on chat: -2 is wrong.
    await runCase('negative max_tokens', () => expectOpenAIError(() => client.chat.completions.create({ ...base, max_tokens: -2, messages: [{ role: 'user', content: 'Hi' }] }))),
    await runCase('unknown role', () => expectOpenAIError(() => client.chat.completions.create({ ...base, messages: [{ role: 'wizard', content: 'Hi' }] }))),
    await runCase('stream: unknown role', () => expectOpenAIError(async () => {
      const s = client.chat.completions.stream({ ...base, messages: [{ role: 'wizard', content: 'Hi' }] });
      return await s.finalChatCompletion();
    })),
  ];
}

// ---------------------------------------------------------------- keepalive (raw fetch)

async function keepalive(model) {
  const prompt = longPrompt(opts.keepaliveWords);
  let path, headers = { 'content-type': 'application/json' }, body;
  if (opts.api === 'messages') {
    path = '/v1/messages';
    headers = { ...headers, 'x-api-key': 'sk-ant-none', 'anthropic-version': '2023-06-01' };
    body = { model, max_tokens: 8, stream: true, thinking: { type: 'disabled' }, messages: [{ role: 'user', content: prompt }] };
  } else if (opts.api === 'responses') {
    path = '/v1/responses';
    body = { model, max_output_tokens: 16, stream: true, input: prompt, ...NO_THINK };
  } else {
    path = '/v1/chat/completions';
    body = { model, max_tokens: 8, stream: true, messages: [{ role: 'user', content: prompt }], ...NO_THINK };
  }
  const t0 = performance.now();
  const r = await fetch(`${opts.base}${path}`, { method: 'POST', headers, body: JSON.stringify(body), signal: AbortSignal.timeout(Math.max(TIMEOUT_MS, 600e3)) });
  const tHeaders = performance.now() - t0;
  if (!r.ok) throw new CheckFailure(`HTTP ${r.status}: ${trunc(await r.text())}`);
  const ctype = r.headers.get('content-type') ?? '';
  const arrivals = []; // [ms since request, bytes, kind of the first SSE line]
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let text = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const s = dec.decode(value, { stream: true });
    text += s;
    const first = s.split('\n').find((l) => l.length) ?? '';
    const kind = first.startsWith(':') ? 'comment' : /ping/.test(s) && !/"delta"/.test(s) ? 'ping'
      : /keepalive/.test(s) && !/delta/.test(s) ? 'keepalive' : 'data';
    arrivals.push([Math.round(performance.now() - t0), value.length, kind]);
  }
  const total = performance.now() - t0;
  need(arrivals.length > 0, 'no bytes received');
  const times = [0, ...arrivals.map((a) => a[0])];
  let maxGap = 0, at = 0;
  for (let k = 1; k < times.length; k++) if (times[k] - times[k - 1] > maxGap) { maxGap = times[k] - times[k - 1]; at = times[k - 1]; }
  const firstData = arrivals.find((a) => a[2] === 'data');
  const kinds = {};
  for (const a of arrivals) kinds[a[2]] = (kinds[a[2]] ?? 0) + 1;
  const detail = {
    path, content_type: ctype, prompt_words: opts.keepaliveWords, headers_ms: Math.round(tHeaders),
    first_data_ms: firstData?.[0] ?? null, total_ms: Math.round(total), chunks: arrivals.length, chunk_kinds: kinds,
    max_gap_ms: maxGap, max_gap_after_ms: at, max_gap_allowed_ms: opts.keepaliveMaxGap * 1000,
    first_chunks: arrivals.slice(0, 12),
    keepalive_lines: [...new Set(text.split('\n').filter((l) => l.startsWith(':') || /^event: ?ping/.test(l) || /"type":"(ping|keepalive)"/.test(l)))].slice(0, 4),
  };
  if ((firstData?.[0] ?? total) < opts.keepaliveMaxGap * 1000) detail.note = 'the prefill was shorter than the allowed gap, so no keepalive was needed: use a longer prompt (--keepalive-words) or a bigger model';
  // The keepalives themselves must be ones the protocol's SDK ignores.
  const sse = parseSSE(text);
  detail.sse_comments = sse.comments;
  const bad = [];
  for (const m of sse.msgs) {
    const t = m.json?.type;
    if (opts.api === 'messages') {
      if (m.event === 'ping' || t === 'ping') { if (m.event !== 'ping' || t !== 'ping') bad.push(`ping must be "event: ping" + {"type":"ping"}: ${trunc(m.event + ' ' + m.data, 80)}`); }
    } else if (opts.api === 'responses') {
      if (!m.done && !m.bad && !/^response\./.test(t) && t !== 'keepalive' && t !== 'error') bad.push(`event type ${JSON.stringify(t)} is unknown to the OpenAI SDK (it throws); use ':' comments or {"type":"keepalive"}`);
    } else if (!m.done && !(m.json && Array.isArray(m.json.choices))) {
      bad.push(`chat stream message without choices (the OpenAI SDK throws): ${trunc(m.data, 80)}; use ':' comments`);
    }
    if (m.bad) bad.push(`data is not JSON: ${trunc(m.data, 80)}`);
  }
  try {
    ({ messages: messagesWire, responses: responsesWire, chat: chatWire })[opts.api](sse);
    detail.wire = 'ok';
  } catch (e) { detail.wire = String(e.message); }
  if (bad.length) throw Object.assign(new CheckFailure(`keepalive messages the SDK cannot take: ${[...new Set(bad)].slice(0, 3).join('; ')}`), { detail });
  need(ctype.includes('text/event-stream'), `content-type ${ctype}, want text/event-stream`);
  if (maxGap > opts.keepaliveMaxGap * 1000) throw Object.assign(new CheckFailure(`largest gap between bytes ${maxGap} ms (after ${at} ms) exceeds ${opts.keepaliveMaxGap} s`), { detail });
  return detail;
}

// ---------------------------------------------------------------- main

const TABLE = {
  messages: { client: anthropicClient, plain: messagesPlain, tool: messagesTool, errors: messagesErrors, tokens: messagesTokens },
  responses: { client: openaiClient, plain: responsesPlain, tool: responsesTool, errors: responsesErrors, tokens: responsesTokens },
  chat: { client: openaiClient, plain: chatPlain, tool: chatTool, errors: chatErrors, tokens: null },
};

async function main() {
  let model;
  try { model = await getModel(); } catch (e) {
    report('setup', false, { base: opts.base, error: describeError(e) });
    process.exit(1);
  }
  const api = TABLE[opts.api];
  const client = api.client();
  for (const check of opts.checks) {
    if (check === 'keepalive') {
      const t0 = Date.now();
      try { const d = await keepalive(model); report('keepalive', true, { api: opts.api, model, ms: Date.now() - t0, ...d }); }
      catch (e) { report('keepalive', false, { api: opts.api, model, ms: Date.now() - t0, error: describeError(e), ...(e.detail ?? {}) }); }
      continue;
    }
    const fn = api[check];
    if (!fn) { report(check, true, { api: opts.api, skipped: `the ${check} check is not defined for --api ${opts.api}` }); continue; }
    let cases;
    try { cases = await fn(client, model); } catch (e) { cases = [{ case: '(check)', ok: false, error: describeError(e) }]; }
    report(check, cases.every((c) => c.ok), { api: opts.api, model, cases });
  }
  process.exitCode = anyFailed ? 1 : 0;
}

main().catch((e) => { console.error(e); process.exit(1); });
