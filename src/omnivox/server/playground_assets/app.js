// The playground: one conversation with the server, typed or spoken, answers streamed
// and played as they arrive (Chat Completions), or a live Realtime session.

import { ApiError, apiKey, fetchPrices, listModels, setApiKey, streamChat } from "./api.js";
import { base64ToBytes, blobToBase64, joinBytes, pcm16ToFloat32, wavBlob } from "./audio.js";
import { LiveSession } from "./live.js";
import { Player } from "./player.js";
import { Recorder } from "./recorder.js";

const HOLD_MS = 400; // a press held this long is hold-to-talk: releasing it ends the turn
// A spoken answer's words are shown with its sound, which they usually run ahead of:
// drawing them earlier takes CPU from a server on the same machine just as it is about
// to speak. Words with no sound yet after this long are shown anyway.
const WORDS_WAIT_MS = 1000;
const SETTINGS_STORAGE = "omnivox.playground.settings";
const STORED_SETTINGS = ["voice", "download-format", "system-prompt", "temperature", "max-tokens"];
const STORED_CHECKS = ["cancel-echo"];
const NOT_CHAT = /realtime|transcribe|whisper|tts/;

const $ = (id) => document.getElementById(id);
const player = new Player();
const state = {
  messages: [], // the conversation as sent to the API, system prompt excluded
  answer: null, // {controller} while an answer streams
  talk: null, // {started, recorder} while recording
  live: null,
  models: [],
  prices: null,
  urls: [], // object URLs of this conversation's recordings and answers
  answers: [], // {pcm, link, index} of finished answers, for their download links
};

// For tests and measurements: the last chat turn's playback times (performance.now() ms).
window.playgroundTimings = null;

// ---- the page --------------------------------------------------------------------------

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function status(text) {
  $("status").textContent = text ?? "";
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function addTurn(role) {
  $("hint")?.remove();
  const turn = element("article", `turn ${role}`);
  turn.append(element("h3", "who", role === "user" ? "You" : "omnivox"));
  const words = element("p", "words");
  turn.append(words);
  $("conversation").append(turn);
  turn.scrollIntoView({ block: "end" });
  return { turn, words };
}

// Streamed words are written once a frame, however many pieces came in it.
function showWords(view, text) {
  if (view.pending === undefined) {
    requestAnimationFrame(() => {
      view.words.textContent = view.pending;
      view.pending = undefined;
    });
  }
  view.pending = text;
}

function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

function downloadBlob(pcm) {
  return $("download-format").value === "pcm16"
    ? new Blob([pcm], { type: "application/octet-stream" })
    : wavBlob(pcm);
}

function setDownload(answer) {
  const format = $("download-format").value;
  const extension = format === "pcm16" ? "pcm" : "wav";
  answer.link.href = objectUrl(downloadBlob(answer.pcm));
  answer.link.download = `omnivox-answer-${answer.index}.${extension}`;
  answer.link.textContent = `Download (${format === "pcm16" ? "PCM16" : "WAV"})`;
}

function showAnswerAudio(view, chunks) {
  if (chunks.length === 0) return;
  const pcm = joinBytes(chunks);
  const audio = element("audio");
  audio.controls = true;
  audio.preload = "auto";
  audio.src = objectUrl(wavBlob(pcm));
  audio.setAttribute("aria-label", "Answer audio");
  const link = element("a");
  const answer = { pcm, link, index: state.answers.length + 1 };
  state.answers.push(answer);
  setDownload(answer);
  const actions = element("div", "actions");
  actions.append(audio, link);
  view.turn.append(actions);
}

function modelClass(model) {
  return model.includes("mini") ? "gpt-4o-mini-audio" : "gpt-4o-audio";
}

function showUsage(view, usage, model) {
  if (!usage) return;
  // Chat Completions' usage or the Realtime API's
  const inDetails = usage.prompt_tokens_details ?? usage.input_token_details ?? {};
  const outDetails = usage.completion_tokens_details ?? usage.output_token_details ?? {};
  const tokens = {
    inText: inDetails.text_tokens ?? 0,
    inAudio: inDetails.audio_tokens ?? 0,
    outText: outDetails.text_tokens ?? 0,
    outAudio: outDetails.audio_tokens ?? 0,
  };
  const input = usage.prompt_tokens ?? usage.input_tokens ?? 0;
  const output = usage.completion_tokens ?? usage.output_tokens ?? 0;
  let text =
    `Tokens: ${input} in (text ${tokens.inText}, audio ${tokens.inAudio}), ` +
    `${output} out (text ${tokens.outText}, audio ${tokens.outAudio})`;
  const cls = modelClass(model);
  const prices = state.prices?.[cls];
  if (prices) {
    const usd =
      (tokens.inText * prices.text_input_usd_per_1m +
        tokens.inAudio * prices.audio_input_usd_per_1m +
        tokens.outText * prices.text_output_usd_per_1m +
        tokens.outAudio * prices.audio_output_usd_per_1m) /
      1e6;
    text += ` · $${usd.toFixed(5)} at OpenAI's ${cls} list prices`;
  }
  view.turn.append(element("p", "usage", text));
}

function setBusy() {
  const streaming = state.answer !== null;
  $("stop").disabled = !(streaming || player.playing);
  $("send").disabled = state.talk !== null;
  $("talk").disabled = state.live !== null;
}

// ---- settings --------------------------------------------------------------------------

function loadSettings() {
  const saved = JSON.parse(localStorage.getItem(SETTINGS_STORAGE) ?? "{}");
  for (const id of STORED_SETTINGS) {
    if (saved[id] !== undefined) $(id).value = saved[id];
  }
  for (const id of STORED_CHECKS) {
    if (saved[id] !== undefined) $(id).checked = saved[id];
  }
  $("api-key").value = apiKey();
}

function saveSettings() {
  const saved = Object.fromEntries([
    ...STORED_SETTINGS.map((id) => [id, $(id).value]),
    ...STORED_CHECKS.map((id) => [id, $(id).checked]),
  ]);
  localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(saved));
}

