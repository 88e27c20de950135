// Live mode: a Realtime API session over a WebSocket. The microphone streams in as
// 24 kHz PCM16, the server's VAD decides when a turn ends, answers play as they arrive,
// and speech that starts while an answer plays cuts it (the server is told how much
// was heard, so the next answer knows only that).

import { SAMPLE_RATE, base64ToBytes, bytesToBase64, pcm16ToFloat32 } from "./audio.js";
import { realtimeSocket } from "./api.js";
import { microphone } from "./recorder.js";

const FRAME_SAMPLES = SAMPLE_RATE / 50; // 20 ms a frame
const MAX_EARLY_FRAMES = 250; // 5 s of speech kept while the session is being set up
const TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe";

export class LiveSession {
  // view: {status, error, userSpeaking, userWords, answerStarted, answerWords, answerDone, closed}
  constructor(player, settings, view) {
    this.player = player;
    this.settings = settings;
    this.view = view;
    this.socket = null;
    this.ready = false;
    this.early = []; // frames heard before the session was ready, sent once it is
    this.answers = new Map(); // assistant item id -> {pcm: [], startFrame, frames}
    this.speaking = null; // the assistant item whose audio is queued or playing
    this.responding = false; // between response.created and response.done
    this.cut = new Set(); // assistant items cut short by the person speaking
    this.pushedFrames = 0; // frames pushed to the player since its last clear
  }

  async start() {
    await this.player.open();
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: microphone(this.settings.cancelEcho),
    });
    this.context = this.microphoneContext();
    await this.context.audioWorklet.addModule("/playground/mic-worklet.js");
    const capture = new AudioWorkletNode(this.context, "pcm-capture", {
      processorOptions: { targetRate: SAMPLE_RATE, frameSamples: FRAME_SAMPLES },
    });
    capture.port.onmessage = (event) => this.append(event.data);
    const mute = this.context.createGain();
    mute.gain.value = 0; // the node must reach the destination to be processed everywhere
    this.source.connect(capture).connect(mute).connect(this.context.destination);
    this.connect();
  }

  // A 24 kHz context where the browser can feed it the microphone (Chromium resamples);
  // elsewhere the device's own rate, resampled in the worklet.
  microphoneContext() {
    try {
      const context = new AudioContext({ sampleRate: SAMPLE_RATE });
      this.source = context.createMediaStreamSource(this.stream);
      return context;
    } catch {
      const context = new AudioContext();
      this.source = context.createMediaStreamSource(this.stream);
      return context;
    }
  }

  connect() {
    const socket = realtimeSocket(this.settings.model);
    this.socket = socket;
    socket.onmessage = (message) => this.handle(JSON.parse(message.data));
    socket.onerror = () => {
      if (!this.ready) {
        this.view.error(
          "The server refused the live session: check the API key, and that the server " +
            "serves the Realtime API for this model.",
        );
      }
    };
    socket.onclose = (event) => {
      if (this.socket === socket)
        this.stop(event.reason ? `Live session closed: ${event.reason}` : null);
    };
  }

  send(event) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(event));
  }

  append(frame) {
    if (!this.ready) {
      if (this.early.length === MAX_EARLY_FRAMES) this.early.shift();
      this.early.push(frame);
      return;
    }
    this.send({
      type: "input_audio_buffer.append",
      audio: bytesToBase64(new Uint8Array(frame.buffer)),
    });
  }

  sendText(text) {
    this.send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
    this.send({ type: "response.create" });
  }

  configure() {
    const { voice, instructions, maxTokens } = this.settings;
    const session = {
      type: "realtime",
      output_modalities: ["audio"],
      audio: {
        input: {
          format: { type: "audio/pcm", rate: SAMPLE_RATE },
          transcription: { model: TRANSCRIPTION_MODEL },
          turn_detection: { type: "server_vad" },
        },
        output: { format: { type: "audio/pcm", rate: SAMPLE_RATE }, voice },
      },
    };
    if (instructions) session.instructions = instructions;
    if (maxTokens) session.max_output_tokens = Math.min(maxTokens, 4096);
    this.send({ type: "session.update", session });
  }

  handle(event) {
    switch (event.type) {
      case "session.created":
        this.configure();
        break;
      case "session.updated":
        if (!this.ready) {
          this.ready = true;
          this.early.splice(0).forEach((frame) => this.append(frame));
        }
        this.view.status("Live: listening. Just speak.");
        break;
      case "input_audio_buffer.speech_started":
        this.bargeIn();
        this.view.userSpeaking(event.item_id);
        this.view.status("Live: hearing you…");
        break;
      case "input_audio_buffer.speech_stopped":
        this.view.status("Live: answering…");
        break;
      case "conversation.item.input_audio_transcription.completed":
        this.view.userWords(event.item_id, event.transcript);
        break;
      case "response.created":
        this.responding = true;
        break;
      case "response.output_item.added":
        if (event.item?.type === "message") {
          this.answers.set(event.item.id, { pcm: [], startFrame: null, frames: 0 });
          this.view.answerStarted(event.item.id);
        }
        break;
      case "response.output_audio_transcript.delta":
        this.view.answerWords(event.item_id, event.delta);
        break;
      case "response.output_audio.delta":
        this.playDelta(event.item_id, event.delta);
        break;
      case "response.done":
        this.responding = false;
        this.finish(event.response);
        break;
      case "error":
        this.view.error(event.error?.message ?? "The live session reported an error.");
        break;
    }
  }

  playDelta(itemId, data) {
    if (this.cut.has(itemId)) return;
    const answer = this.answers.get(itemId);
    const bytes = base64ToBytes(data);
    const samples = pcm16ToFloat32(bytes);
    if (answer) {
      answer.startFrame ??= this.pushedFrames;
      answer.frames += samples.length;
      answer.pcm.push(bytes);
    }
    this.speaking = itemId;
    this.pushedFrames += samples.length;
    this.player.push(samples);
  }

  // The Stop button: the answer is cancelled and cut where it was heard.
  interrupt() {
    if (this.responding) this.send({ type: "response.cancel" });
    return this.bargeIn();
  }

  async bargeIn() {
    const itemId = this.speaking;
    if (itemId === null) return;
    this.speaking = null;
    this.cut.add(itemId); // its audio still on the way is not played
    const cleared = this.player.clear();
    this.pushedFrames = 0;
    const played = await cleared;
    const answer = this.answers.get(itemId);
    if (!answer || answer.startFrame === null) return;
    const heard = Math.max(0, Math.min(answer.frames, played - answer.startFrame));
    if (heard < answer.frames) {
      const audioEndMs = Math.floor((heard / SAMPLE_RATE) * 1000);
      this.send({
        type: "conversation.item.truncate",
        item_id: itemId,
        content_index: 0,
        audio_end_ms: audioEndMs,
      });
    }
  }

  finish(response) {
    for (const item of response?.output ?? []) {
      const answer = this.answers.get(item.id);
      if (answer) this.view.answerDone(item.id, answer.pcm, response.usage, response.status);
    }
    if (this.ready) this.view.status("Live: listening. Just speak.");
  }

  stop(message = null) {
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    socket?.close();
    this.stream?.getTracks().forEach((track) => track.stop());
    this.context?.close();
    this.player.clear();
    this.view.closed(message);
  }
}
