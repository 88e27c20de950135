// Streamed playback through an AudioWorklet: chunks play as soon as they are pushed.

import { SAMPLE_RATE } from "./audio.js";

export class Player {
  constructor() {
    this.context = null;
    this.node = null;
    this.opening = null;
    this.playing = false;
    this.onStart = null; // (performance.now() time at which the first sample is heard)
    this.onIdle = null;
    this.clearing = [];
    this.generation = 0; // counts clears: reports about sound from before one are stale
  }

  // Call from a user gesture: the context is made before the first await.
  open() {
    if (this.opening === null) this.opening = this.create();
    return this.opening.then(() =>
      this.context.state === "running" ? null : this.context.resume(),
    );
  }

  async create() {
    this.context = new AudioContext({ sampleRate: SAMPLE_RATE, latencyHint: "interactive" });
    await this.context.audioWorklet.addModule("/playground/player-worklet.js");
    this.node = new AudioWorkletNode(this.context, "pcm-player", {
      numberOfInputs: 0,
      outputChannelCount: [1],
    });
    this.node.port.onmessage = (event) => this.message(event.data);
    this.node.connect(this.context.destination);
  }

  push(samples) {
    this.node.port.postMessage({ type: "push", samples }, [samples.buffer]);
  }

  // Cuts playback at once (what is pushed after it plays); resolves to the number of
  // frames played since the previous clear.
  clear() {
    if (this.node === null) return Promise.resolve(0); // nothing was ever pushed
    this.generation += 1;
    this.playing = false;
    return new Promise((resolve) => {
      this.clearing.push(resolve);
      this.node.port.postMessage({ type: "clear", generation: this.generation });
    });
  }

  message(message) {
    if (message.type === "cleared") {
      this.clearing.shift()?.(message.played);
      this.onIdle?.();
      return;
    }
    if (message.generation !== this.generation) return; // about sound cut since
    if (message.type === "started") {
      this.playing = true;
      this.onStart?.(this.heardAt(message.frame / this.context.sampleRate));
    } else if (message.type === "idle") {
      this.playing = false;
      this.onIdle?.();
    }
  }

  // The performance.now() time at which the sample rendered at contextTime leaves the speakers.
  heardAt(contextTime) {
    const stamp = this.context.getOutputTimestamp?.();
    if (stamp && stamp.performanceTime > 0) {
      return stamp.performanceTime + (contextTime - stamp.contextTime) * 1000;
    }
    const latency = this.context.outputLatency || this.context.baseLatency || 0;
    return performance.now() + (contextTime - this.context.currentTime + latency) * 1000;
  }
}