function numberSetting(id) {
  const value = $(id).value.trim();
  return value === "" ? null : Number(value);
}

function systemMessages() {
  const prompt = $("system-prompt").value.trim();
  return prompt ? [{ role: "system", content: prompt }] : [];
}

async function loadModels() {
  const select = $("model");
  const previous = select.value;
  try {
    const models = await listModels();
    state.models = models;
    const chat = models.filter((id) => !NOT_CHAT.test(id));
    select.replaceChildren(...chat.map((id) => element("option", null, id)));
    const preferred = [previous, "omnivox-audio", "gpt-4o-audio-preview"].find((id) =>
      chat.includes(id),
    );
    if (preferred) select.value = preferred;
  } catch (error) {
    showError(error.message);
  }
}

function realtimeModel() {
  const chosen = $("model").value;
  return state.models.find((id) => id.includes("realtime")) ?? chosen;
}

// ---- a chat turn ---------------------------------------------------------------------

async function ask(content, sendAt) {
  clearError();
  const opened = player.open(); // made within the click: the browser lets it play
  cutAnswer();
  const model = $("model").value;
  if (!model) {
    showError("No model to ask: the list of models did not load.");
    return;
  }
  const messages = state.messages; // this conversation's, even if a new one starts meanwhile
  const asked = { role: "user", content };
  messages.push(asked);
  const body = {
    model,
    messages: [...systemMessages(), ...messages],
    modalities: ["text", "audio"],
    audio: { voice: $("voice").value, format: "pcm16" },
    stream: true,
    stream_options: { include_usage: true },
  };
  const temperature = numberSetting("temperature");
  if (temperature !== null) body.temperature = temperature;
  const maxTokens = numberSetting("max-tokens");
  if (maxTokens !== null) body.max_completion_tokens = maxTokens;

  const timings = {
    sendAt,
    requestAt: null,
    firstDeltaAt: null,
    firstSoundAt: null,
    doneAt: null,
    body,
  };
  window.playgroundTimings = timings;
  player.onStart = (heardAt) => {
    timings.firstSoundAt ??= heardAt;
    setBusy();
  };
  player.onIdle = setBusy;

  const view = addTurn("assistant");
  view.turn.classList.add("streaming");
  const controller = new AbortController();
  state.answer = { controller };
  setBusy();
  status("Answering…");
  const answer = {
    id: null,
    committed: false,
    transcript: "",
    pcm: [],
    usage: null,
    wordsShown: false, // from the first sound on, words are shown as they come
    wordsTimer: null,
  };
  try {
    timings.requestAt = performance.now();
    for await (const chunk of streamChat(body, controller.signal)) {
      if (chunk.usage) answer.usage = chunk.usage;
      const delta = chunk.choices?.[0]?.delta;
      if (delta?.audio?.data) {
        timings.firstDeltaAt ??= performance.now();
        await opened; // the request is not held for the player, only the sound
      }
      if (delta) readDelta(delta, answer, view);
    }
    await opened;
    timings.doneAt = performance.now();
    status("");
  } catch (error) {
    if (error.name === "AbortError") status("Stopped.");
    else {
      status("");
      showError(error instanceof ApiError ? error.message : `The answer failed: ${error.message}`);
      // a request refused outright is not part of the conversation: it can be sent again
      if (!answer.transcript && answer.pcm.length === 0) {
        messages.splice(messages.indexOf(asked), 1);
      }
    }
  } finally {
    state.answer = null;
    clearTimeout(answer.wordsTimer);
    showWords(view, answer.transcript);
    view.turn.classList.remove("streaming");
    // OpenAI's rule: a spoken answer goes back by its audio id; one cut short, as its words.
    if (answer.committed && answer.id) {
      messages.push({ role: "assistant", audio: { id: answer.id } });
    } else if (answer.transcript) {
      messages.push({ role: "assistant", content: answer.transcript });
    }
    if (!answer.transcript && answer.pcm.length === 0) view.turn.remove();
    showAnswerAudio(view, answer.pcm);
    showUsage(view, answer.usage, model);
    setBusy();
  }
}

