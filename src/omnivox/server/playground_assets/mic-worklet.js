// The microphone as 24 kHz PCM16 frames: resampled (linear interpolation) from the
// context's rate when it differs, posted every frameSamples samples.

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, frameSamples } = options.processorOptions;
    this.step = sampleRate / targetRate;
    this.frameSamples = frameSamples;
    this.frame = new Int16Array(frameSamples);
    this.filled = 0;
    this.position = 0; // where the next output sample lies, in this block's input indices
    this.last = 0; // the previous block's last sample, index -1
  }

  emit(sample) {
    const clipped = Math.max(-1, Math.min(1, sample));
    this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    if (this.filled === this.frameSamples) {
      this.port.postMessage(this.frame, [this.frame.buffer]);
      this.frame = new Int16Array(this.frameSamples);
      this.filled = 0;
    }
  }

  process(inputs) {
    const input = inputs[0]?.[0];
    if (!input || input.length === 0) return true;
    const n = input.length;
    let t = this.position;
    while (t <= n - 1) {
      const i = Math.floor(t);
      const a = i < 0 ? this.last : input[i];
      const b = i + 1 < n ? input[i + 1] : a;
      this.emit(a + (b - a) * (t - i));
      t += this.step;
    }
    this.position = t - n;
    this.last = input[n - 1];
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
