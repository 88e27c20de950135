// Plays queued PCM chunks as they come; says when sound starts, when the queue runs dry,
// and how much was played when it is cleared.

class PcmPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0; // into queue[0]
    this.playing = false;
    this.played = 0; // frames since the last clear
    this.generation = 0; // of the last clear: the page ignores reports about older sound
    this.port.onmessage = (event) => {
      const message = event.data;
      if (message.type === "push") {
        this.queue.push(message.samples);
      } else if (message.type === "clear") {
        this.port.postMessage({ type: "cleared", played: this.played });
        this.generation = message.generation;
        this.queue = [];
        this.offset = 0;
        this.played = 0;
        this.playing = false;
      }
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let filled = 0;
    while (filled < out.length && this.queue.length > 0) {
      const chunk = this.queue[0];
      const n = Math.min(out.length - filled, chunk.length - this.offset);
      if (!this.playing) {
        this.playing = true;
        this.port.postMessage({
          type: "started",
          frame: currentFrame + filled,
          generation: this.generation,
        });
      }
      out.set(chunk.subarray(this.offset, this.offset + n), filled);
      filled += n;
      this.offset += n;
      this.played += n;
      if (this.offset === chunk.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    out.fill(0, filled);
    if (this.playing && this.queue.length === 0) {
      this.playing = false;
      this.port.postMessage({ type: "idle", generation: this.generation });
    }
    return true;
  }
}

registerProcessor("pcm-player", PcmPlayer);