function readDelta(delta, answer, view) {
  const audio = delta.audio;
  if (audio) {
    if (audio.id) answer.id = audio.id;
    if (audio.transcript) {
      answer.transcript += audio.transcript;
      if (answer.wordsShown) showWords(view, answer.transcript);
      else answer.wordsTimer ??= setTimeout(() => startWords(answer, view), WORDS_WAIT_MS);
    }
    if (audio.data) {
      const bytes = base64ToBytes(audio.data);
      player.push(pcm16ToFloat32(bytes));
      answer.pcm.push(bytes);
      if (!answer.wordsShown) startWords(answer, view);
    }
    if (audio.expires_at) answer.committed = true;
  }
  if (delta.content) {
    answer.transcript += delta.content;
    showWords(view, answer.transcript);
  }
}

function startWords(answer, view) {
  clearTimeout(answer.wordsTimer);
  answer.wordsShown = true;
  showWords(view, answer.transcript);
}

function cutAnswer() {
  state.answer?.controller.abort();
  return player.clear();
}

function sendTyped(event) {
  event.preventDefault();
  const sendAt = performance.now();
  const text = $("message").value.trim();
  if (!text || state.talk) return;
  $("message").value = "";
  const view = addTurn("user");
  view.words.textContent = text;
  if (state.live) {
    clearError();
    state.live.sendText(text);
    return;
  }
  ask(text, sendAt);
}

// ---- Talk: one recorded turn ------------------------------------------------------------

function startTalking() {
  clearError();
  cutAnswer();
  player.open();
  const recorder = new Recorder();
  state.talk = { recorder, started: recorder.start() };
  $("talk").setAttribute("aria-pressed", "true");
  status("Recording… press Talk again to send.");
  setBusy();
  state.talk.started.catch((error) => {
    state.talk = null;
    $("talk").setAttribute("aria-pressed", "false");
    status("");
    showError(`The microphone could not be opened (${error.message}).`);
    setBusy();
  });
}

async function stopTalking() {
  const talk = state.talk;
  state.talk = null;
  $("talk").setAttribute("aria-pressed", "false");
  setBusy();
  try {
    await talk.started;
  } catch {
    return; // reported by startTalking
  }
  const sendAt = performance.now();
  const { blob, format } = await talk.recorder.stop();
  status("");
  const view = addTurn("user");
  view.words.textContent = "Spoken message";
  const audio = element("audio");
  audio.controls = true;
  audio.src = objectUrl(blob);
  audio.setAttribute("aria-label", "Your recording");
  view.turn.append(audio);
  const data = await blobToBase64(blob);
  ask([{ type: "input_audio", input_audio: { data, format } }], sendAt);
}

