// A browser's Realtime flow through the OpenAI Node SDK against omnivox: a backend mints an
// ephemeral client secret (client.realtime.clientSecrets.create), then the SDK's native
// WebSocket client (openai/realtime/websocket) opens a session with only that ek_ secret,
// sends one user item and response.create, and reads to response.done. Prints one JSON line;
// exits non-zero on an error event, a socket failure or a timeout.
// Usage: node realtime_clients.mjs <base URL ending in /v1> <model> <key that mints>
// (Node 22+, or Node 20/21 with --experimental-websocket, for the global WebSocket.)
import OpenAI from 'openai';
import { OpenAIRealtimeWebSocket } from 'openai/realtime/websocket';

const [baseURL, model, apiKey] = process.argv.slice(2);
const INSTRUCTIONS = 'Answer in one line.';
const TIMEOUT_MS = 30_000;

function fail(message) {
  console.error(message);
  process.exit(1);
}

const timer = setTimeout(() => fail(`timed out after ${TIMEOUT_MS} ms`), TIMEOUT_MS);

if (typeof globalThis.WebSocket !== 'function') {
  fail('no global WebSocket: use Node 22+ or node --experimental-websocket');
}
// The SDK dials wss: only (it rewrites the base URL's scheme and refuses anything else);
// omnivox on loopback speaks plain ws: (TLS is a proxy's job), so the socket the SDK opens
// for this loopback host dials ws: instead. Everything above the transport is the SDK's.
const loopback = new URL(baseURL).host;
const NativeWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class LoopbackWebSocket extends NativeWebSocket {
  constructor(url, protocols) {
    const target = new URL(url);
    if (target.protocol === 'wss:' && target.host === loopback) target.protocol = 'ws:';
    super(target, protocols);
  }
};

// (a) The backend mints a client secret with its own key.
const backend = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const secret = await backend.realtime.clientSecrets.create({
  session: { type: 'realtime', model, output_modalities: ['text'], instructions: INSTRUCTIONS },
});
if (!secret.value?.startsWith('ek_')) fail(`not an ephemeral key: ${JSON.stringify(secret)}`);

// (b) The browser's side: a client whose only key is the secret.
const browser = new OpenAI({ baseURL, apiKey: secret.value, maxRetries: 0 });
const rt = new OpenAIRealtimeWebSocket({ model }, browser);

const events = [];
const errors = [];
let created = null;
let text = '';
let done = null;

const finished = new Promise((resolve, reject) => {
  rt.on('error', (err) => {
    errors.push({ message: err.message, error: err.error ?? null });
    reject(err);
  });
  rt.socket.addEventListener('close', (event) => {
    if (done === null) reject(new Error(`socket closed before response.done: ${event.code} ${event.reason}`));
  });
  rt.on('event', (event) => events.push(event.type));
  // (c) session.created carries the minted configuration.
  rt.on('session.created', (event) => {
    created = event;
    if (event.session.instructions !== INSTRUCTIONS) {
      reject(new Error(`session.created lacks the minted instructions: ${JSON.stringify(event.session)}`));
      return;
    }
    // (d) One user item, then a response.
    rt.send({
      type: 'conversation.item.create',
      item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hello there' }] },
    });
    rt.send({ type: 'response.create' });
  });
  rt.on('response.output_text.delta', (event) => {
    text += event.delta;
  });
  rt.on('response.done', (event) => {
    done = event;
    resolve();
  });
});

try {
  await finished;
} catch (err) {
  fail(`realtime failed: ${err.message}\nevents: ${JSON.stringify(events)}`);
}
rt.close();
clearTimeout(timer);

// (e) What the script saw.
console.log(JSON.stringify({
  secret: { prefix: secret.value.slice(0, 3), expiresAt: secret.expires_at, session: secret.session },
  url: rt.url.toString(),
  events,
  errors,
  session: created?.session ?? null,
  text,
  status: done.response.status,
  output: done.response.output,
  usage: done.response.usage ?? null,
}));
