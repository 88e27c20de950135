// The server's public API, as any client uses it: a bearer key when one is set,
// OpenAI's error shape read into words, chat answers read as server-sent events.

const KEY_STORAGE = "omnivox.playground.apiKey";

export class ApiError extends Error {}

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) ?? "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

function headers(json) {
  const result = {};
  if (json) result["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

async function errorOf(response) {
  let message = `The server answered ${response.status} ${response.statusText}.`;
  try {
    const body = await response.json();
    if (body?.error?.message) message = body.error.message;
  } catch {
    // not JSON: the status says what there is to say
  }
  if (response.status === 401 && !apiKey()) message += " Enter an API key under Settings.";
  return new ApiError(message);
}

async function call(path, init) {
  try {
    return await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(`Could not reach the server (${error.message}).`);
  }
}

export async function listModels() {
  const response = await call("/v1/models", { headers: headers(false) });
  if (!response.ok) throw await errorOf(response);
  return (await response.json()).data.map((model) => model.id);
}

export async function fetchPrices() {
  const response = await call("/playground/prices.json", {});
  return response.ok ? response.json() : null;
}

// Yields each chunk of a streamed chat completion; an error event ends it with an ApiError.
export async function* streamChat(body, signal) {
  const response = await call("/v1/chat/completions", {
    method: "POST",
    headers: headers(true),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data === "") continue;
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) {
        throw new ApiError(chunk.error.message ?? "The answer stopped with an error.");
      }
      yield chunk;
    }
  }
  throw new ApiError("The answer ended before it was complete.");
}

export function realtimeSocket(model) {
  const url = new URL("/v1/realtime", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("model", model);
  const key = apiKey();
  const protocols = ["realtime"];
  // Browsers can not set headers on a WebSocket: OpenAI's subprotocol carries the key.
  if (key) protocols.push(`openai-insecure-api-key.${key}`);
  return new WebSocket(url, protocols);
}