function wireTalkButton() {
  const talk = $("talk");
  let press = null; // {at, started}: the pointer press now down
  talk.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || talk.disabled) return;
    press = { at: performance.now(), started: state.talk === null };
    if (state.talk) stopTalking();
    else startTalking();
  });
  talk.addEventListener("pointerup", () => {
    if (press?.started && state.talk && performance.now() - press.at >= HOLD_MS) stopTalking();
    press = null;
  });
  talk.addEventListener("click", (event) => {
    if (event.detail !== 0) return; // pointer presses are handled above; this is the keyboard
    if (state.talk) stopTalking();
    else startTalking();
  });
}

// ---- live mode --------------------------------------------------------------------------

function liveView() {
  const turns = new Map(); // item id -> view
  const view = (id, role) => {
    if (!turns.has(id)) turns.set(id, addTurn(role));
    return turns.get(id);
  };
  return {
    status,
    error: showError,
    userSpeaking: (id) => {
      view(id, "user").words.textContent = "…";
    },
    userWords: (id, text) => {
      view(id, "user").words.textContent = text || "(nothing recognised)";
    },
    answerStarted: (id) => view(id, "assistant").turn.classList.add("streaming"),
    answerWords: (id, delta) => {
      view(id, "assistant").words.textContent += delta;
    },
    answerDone: (id, pcm, usage, outcome) => {
      const answer = view(id, "assistant");
      answer.turn.classList.remove("streaming");
      if (outcome === "cancelled") answer.turn.append(element("p", "usage", "Interrupted."));
      showAnswerAudio(answer, pcm);
      showUsage(answer, usage, realtimeModel());
    },
    closed: (message) => {
      state.live = null;
      $("live").setAttribute("aria-pressed", "false");
      status("");
      if (message) showError(message);
      setBusy();
    },
  };
}

async function toggleLive() {
  if (state.live) {
    state.live.stop();
    return;
  }
  clearError();
  await cutAnswer();
  const settings = {
    model: realtimeModel(),
    voice: $("voice").value,
    instructions: $("system-prompt").value.trim(),
    maxTokens: numberSetting("max-tokens"),
    cancelEcho: $("cancel-echo").checked,
  };
  const session = new LiveSession(player, settings, liveView());
  state.live = session;
  player.onStart = setBusy;
  player.onIdle = setBusy;
  $("live").setAttribute("aria-pressed", "true");
  status("Live: connecting…");
  setBusy();
  try {
    await session.start();
  } catch (error) {
    session.stop(`Live mode could not start (${error.message}).`);
  }
}

// ---- start -------------------------------------------------------------------------------

function newConversation() {
  cutAnswer();
  state.messages = [];
  state.answers = [];
  state.urls.forEach((url) => URL.revokeObjectURL(url));
  state.urls = [];
  $("conversation").replaceChildren();
  clearError();
  status("");
}

function start() {
  // The player is made at the first key or press on the page (the browser lets audio
  // start after one), so that it is running by the time an answer arrives.
  for (const type of ["pointerdown", "keydown"]) {
    document.addEventListener(type, () => player.open(), { once: true, capture: true });
  }
  loadSettings();
  wireTalkButton();
  $("composer").addEventListener("submit", sendTyped);
  $("settings-form").addEventListener("submit", (event) => event.preventDefault());
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => {
    (state.live ? state.live.interrupt() : cutAnswer()).then(setBusy);
  });
  $("live").addEventListener("click", toggleLive);
  $("new-conversation").addEventListener("click", newConversation);
  $("download-format").addEventListener("change", () => state.answers.forEach(setDownload));
  for (const id of [...STORED_SETTINGS, ...STORED_CHECKS]) {
    $(id).addEventListener("change", saveSettings);
  }
  $("api-key").addEventListener("change", () => {
    setApiKey($("api-key").value.trim());
    clearError();
    loadModels();
  });
  fetchPrices().then((prices) => {
    state.prices = prices;
  });
  loadModels();
  setBusy();
}

start();
